import { z } from 'zod';
import { API_VERSION, KINDS, isLabelKey, LABEL_KEY_WORDS, LABEL_VALUE, LABEL_VALUE_MAX } from '../state/index.js';
import { show } from './errors.js';
import { BLAKE3_REF, BLOB_TICKET, NODE_ID } from './patterns.js';

// Zod schemas of SPEC section 2. Every leaf says what it expects in words, so an error reads
// `spec.vcpus: expected a positive integer, got "two"` instead of zod's generic text. Defaults are
// not injected here: the store keeps specs as written (state/defaults.ts fills them in to compare).

// An error customiser: missing values say so; anything else says what was expected and what came.
function expect(what: string) {
  return {
    error: (iss: { input?: unknown }) =>
      iss.input === undefined ? `required field is missing: expected ${what}` : `expected ${what}, got ${show(iss.input)}`,
  };
}

const DNS1123 = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;

export const dnsLabel = (what: string) =>
  z.string(expect(what)).max(63, expect(what)).regex(DNS1123, expect(what));

const labelKey = z.string().refine(isLabelKey, { error: (iss) => `expected ${LABEL_KEY_WORDS}, got ${show(iss.input)}` });
const labelValue = z
  .string(expect('a string label value (quote numbers and booleans)'))
  .max(LABEL_VALUE_MAX, expect('a label value of at most 63 characters'))
  .regex(LABEL_VALUE, expect('a label value of letters, digits, "-", "_" and "."'));
export const labels = z.record(labelKey, labelValue, expect('a mapping of label keys to string values'));

const posInt = (what = 'a positive integer', max = 1_000_000) =>
  z.number(expect(what)).int(expect(what)).min(1, expect(what)).max(max, expect(`${what} of at most ${max}`));
const port = z.number(expect('a port number from 1 to 65535')).int(expect('a port number from 1 to 65535')).min(1, expect('a port number from 1 to 65535')).max(65535, expect('a port number from 1 to 65535'));

function isRegExp(s: string): boolean {
  try {
    new RegExp(s);
    return true;
  } catch {
    return false;
  }
}

export const imageSpec = z
  .strictObject(
    {
      path: z.string(expect('a file path relative to the manifest')).min(1, expect('a non-empty file path')).optional(),
      blob: z
        .string(expect('blake3:<64 lowercase hex digits> or an Iroh blob ticket'))
        .refine((s) => BLAKE3_REF.test(s) || BLOB_TICKET.test(s), expect('blake3:<64 lowercase hex digits> or an Iroh blob ticket'))
        .optional(),
      initrd: z.string(expect('a file path relative to the manifest')).min(1, expect('a non-empty file path')).optional(),
      format: z.enum(['kernel', 'raw', 'qcow2', 'executable'], expect('one of kernel, raw, qcow2, executable')),
      hash: z.string(expect('blake3:<64 lowercase hex digits>')).regex(BLAKE3_REF, expect('blake3:<64 lowercase hex digits>')).optional(),
      readyPattern: z.string(expect('a regular expression')).refine(isRegExp, expect('a valid regular expression')).optional(),
    },
    expect('a mapping'),
  )
  .superRefine((s, ctx) => {
    if ((s.path === undefined) === (s.blob === undefined)) {
      ctx.addIssue({
        code: 'custom',
        path: s.path !== undefined ? ['blob'] : [],
        message: s.path !== undefined ? 'expected exactly one of path and blob, got both' : 'expected exactly one of path and blob, got neither',
        input: s,
      });
    }
    if (s.initrd !== undefined && s.format !== 'kernel') {
      ctx.addIssue({ code: 'custom', path: ['initrd'], message: `expected no initrd with format ${s.format} (only kernel images boot an initrd)`, input: s.initrd });
    }
  });

