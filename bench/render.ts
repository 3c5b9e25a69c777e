// Render throughput on one core: template + YAML parse + validation +
// ownership stamping + content hash, for a ConfigMap per user (~1 KB each).
// Usage: node bench/render.ts [--rows N] [--rounds R] (defaults 20000, 5).
// Target: ≥ 15,000 rows/s/core. Each round renders all N rows; the figures are
// CPU time (user + system) of the best and the median round, so other load
// on the machine does not count against the renderer.
import { parseArgs } from 'node:util';
import { compileTemplate, renderRow, renderTemplate, type RenderContext } from '../src/render/index.ts';

const { values } = parseArgs({
  options: { rows: { type: 'string', default: '20000' }, rounds: { type: 'string', default: '5' } },
});
const rows = Number(values.rows);
const rounds = Number(values.rounds);
if (!Number.isInteger(rows) || rows <= 0) throw new Error('--rows must be a positive integer');
if (!Number.isInteger(rounds) || rounds <= 0) throw new Error('--rounds must be a positive integer');

const template = compileTemplate(`apiVersion: v1
kind: ConfigMap
metadata:
  name: user-{{row.id}}
  labels:
    app.kubernetes.io/name: user-config
    app.kubernetes.io/managed-by: rowcast
    example.com/team: {{lower row.team}}
    example.com/plan: {{row.plan}}
    topology.kubernetes.io/region: {{cluster.labels.region}}
  annotations:
    example.com/email: {{quote row.email}}
    example.com/created: {{quote (date row.created_at)}}
data:
  username: {{quote row.username}}
  fullName: {{quote row.full_name}}
  email: {{quote row.email}}
  team: {{quote row.team}}
  plan: {{quote row.plan}}
  quota: {{quote row.quota}}
  active: {{quote row.active}}
  createdDay: {{quote (date row.created_at "YYYY-MM-DD")}}
  tags: {{quote (join row.tags ",")}}
  cluster: {{quote cluster.name}}
  {{#if (eq cluster.labels.tier "prod")}}
  tier: prod
  {{/if}}
  settings.json: {{quote (toJson row.settings)}}
  greeting.txt: {{quote row.greeting}}
  locale: {{quote (default row.locale "en-US")}}
  timezone: {{quote row.timezone}}
  avatarUrl: {{quote row.avatar_url}}
  department: {{quote row.department}}
  manager: {{quote (lower row.manager_email)}}
  costCenter: {{quote row.cost_center}}
`);

const teams = ['Platform', 'Payments', 'Search', 'Identity', 'Growth'];
const plans = ['free', 'pro', 'enterprise'];
const data = Array.from({ length: rows }, (_, i) => ({
  id: i + 1,
  username: `user${i + 1}`,
  full_name: `User Number ${i + 1} & Co "quoted"`,
  email: `user${i + 1}@example.com`,
  team: teams[i % teams.length],
  plan: plans[i % plans.length],
  quota: 1000 + (i % 97),
  active: i % 7 !== 0,
  created_at: new Date(Date.UTC(2024, i % 12, 1 + (i % 28), i % 24, i % 60)),
  tags: ['alpha', 'beta', `group-${i % 10}`],
  settings: { theme: i % 2 === 0 ? 'dark' : 'light', notifications: { email: true, sms: false }, limits: [10, 20, 30] },
  greeting: `Hello user ${i + 1},\nwelcome: enjoy your stay!\n`,
  locale: i % 3 === 0 ? null : 'de-DE',
  timezone: 'Europe/Berlin',
  avatar_url: `https://avatars.example.com/u/${i + 1}.png?size=128`,
  department: `Department of ${teams[(i + 1) % teams.length] ?? ''}`,
  manager_email: `Manager${i % 50}@Example.com`,
  cost_center: `CC-${String(i % 1000).padStart(4, '0')}`,
}));
const base = {
  metadata: { name: 'users', namespace: 'team-a', labels: {}, annotations: {} },
  cluster: { name: 'eu-west-1', labels: { region: 'eu-west-1', tier: 'prod' } },
};
const owner = { hubId: 'hub-1', namespace: 'team-a', name: 'users', uid: '5b0f2d7c-4a6e-4c1e-9d7e-2f8a1b3c4d5e', target: 'fleet/member' };
const contexts: RenderContext[] = data.map((row) => ({ ...base, row }));

// Sanity check and output size.
const sample = renderTemplate(template, contexts[0] as RenderContext, { rowKey: '1' });
if (!sample.ok) throw new Error(sample.failure.message);
const first = renderRow(template, contexts[0] as RenderContext, { rowKey: '1', defaultNamespace: 'team-a', owner });
if (!first.ok) throw new Error(first.failure.message);

function runFull(): number {
  let failed = 0;
  for (let i = 0; i < rows; i++) {
    const result = renderRow(template, contexts[i] as RenderContext, { rowKey: String(i + 1), defaultNamespace: 'team-a', owner });
    if (!result.ok) failed++;
  }
  return failed;
}

function runTemplateOnly(): void {
  for (let i = 0; i < rows; i++) renderTemplate(template, contexts[i] as RenderContext, { rowKey: String(i + 1) });
}

/** Wall and CPU milliseconds: CPU time is the per-core figure even on a busy machine. */
function time(fn: () => unknown): { wall: number; cpu: number } {
  const cpu = process.cpuUsage();
  const start = performance.now();
  fn();
  const used = process.cpuUsage(cpu);
  return { wall: performance.now() - start, cpu: (used.user + used.system) / 1000 };
}

// Warm up the JIT on a slice before measuring.
for (let i = 0; i < Math.min(rows, 2000); i++) {
  renderRow(template, contexts[i] as RenderContext, { rowKey: String(i), defaultNamespace: 'team-a', owner });
}
const full: { wall: number; cpu: number }[] = [];
const templateOnly: { wall: number; cpu: number }[] = [];
for (let round = 0; round < rounds; round++) {
  let failed = 0;
  full.push(
    time(() => {
      failed = runFull();
    }),
  );
  if (failed > 0) throw new Error(`${failed} rows failed`);
  templateOnly.push(time(runTemplateOnly));
}
const byCpu = (a: { cpu: number }, b: { cpu: number }): number => a.cpu - b.cpu;
full.sort(byCpu);
templateOnly.sort(byCpu);
const best = full[0] as { wall: number; cpu: number };
const median = full[Math.floor(rounds / 2)] as { wall: number; cpu: number };

const bodyBytes = JSON.stringify((first.objects[0] as { body: unknown }).body).length;
const perSecond = (ms: number): number => Math.round((rows / ms) * 1000);
const perRow = (ms: number): string => ((ms * 1000) / rows).toFixed(1);
console.log(`rows: ${rows} x ${rounds} rounds; rendered YAML ${sample.text.length} chars, JSON body ${bodyBytes} bytes per row`);
console.log(`render+parse+validate+stamp+hash, CPU time per core:`);
console.log(`  best round:   ${perSecond(best.cpu)} rows/s, ${perRow(best.cpu)} µs/row (wall clock ${perSecond(best.wall)} rows/s)`);
console.log(`  median round: ${perSecond(median.cpu)} rows/s, ${perRow(median.cpu)} µs/row (wall clock ${perSecond(median.wall)} rows/s)`);
console.log(`  of which the template alone: ${perRow((templateOnly[0] as { cpu: number }).cpu)} µs/row (best round)`);
