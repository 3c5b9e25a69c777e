import assert from 'node:assert/strict';
import { SpanStatusCode } from '@opentelemetry/api';
import test from 'node:test';
import { InMemorySpanExporter, SimpleSpanProcessor, type ReadableSpan } from '@opentelemetry/sdk-trace';
import { SecretScrubber, inSpan, startTracing } from '../src/telemetry/index.ts';
import { adminRequest } from './harness/kube-apiserver.ts';

// Tracing starts before anything loads pg, exactly as rowcast controller does it.
const exporter = new InMemorySpanExporter();
const scrubber = new SecretScrubber();
const tracing = await startTracing({ env: {}, scrubber, spanProcessors: [new SimpleSpanProcessor({ exporter })] });
const { expectNoLeaks, openTestEnv } = await import('./harness/test-env.ts');
const fixture = await import('./helpers/hub-fixture.ts');
const { MemberApi, MemberKubeConfig } = await import('../src/clusters/index.ts');

const env = await openTestEnv('tracing');
await env.sql('CREATE TABLE users (id int PRIMARY KEY, email text)');
await env.sql("INSERT INTO users VALUES (1, 'secret-ada@example.com'), (2, 'secret-bob@example.com')");
await fixture.registerMembers(env);
await fixture.putDatabaseSecret(env);
const baseline = await env.leaks();
const running = await fixture.startController(env, [], scrubber);
env.defer(async () => {
  await running.stop();
  await tracing.shutdown();
  await expectNoLeaks(env, baseline);
});

function children(spans: readonly ReadableSpan[], parent: ReadableSpan): ReadableSpan[] {
  return spans.filter((s) => s.parentSpanContext?.spanId === parent.spanContext().spanId);
}

function rootOf(spans: readonly ReadableSpan[], span: ReadableSpan): ReadableSpan | undefined {
  let current: ReadableSpan | undefined = span;
  while (current?.parentSpanContext !== undefined) {
    const parentId: string = current.parentSpanContext.spanId;
    current = spans.find((s) => s.spanContext().spanId === parentId);
  }
  return current;
}

const queryText = (span: ReadableSpan): string => {
  const text = span.attributes['db.query.text'] ?? span.attributes['db.statement'];
  return typeof text === 'string' ? text : '';
};

function descendants(spans: readonly ReadableSpan[], root: ReadableSpan): ReadableSpan[] {
  const direct = children(spans, root);
  return [...direct, ...direct.flatMap((c) => descendants(spans, c))];
}

test('one trace per query (read and render), and one per member it reaches, linked to it, with pg and HTTP spans inside', async () => {
  await fixture.putDqr(env, 'traced', {
    query: 'SELECT id, email FROM users ORDER BY id',
    template: 'apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: traced-{{row.id}}\ndata:\n  email: {{quote row.email}}\n',
  });
  await fixture.eventually('Ready', async () => (fixture.condition(await fixture.dqrStatus(env, 'traced'), 'Ready')?.status === 'True' ? true : undefined));
  const spans = exporter.getFinishedSpans();
  const dqr = `${env.namespace}/traced`;
  const applying = spans.filter((s) => s.name === 'rowcast.member_sync' && s.attributes['rowcast.dqr'] === dqr && descendants(spans, s).some((d) => d.name === 'rowcast.apply_batch' && d.attributes['rowcast.applied'] === 2));
  // The first that applied on each member (a later pass may apply again while the watch cache has not yet heard of the first).
  const members = [...new Map(applying.map((s) => [s.attributes['rowcast.cluster'], s])).values()];
  assert.equal(members.length, 2, `a member trace that applied on each member: ${[...new Set(spans.map((s) => s.name))].join(', ')}`);
  const link = members[0]?.links[0];
  assert.ok(link !== undefined, "a member's trace links to the query's");
  const sync = spans.find((s) => s.spanContext().spanId === link.context.spanId);
  assert.ok(sync !== undefined);
  assert.equal(sync.name, 'rowcast.sync');
  assert.equal(sync.parentSpanContext, undefined, 'a query is the root of its trace');
  assert.equal(sync.attributes['rowcast.dqr'], dqr);
  assert.equal(sync.attributes['rowcast.rows'], 2);
  assert.equal(sync.attributes['rowcast.trigger'], 'spec', 'the first sync of a generation says so');
  assert.equal(typeof sync.attributes['rowcast.trigger_wait_ms'], 'number');
  assert.deepEqual(children(spans, sync).map((s) => s.name), ['rowcast.read_and_render']);
  const readAndRender = children(spans, sync)[0];
  assert.ok(readAndRender !== undefined);
  assert.ok(descendants(spans, readAndRender).some((s) => s.name.startsWith('pg.')), 'the query is traced by the pg instrumentation');
  assert.deepEqual(members.map((m) => m.attributes['rowcast.cluster']).sort(), [`${env.namespace}/member-1`, `${env.namespace}/member-2`]);
  for (const member of members) {
    assert.equal(member.parentSpanContext, undefined, "a member's work is a trace of its own: a slow member never holds the query's trace open");
    assert.equal(member.links[0]?.context.spanId, sync.spanContext().spanId, 'both members link to the same query');
    assert.equal(member.attributes['rowcast.trigger'], 'spec');
    assert.equal(typeof member.attributes['rowcast.snapshot_wait_ms'], 'number');
    const batch = children(spans, member).find((s) => s.name === 'rowcast.apply_batch');
    assert.ok(batch !== undefined);
    assert.equal(typeof batch.attributes['rowcast.queue_wait_max_ms'], 'number');
    const http = descendants(spans, member).filter((s) => s.attributes['http.request.method'] !== undefined);
    assert.ok(http.some((s) => s.attributes['http.request.method'] === 'GET'), `the member's lists are traced under it: ${http.map((s) => s.name).join(',')}`);
    assert.equal(descendants(spans, batch).length, 0, 'applies are one batch span, not one HTTP span each');
  }
});

