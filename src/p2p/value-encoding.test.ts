import { describe, expect, it } from 'vitest';
import { decodeValue, encodeValue } from './doc.js';

// How document values are stored: small ones as their JSON, larger ones deflated behind a NUL
// byte (no JSON text starts with one), so both kinds read back the same.

describe('document value encoding', () => {
  it('keeps a small value as its JSON and deflates a large one, both reading back as written', () => {
    const small = JSON.stringify({ phase: 'Running' });
    expect(encodeValue(small).toString('utf8')).toBe(small);
    expect(decodeValue(encodeValue(small))).toBe(small);

    const reports = JSON.stringify(Array.from({ length: 50 }, (_, i) => ({ name: `web-${i}`, phase: 'Running', message: 'console printed /READY/' })));
    const stored = encodeValue(reports);
    expect(stored[0]).toBe(0);
    expect(stored.length).toBeLessThan(reports.length / 5); // similar reports deflate well
    expect(decodeValue(stored)).toBe(reports);
    expect(decodeValue(Buffer.from('"\u00e9t\u00e9"', 'utf8'))).toBe('"\u00e9t\u00e9"');
  });
});
