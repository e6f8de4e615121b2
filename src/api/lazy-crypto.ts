// The CLI imports this folder for its client and never runs the server, whose one use of
// node:crypto (comparing bearer tokens) would cost every command a few ms to load it. So the
// server imports it from here, where node:crypto is loaded on the first call.

/** crypto.timingSafeEqual, node:crypto loaded on first use. */
export function timingSafeEqual(a: NodeJS.ArrayBufferView, b: NodeJS.ArrayBufferView): boolean {
  return process.getBuiltinModule('node:crypto').timingSafeEqual(a, b);
}
