import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseDatabaseQueryResource } from '../src/api/index.ts';
import { PoolRegistry } from '../src/db/index.ts';
import { compileTemplate } from '../src/render/index.ts';
import { readAndRender, type RenderedRows, type RenderInput } from '../src/sync/index.ts';
import { failOnLeaks, openTestEnv } from './harness/test-env.ts';
import { dbSettings, quietLogger } from './helpers/db.ts';

const env = await openTestEnv('render-reuse');
failOnLeaks(env);
const registry = new PoolRegistry({ logger: quietLogger });

function dqr(template: string, labels: Record<string, string> = {}): RenderInput['dqr'] {
  const parsed = parseDatabaseQueryResource({
    apiVersion: 'rowcast.dev/v1alpha1',
    kind: 'DatabaseQueryResource',
    metadata: { name: 'reuse', namespace: 'apps', uid: 'u-1', generation: 1, labels },
    spec: { database: { connectionSecretRef: { name: 'db' } }, query: 'SELECT id, plan FROM reuse ORDER BY id', template, targets: { clusterSelector: {} } },
  });
  if (!parsed.ok) throw new Error(JSON.stringify(parsed.errors));
  return parsed.value;
}

const template = 'apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: user-{{row.id}}\ndata:\n  plan: {{quote row.plan}}\n  cluster: {{cluster.name}}\n';
const clusters = [
  { key: 'apps/east', name: 'east', labels: {} },
  { key: 'apps/west', name: 'west', labels: {} },
];

test('a poll whose rows, DQR and clusters are unchanged takes the last rendering again; any change renders anew', async () => {
  await env.sql('CREATE TABLE reuse (id int PRIMARY KEY, plan text)');
  await env.sql("INSERT INTO reuse VALUES (1, 'free'), (2, 'pro')");
  const lease = registry.acquire(dbSettings(env.db));
  try {
    const render = (previous: RenderedRows | undefined, overrides: Partial<RenderInput> = {}): Promise<RenderedRows> =>
      readAndRender({
        dqr: dqr(template),
        pool: lease.pool,
        template: compileTemplate(template),
        owner: { hubId: 'hub', namespace: 'apps', name: 'reuse', uid: 'u-1' },
        clusters,
        previous,
        signal: AbortSignal.timeout(30_000),
        ...overrides,
      });
    const first = await render(undefined);
    assert.equal(first.desired.get('apps/east')?.length, 2);
    const again = await render(first);
    assert.equal(again.desired, first.desired, 'nothing changed: the same rendering, not a new one');

    await env.sql("UPDATE reuse SET plan = 'team' WHERE id = 2");
    const changed = await render(again);
    assert.notEqual(changed.desired, first.desired);
    assert.deepEqual(changed.desired.get('apps/west')?.[1]?.body?.['data'], { plan: 'team', cluster: 'west' });

    const grown = await render(changed, { clusters: [...clusters, { key: 'apps/north', name: 'north', labels: {} }] });
    assert.equal(grown.desired.get('apps/east'), changed.desired.get('apps/east'), 'a cluster joining renders alone: the others are taken as they were');
    assert.deepEqual(
      grown.desired.get('apps/north')?.map((o) => o.body?.['data']),
      [
        { plan: 'free', cluster: 'north' },
        { plan: 'team', cluster: 'north' },
      ],
    );
    assert.equal((await render(grown, { clusters: [...clusters, { key: 'apps/north', name: 'north', labels: {} }] })).desired, grown.desired);

    const relabelled = await render(changed, { clusters: clusters.map((c) => (c.name === 'west' ? { ...c, labels: { tier: 'gold' } } : c)) });
    assert.notEqual(relabelled.desired.get('apps/west'), changed.desired.get('apps/west'), "a cluster's labels are template input");
    assert.equal(relabelled.desired.get('apps/east'), changed.desired.get('apps/east'));
    const dqrLabelled = await render(relabelled, { dqr: dqr(template, { team: 'a' }) });
    assert.notEqual(dqrLabelled.desired, relabelled.desired, "the DQR's labels are template input");

    const lean = await render(undefined, { keepBodies: false });
    const east = lean.desired.get('apps/east')?.[0];
    assert.equal(east?.body, undefined, "the controller's snapshot keeps no bodies");
    assert.equal(east?.hash, first.desired.get('apps/east')?.[0]?.hash);
    assert.deepEqual(lean.rerender('1', 'apps/east')?.[0]?.body, first.desired.get('apps/east')?.[0]?.body, 'a member renders the row again for the body it applies');

    const clockTemplate = `${template}  at: {{quote (now)}}\n`;
    const clocked = await render(undefined, { template: compileTemplate(clockTemplate), dqr: dqr(clockTemplate) });
    const clockedAgain = await render(clocked, { template: compileTemplate(clockTemplate), dqr: dqr(clockTemplate) });
    assert.notEqual(clockedAgain.desired, clocked.desired, 'a template that reads the clock renders at every poll');
  } finally {
    await lease.release();
  }
});
