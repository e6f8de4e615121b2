// Blob tickets name content (a hash) and where to get it. Parsing needs Iroh's native module, which
// costs start-up time, so it is loaded only when a manifest actually uses a ticket.

export async function hashOfTicket(ticket: string): Promise<string> {
  const { BlobTicket, Hash } = await import('@number0/iroh');
  const t = BlobTicket.fromString(ticket);
  return `blake3:${Hash.fromString(t.hash).toString('hex')}`;
}
