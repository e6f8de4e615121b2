import { readdirSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { cruise, getAvailableTranspilers, type ICruiseResult, type IViolation } from 'dependency-cruiser';
import extractDepcruiseOptions from 'dependency-cruiser/config-utl/extract-depcruise-options';
import { describe, expect, it } from 'vitest';

// The folders of src/ import each other only through their index.ts, along the arrows of
// .dependency-cruiser.cjs (DESIGN.md), with no circle between folders. dependency-cruiser checks
// it; the second test shows, on a small tree of deliberate mistakes, that the rules do catch them
// (a check that passes because it sees nothing would pass here too).

const ROOT = path.resolve(import.meta.dirname, '..');
const CONFIG = path.join(ROOT, '.dependency-cruiser.cjs');
const FIXTURE = path.join(ROOT, 'test', 'fixtures', 'boundaries');

const comments = new Map(
  (createRequire(import.meta.url)(CONFIG) as { forbidden: { name: string; comment: string }[] }).forbidden.map((r) => [r.name, r.comment]),
);

async function cruiseSrc(baseDir: string): Promise<ICruiseResult> {
  const options = await extractDepcruiseOptions(CONFIG);
  const { output } = await cruise(['src'], { ...options, baseDir });
  if (typeof output === 'string') throw new Error(`expected a cruise result, got a report: ${output}`);
  return output;
}

/** One line per violation: rule, from, to, and what the rule says. */
function describeViolation(v: IViolation): string {
  const circle = v.cycle ? ` (circle: ${[v.from, ...v.cycle.map((c) => c.name)].join(' -> ')})` : '';
  return `${v.rule.name}: ${v.from} -> ${v.to}${circle}  [${comments.get(v.rule.name) ?? ''}]`;
}

const tsFiles = (dir: string): string[] =>
  readdirSync(dir, { recursive: true, encoding: 'utf8' }).filter((f) => f.endsWith('.ts') && !f.endsWith('.test.ts')).map((f) => `src/${f.split(path.sep).join('/')}`);

describe('folder boundaries (.dependency-cruiser.cjs)', () => {
  it('src/ has no violation', async () => {
    // With no TypeScript parser dependency-cruiser would read .ts files as JavaScript and find
    // little: refuse to run rather than pass.
    expect(getAvailableTranspilers().find((t) => t.name === 'swc')?.available, 'swc (@swc/core) is needed to parse .ts').toBe(true);
    const result = await cruiseSrc(ROOT);

    // Every file was read, and a './x.js' specifier resolved to its .ts file.
    const cruised = new Set(result.modules.map((m) => m.source));
    expect(tsFiles(path.join(ROOT, 'src')).filter((f) => !cruised.has(f))).toEqual([]);
    const parse = result.modules.find((m) => m.source === 'src/manifest/parse.ts');
    expect(parse?.dependencies.map((d) => d.resolved)).toContain('src/state/index.ts');

    const violations = result.summary.violations.map(describeViolation);
    expect(violations, `imports that break the folder rules:\n${violations.join('\n')}\n`).toEqual([]);
  });

  it('catches what it should in a tree of deliberate mistakes', async () => {
    const result = await cruiseSrc(FIXTURE);
    const found = result.summary.violations.map((v) => `${v.rule.name}: ${v.from} -> ${v.to}`).sort();
    expect(found, result.summary.violations.map(describeViolation).join('\n')).toEqual(
      [
        'only-through-index: src/manifest/load.ts -> src/state/types.ts',
        'sub-folder-through-index: src/raft/node.ts -> src/raft/core/log.ts',
        'arrows-from-state: src/state/store.ts -> src/manifest/index.ts', // the wrong way round
        'arrows-from-host: src/host/index.ts -> src/state/index.ts', // a type-only import
        'arrows-from-vm: src/vm/index.ts -> src/api/index.ts', // a lazy import()
        'arrows-from-unlisted-folder: src/net/index.ts -> src/state/index.ts',
        'no-folder-cycles: src/state -> src/manifest',
        'no-folder-cycles: src/manifest -> src/state',
        'resolvable: src/cli/typo.ts -> ../manfest/index.js',
      ].sort(),
    );
  });
});