test("a sync fired by NOTIFY says so and links to the span of the notification's receipt", async () => {
  await env.sql('CREATE TABLE notes (id int PRIMARY KEY)');
  await env.sql('INSERT INTO notes VALUES (1)');
  await fixture.putDqr(env, 'notified', {
    query: 'SELECT id FROM notes ORDER BY id',
    template: 'apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: notified-{{row.id}}\n',
    pollInterval: '10m',
    changeDetection: { mode: 'notify', channel: 'rowcast_traced' },
  });
  await fixture.eventually('Ready', async () => (fixture.condition(await fixture.dqrStatus(env, 'notified'), 'Ready')?.status === 'True' ? true : undefined));
  const sync = await fixture.eventually('a sync fired by notify', async () => {
    await env.sql('NOTIFY rowcast_traced');
    await new Promise((resolve) => setTimeout(resolve, 300));
    return exporter.getFinishedSpans().find((s) => s.name === 'rowcast.sync' && s.attributes['rowcast.dqr'] === `${env.namespace}/notified` && s.attributes['rowcast.trigger'] === 'notify');
  });
  const link = sync.links[0];
  assert.ok(link !== undefined, 'the sync links to the notification');
  const receipt = exporter.getFinishedSpans().find((s) => s.spanContext().spanId === link.context.spanId);
  assert.equal(receipt?.name, 'rowcast.notification');
  assert.equal(receipt.attributes['rowcast.dqr'], `${env.namespace}/notified`);
  assert.equal(receipt.parentSpanContext, undefined, 'the receipt is a trace of its own, not part of whatever ran when it came');
  const wait = sync.attributes['rowcast.trigger_wait_ms'];
  assert.equal(typeof wait, 'number');
  assert.ok(Number(wait) >= 0);
});

