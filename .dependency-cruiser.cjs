// Module ranks from GUIDE.md: a module imports only modules of a strictly lower
// rank, and only through their index.ts. main.ts sits above everything.
const ranks = {
  telemetry: 0,
  api: 0,
  config: 1,
  runtime: 1,
  render: 2,
  db: 2,
  clusters: 2,
  sync: 3,
  status: 3,
  hub: 4,
  cli: 4,
};

const modules = Object.keys(ranks);

const rankRules = modules.map((from) => {
  const notBelow = modules.filter((to) => to !== from && ranks[to] >= ranks[from]);
  return {
    name: `rank-${from}`,
    comment: `${from} (rank ${ranks[from]}) may import only modules of a lower rank`,
    severity: 'error',
    from: { path: `^src/${from}/` },
    to: { path: notBelow.length > 0 ? `^src/(${notBelow.join('|')})/` : '^$' },
  };
});

module.exports = {
  forbidden: [
    ...rankRules,
    {
      name: 'no-main-import',
      comment: 'main.ts is the composition root; nothing imports it',
      severity: 'error',
      from: { path: '^src/' },
      to: { path: '^src/main\\.ts$' },
    },
    {
      name: 'index-only',
      comment: "a module's index.ts is its only public surface",
      severity: 'error',
      from: { path: '^src/([^/]+)/' },
      to: { path: '^src/([^/]+)/(?!index\\.ts$)', pathNot: '^src/$1/' },
    },
    {
      name: 'no-unknown-module',
      comment: 'every folder under src/ has a rank in .dependency-cruiser.cjs',
      severity: 'error',
      from: {},
      to: { path: `^src/(?!(${modules.join('|')})/|main\\.ts$)` },
    },
    {
      name: 'no-circular',
      severity: 'error',
      from: {},
      to: { circular: true },
    },
    {
      name: 'no-test-code-in-src',
      severity: 'error',
      from: { path: '^src/' },
      to: { path: '^(test|bench)/' },
    },
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    tsPreCompilationDeps: true,
    tsConfig: { fileName: 'tsconfig.json' },
    enhancedResolveOptions: { extensions: ['.ts', '.js'] },
  },
};
