// The folders of src/ and the arrows between them (DESIGN.md, "Where the node layer goes next"),
// as dependency-cruiser rules. test/boundaries.test.ts runs them in `npm test`; by hand:
//   npx depcruise src
//
// 1. A folder is imported through its index.ts only; a sub-folder (src/raft/core/) is internal
//    to its folder and imported there through its own index.ts. Files at the root of src/
//    (src/version.ts) may be imported by anyone.
// 2. Arrows go one way: a folder imports only the folders ARROWS lists for it. A folder that is
//    not in ARROWS imports no other folder (give a new folder its arrows here first).
// 3. No circular dependencies between folders.
// Type-only imports and lazy import() count like any other import.

/** What each folder of src/ may import; anything not listed is forbidden. */
const ARROWS = {
  storage: [],
  host: [],
  state: [],
  lifecycle: [],
  raft: ['storage', 'lifecycle'],
  p2p: ['raft', 'lifecycle'],
  images: ['storage', 'lifecycle'],
  vm: ['storage', 'host', 'lifecycle'],
  manifest: ['state'],
  api: ['state', 'manifest', 'storage', 'host'],
  reconciler: ['state', 'vm', 'host', 'lifecycle'],
  cluster: ['state', 'raft', 'lifecycle'],
  sync: ['p2p', 'raft', 'state', 'images', 'lifecycle'],
  service: ['api', 'manifest', 'state', 'raft', 'images', 'reconciler', 'vm', 'cluster', 'sync', 'lifecycle'],
  node: 'every folder except cli',
  cli: ['api', 'manifest', 'node', 'state', 'images', 'storage', 'host', 'lifecycle'],
};

const arrowRules = Object.entries(ARROWS).map(([from, to]) =>
  from === 'node'
    ? {
        name: 'arrows-from-node',
        comment: 'node/ may import every folder except cli/',
        severity: 'error',
        from: { path: '^src/node/' },
        to: { path: '^src/cli/' },
      }
    : {
        name: `arrows-from-${from}`,
        comment: `${from}/ may import ${to.length ? `only ${to.join(', ')}` : 'no other folder'}`,
        severity: 'error',
        from: { path: `^src/${from}/` },
        to: { path: '^src/[^/]+/', pathNot: `^src/(${[from, ...to].join('|')})/` },
      },
);

/** @type {import('dependency-cruiser').IConfiguration} */
module.exports = {
  forbidden: [
    {
      name: 'only-through-index',
      comment: "another folder's files are imported through its index.ts only",
      severity: 'error',
      from: { path: '^src/([^/]+)/' },
      to: { path: '^src/[^/]+/', pathNot: ['^src/$1/', '^src/[^/]+/index\\.ts$'] },
    },
    {
      name: 'sub-folder-through-index',
      comment: "a sub-folder's files are imported through its index.ts only",
      severity: 'error',
      from: { path: '^(src/.+)/[^/]+$' },
      to: { path: '^$1/[^/]+/', pathNot: '^$1/[^/]+/index\\.ts$' },
    },
    ...arrowRules,
    {
      name: 'arrows-from-unlisted-folder',
      comment: 'a folder without arrows in .dependency-cruiser.cjs imports no other folder',
      severity: 'error',
      from: { path: '^src/([^/]+)/', pathNot: `^src/(${Object.keys(ARROWS).join('|')})/` },
      to: { path: '^src/[^/]+/', pathNot: '^src/$1/' },
    },
    {
      name: 'no-folder-cycles',
      comment: 'folders of src/ do not depend on each other in a circle',
      severity: 'error',
      scope: 'folder',
      from: { path: '^src/[^/]+$' },
      to: { path: '^src/[^/]+$', circular: true },
    },
    {
      name: 'resolvable',
      comment: 'every import of src/ resolves (a .js specifier to its .ts file)',
      severity: 'error',
      from: { path: '^src/' },
      to: { couldNotResolve: true },
    },
  ],
  options: {
    // TypeScript 7 has no compiler API for dependency-cruiser to parse with; swc parses .ts
    // (import type included) and the resolver maps NodeNext's './x.js' to ./x.ts.
    parser: 'swc',
    doNotFollow: { path: 'node_modules' },
    moduleSystems: ['es6', 'cjs'],
    // Product code only: a test beside its source is white-box and may reach what it tests (and
    // the helpers under test/, which import across folders freely).
    exclude: { path: ['^dist/', '\\.test\\.ts$'] },
  },
};