test("no span of one DQR's status write-back or ledger update lands in another DQR's trace", async () => {
  await env.sql('CREATE TABLE wb_a (id int PRIMARY KEY, ready int); CREATE TABLE wb_b (id int PRIMARY KEY, ready int)');
  await env.sql('INSERT INTO wb_a VALUES (1); INSERT INTO wb_b VALUES (1)');
  const deployment = (prefix: string): string =>
    `apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: ${prefix}-{{row.id}}\nspec:\n  replicas: 2\n  selector:\n    matchLabels:\n      app: ${prefix}-{{row.id}}\n  template:\n    metadata:\n      labels:\n        app: ${prefix}-{{row.id}}\n    spec:\n      containers:\n        - name: app\n          image: example.com/app:1\n`;
  for (const name of ['a', 'b']) {
    // A polls every second, so its syncs are running while B's statuses come back.
    await fixture.putDqr(env, `wb-${name}`, {
      query: `SELECT id FROM wb_${name} ORDER BY id`,
      template: deployment(`wb${name}`),
      pollInterval: name === 'a' ? '1s' : '10m',
      statusUpdateQueryTemplate: `UPDATE wb_${name} SET ready = {{param resource.status.readyReplicas}} WHERE id = {{param row.id}}`,
      ledger: { table: 'wb_ledger' },
    });
  }
  for (const name of ['a', 'b']) await fixture.eventually(`wb-${name} Ready`, async () => (fixture.condition(await fixture.dqrStatus(env, `wb-${name}`), 'Ready')?.status === 'True' ? true : undefined));
  const [member] = env.members;
  assert.ok(member !== undefined);
  for (const [round, name] of [[1, 'a'], [1, 'b'], [2, 'b'], [2, 'a']] as const) {
    const patched = await adminRequest(member.info, 'PATCH', `/apis/apps/v1/namespaces/${env.namespace}/deployments/wb${name}-1/status`, { status: { replicas: 2, readyReplicas: round } });
    assert.equal(patched.status, 200, patched.body);
    await fixture.eventually(`wb_${name} written back`, async () => ((await env.sql<{ ready: number | null }>(`SELECT ready FROM wb_${name} WHERE id = 1`)).rows[0]?.ready === round ? true : undefined));
  }
  const dqrB = `${env.namespace}/wb-b`;
  const writeBacksB = await fixture.eventually("B's write-back spans", () => {
    const spans = exporter.getFinishedSpans();
    const found = spans.filter((s) => queryText(s).startsWith('UPDATE wb_b'));
    return Promise.resolve(found.length >= 2 ? { spans, found } : undefined);
  });
  for (const span of writeBacksB.found) {
    const root = rootOf(writeBacksB.spans, span);
    assert.equal(root?.name, 'rowcast.write_back', `B's UPDATE is traced under ${root?.name ?? 'nothing'} (${String(root?.attributes['rowcast.dqr'])})`);
    assert.equal(root.attributes['rowcast.dqr'], dqrB);
  }
  const spans = exporter.getFinishedSpans();
  for (const root of spans.filter((s) => s.parentSpanContext === undefined && s.attributes['rowcast.dqr'] !== undefined)) {
    const dqr = String(root.attributes['rowcast.dqr']);
    for (const inner of descendants(spans, root)) {
      if (inner.attributes['rowcast.dqr'] !== undefined) assert.equal(inner.attributes['rowcast.dqr'], dqr, `${inner.name} of another DQR inside ${root.name} of ${dqr}`);
      for (const other of ['wb_a', 'wb_b']) if (!dqr.endsWith(other.replace('_', '-'))) assert.ok(!queryText(inner).includes(`UPDATE ${other}`), `${queryText(inner)} inside ${root.name} of ${dqr}`);
    }
  }
  const ledgerRoots = spans.filter((s) => s.name === 'rowcast.ledger_status');
  assert.ok(ledgerRoots.some((s) => s.attributes['rowcast.dqr'] === dqrB), 'the ledger status UPDATE of B has a root of its own');
  for (const root of ledgerRoots) {
    assert.equal(root.parentSpanContext, undefined);
    assert.ok(descendants(spans, root).some((s) => queryText(s).includes('UPDATE')), 'the ledger UPDATE is traced inside it');
  }
});

test('an expected 404 (discovery miss, GET before create, DELETE of a gone object) is not an error on its HTTP span; an unexpected one is', async () => {
  const [member] = env.members;
  assert.ok(member !== undefined);
  const api = new MemberApi(new MemberKubeConfig(member.info.kubeconfig, { requestTimeoutMs: 10_000 }));
  const missing = `/api/v1/namespaces/${env.namespace}/configmaps/never-there`;
  try {
    await inSpan('rowcast.not_found_check', {}, async () => {
      assert.equal(await api.resourceFor('nothing.rowcast.example/v1', 'Thing'), undefined);
      assert.equal(await api.get(missing), undefined);
      await api.delete(missing, undefined);
      await assert.rejects(api.request('GET', missing), /404/);
    });
  } finally {
    await api.close();
  }
  const spans = exporter.getFinishedSpans();
  const check = spans.find((s) => s.name === 'rowcast.not_found_check');
  assert.ok(check !== undefined);
  const http = descendants(spans, check);
  assert.equal(http.length, 4, http.map((s) => s.name).join(','));
  assert.ok(http.every((s) => s.attributes['http.response.status_code'] === 404));
  const [discovery, get, del, unexpected] = http.sort((x, y) => (x.startTime[0] - y.startTime[0]) * 1e9 + (x.startTime[1] - y.startTime[1]));
  for (const span of [discovery, get, del]) {
    assert.notEqual(span?.status.code, SpanStatusCode.ERROR, `${span?.name ?? ''} ${String(span?.attributes['url.path'])}`);
    assert.equal(span?.attributes['error.type'], undefined);
  }
  assert.equal(unexpected?.status.code, SpanStatusCode.ERROR, 'a 404 nobody expected stays an error');
});