export const vmSpec = z
  .strictObject(
    {
      image: dnsLabel('the name of an Image (a DNS-1123 label)'),
      vcpus: posInt('a positive integer', 256).optional(),
      memoryMiB: posInt('a positive integer (MiB)', 4 * 1024 * 1024).optional(),
      state: z.enum(['Running', 'Stopped'], expect('one of Running, Stopped')).optional(),
      kernelArgs: z.string(expect('a string of kernel arguments')).optional(),
      restartPolicy: z.enum(['Always', 'OnFailure', 'Never'], expect('one of Always, OnFailure, Never')).optional(),
      ports: z
        .array(
          z.strictObject(
            { host: port, guest: port, protocol: z.enum(['tcp', 'udp'], expect('one of tcp, udp')).optional() },
            expect('a mapping with host and guest ports'),
          ),
          expect('a list of {host, guest} port mappings'),
        )
        .optional(),
      placement: z
        .strictObject(
          {
            nodeSelector: labels.optional(),
            spreadBy: z.string(expect(LABEL_KEY_WORDS)).refine(isLabelKey, expect(LABEL_KEY_WORDS)).optional(),
          },
          expect('a mapping with nodeSelector and/or spreadBy'),
        )
        .optional(),
    },
    expect('a mapping'),
  )
  .superRefine((s, ctx) => {
    const seen = new Map<string, number>();
    (s.ports ?? []).forEach((p, i) => {
      const key = `${p.protocol ?? 'tcp'}/${p.host}`;
      const first = seen.get(key);
      if (first !== undefined) {
        ctx.addIssue({ code: 'custom', path: ['ports', i, 'host'], message: `expected a host port not used twice, got ${p.host} (also in ports[${first}])`, input: p.host });
      } else seen.set(key, i);
    });
  });

function isAddress(s: string): boolean {
  const m = /^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):(\d{1,5})$/.exec(s);
  return !!m && Number(m[2]) >= 1 && Number(m[2]) <= 65535;
}

export const peerSpec = z.strictObject(
  {
    nodeId: z.string(expect('a node id (64 hex digits, as `blixard node id` prints it)')).regex(NODE_ID, expect('a node id (64 hex digits, as `blixard node id` prints it)')),
    addresses: z
      .array(z.string(expect('HOST:PORT')).refine(isAddress, expect('HOST:PORT (IPv6 as [addr]:port)')), expect('a list of HOST:PORT addresses'))
      .optional(),
    role: z.enum(['voter', 'worker'], expect('one of voter, worker')).optional(),
    capacity: z
      .strictObject(
        { vcpus: posInt('a positive integer', 4096).optional(), memoryMiB: posInt('a positive integer (MiB)', 64 * 1024 * 1024).optional() },
        expect('a mapping with vcpus and/or memoryMiB'),
      )
      .optional(),
  },
  expect('a mapping'),
);

export const metadata = z.strictObject(
  {
    name: dnsLabel('a DNS-1123 label (lowercase letters, digits and "-", at most 63 characters, starting and ending with a letter or digit)'),
    labels: labels.optional(),
  },
  expect('a mapping with name and labels'),
);

const envelope = <K extends string, S extends z.ZodType>(kind: K, spec: S) =>
  z.strictObject(
    {
      apiVersion: z.literal(API_VERSION, expect(API_VERSION)),
      kind: z.literal(kind),
      metadata,
      spec,
    },
    expect('a mapping'),
  );

export const SCHEMAS = {
  VirtualMachine: envelope('VirtualMachine', vmSpec),
  Image: envelope('Image', imageSpec),
  Peer: envelope('Peer', peerSpec),
} as const;

/** The JSON Schema of every kind, for editors (`blixard schema`). */
export function jsonSchema(): Record<string, unknown> {
  const oneOf = KINDS.map((k) => {
    const s = z.toJSONSchema(SCHEMAS[k], { unrepresentable: 'any' }) as Record<string, unknown>;
    delete s.$schema;
    return { title: k, ...s };
  });
  return {
    $schema: 'https://json-schema.org/draft/2020-12/schema',
    $id: 'https://blixard.dev/schemas/v1/manifest.json',
    title: 'Blixard manifest (one YAML document)',
    oneOf,
  };
}

/** The keys a mapping at `path` under a kind's envelope accepts, for "did you mean". */
export function knownKeys(kind: string, path: (string | number)[]): string[] {
  let node: z.ZodType | undefined = (SCHEMAS as Record<string, z.ZodType>)[kind];
  for (const seg of path) {
    node = unwrap(node);
    if (!node) return [];
    if (typeof seg === 'number') {
      node = node instanceof z.ZodArray ? (node.element as z.ZodType) : undefined;
    } else {
      node = node instanceof z.ZodObject ? (node.shape as Record<string, z.ZodType>)[seg] : undefined;
    }
  }
  node = unwrap(node);
  return node instanceof z.ZodObject ? Object.keys(node.shape) : [];
}

function unwrap(node: z.ZodType | undefined): z.ZodType | undefined {
  let n = node;
  for (let i = 0; i < 10 && n; i++) {
    if (n instanceof z.ZodOptional || n instanceof z.ZodDefault || n instanceof z.ZodNullable) n = n.unwrap() as z.ZodType;
    else if (n instanceof z.ZodPipe) n = n.in as z.ZodType;
    else break;
  }
  return n;
}
