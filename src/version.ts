// The product version, in step with package.json (a test checks), reported by client and server.
export const VERSION = '0.1.0';
