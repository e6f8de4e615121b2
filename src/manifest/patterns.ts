// The textual forms of hashes, tickets and ids that manifests name: shared by the schemas and by
// the checks that run without them (the CLI's apply path does not load zod; the server checks).

export const BLAKE3_REF = /^blake3:[0-9a-f]{64}$/;
// An Iroh blob ticket: "blob" followed by base32 (lowercase, no padding).
export const BLOB_TICKET = /^blob[a-z2-7]{20,}$/;
export const NODE_ID = /^[0-9a-f]{64}$/;