test('timestamp mode: freshness counts from the max() value, so a row stamped 30 s ago shows at least 30 s on each member', async () => {
  await env.sql("CREATE TABLE stamped (id int PRIMARY KEY, v text, updated_at timestamptz NOT NULL); INSERT INTO stamped VALUES (1, 'a', now() - interval '1 hour')");
  await fixture.putDqr(env, 'stamped', {
    query: 'SELECT id, v FROM stamped ORDER BY id',
    template: 'apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: stamped-{{row.id}}\ndata:\n  v: {{quote row.v}}\n',
    pollInterval: '1s',
    changeDetection: { mode: 'timestamp', tableName: 'stamped', timestampColumn: 'updated_at' },
  });
  await fixture.eventually('first sync', async () => (fixture.condition(await fixture.dqrStatus(env, 'stamped'), 'Ready')?.status === 'True' ? true : undefined));
  /** Per cluster, observations above 30 s. */
  const slow = async (): Promise<Map<string, number>> => {
    const counts = new Map<string, number>();
    for (const v of (await running.metrics.syncFreshness.get()).values) {
      const cluster = String(v.labels['cluster']);
      if (v.metricName?.endsWith('_count') === true) counts.set(cluster, (counts.get(cluster) ?? 0) + v.value);
      if (v.metricName?.endsWith('_bucket') === true && (v.labels as Record<string, unknown>)['le'] === 30) counts.set(cluster, (counts.get(cluster) ?? 0) - v.value);
    }
    return counts;
  };
  const before = await slow();
  await env.sql("UPDATE stamped SET v = 'moved', updated_at = now() - interval '30 seconds' WHERE id = 1");
  for (const member of env.members) {
    await fixture.eventually('applied on each member', async () => ((await fixture.configMaps(member, env.namespace)).get('stamped-1')?.['v'] === 'moved' ? true : undefined));
  }
  const after = await fixture.eventually('observed', async () => {
    const now = await slow();
    return [...now.keys()].length >= 2 ? now : undefined;
  });
  for (const cluster of [`${env.namespace}/member-1`, `${env.namespace}/member-2`]) {
    assert.ok((after.get(cluster) ?? 0) - (before.get(cluster) ?? 0) >= 1, `${cluster}: no freshness observation at or above 30 s (${JSON.stringify([...after])})`);
  }
});

test('a connection Secret whose host key holds a URL is refused, and its password reaches no span', async () => {
  const password = env.db.password;
  await fixture.putDatabaseSecret(env, 'db-url', { host: `postgresql://${env.db.user}:${password}@${env.db.host}:${env.db.port}/${env.db.database}` });
  await fixture.putDqr(env, 'url-host', { query: 'SELECT id FROM users', template: 'apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: url-{{row.id}}\n', database: { connectionSecretRef: { name: 'db-url' } } });
  const connected = await fixture.eventually('DatabaseConnected=False', async () => {
    const c = fixture.condition(await fixture.dqrStatus(env, 'url-host'), 'DatabaseConnected');
    return c?.status === 'False' ? c : undefined;
  });
  assert.equal(connected.reason, 'SecretInvalid');
  assert.match(connected.message, /db-url key host: .*not a host name/);
  assert.ok(!connected.message.includes(password));
  const text = JSON.stringify(exporter.getFinishedSpans().map((s) => ({ name: s.name, attributes: s.attributes, events: s.events, status: s.status })));
  assert.ok(!text.includes(password), 'a span carries the password from the host key');
});

test('every span passes the scrubber, whoever wrote its attributes, events or status', async () => {
  scrubber.register('hunter2-registered', 'secret:ns/db');
  await inSpan('rowcast.scrub_check', { 'server.address': 'postgresql://u:hunter2-registered@db', 'db.password': 'plain', 'rowcast.list': ['a', 'x-hunter2-registered'] }, (span) => {
    span.recordException(new Error('login hunter2-registered refused'));
    span.setStatus({ code: SpanStatusCode.ERROR, message: 'auth hunter2-registered' });
    return Promise.resolve();
  });
  const span = exporter.getFinishedSpans().find((s) => s.name === 'rowcast.scrub_check');
  assert.ok(span !== undefined);
  assert.equal(span.attributes['server.address'], 'postgresql://u:[REDACTED]@db');
  assert.equal(span.attributes['db.password'], '[REDACTED]');
  assert.deepEqual(span.attributes['rowcast.list'], ['a', 'x-[REDACTED]']);
  assert.equal(span.events[0]?.attributes?.['exception.message'], 'login [REDACTED] refused');
  assert.equal(span.status.message, 'auth [REDACTED]');
});

test('no secret, bind value or row data in any span', () => {
  const spans = exporter.getFinishedSpans();
  assert.ok(spans.length > 10);
  const text = JSON.stringify(spans.map((s) => ({ name: s.name, attributes: s.attributes, events: s.events })));
  const secrets = [env.db.password, env.state.postgres.password, 'secret-ada@example.com', 'secret-bob', ...env.members.map((m) => m.info.adminKey.split('\n')[1] ?? 'x')];
  for (const secret of secrets) assert.ok(!text.includes(secret), `a span carries ${secret.slice(0, 6)}…`);
});
