import assert from 'node:assert/strict';
import { SpanStatusCode } from '@opentelemetry/api';
import test from 'node:test';
import { InMemorySpanExporter, SimpleSpanProcessor, type ReadableSpan } from '@opentelemetry/sdk-trace';
import { SecretScrubber, inSpan, startTracing } from '../src/telemetry/index.ts';

// Tracing starts before anything loads pg, exactly as rowcast controller does it.
const exporter = new InMemorySpanExporter();
const scrubber = new SecretScrubber();
const tracing = await startTracing({ env: {}, scrubber, spanProcessors: [new SimpleSpanProcessor({ exporter })] });
const { expectNoLeaks, openTestEnv } = await import('./harness/test-env.ts');
const fixture = await import('./helpers/hub-fixture.ts');

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

function descendants(spans: readonly ReadableSpan[], root: ReadableSpan): ReadableSpan[] {
  const direct = children(spans, root);
  return [...direct, ...direct.flatMap((c) => descendants(spans, c))];
}

test('one trace per sync: query and render, then per member its applies, with pg and HTTP spans inside', async () => {
  await fixture.putDqr(env, 'traced', {
    query: 'SELECT id, email FROM users ORDER BY id',
    template: 'apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: traced-{{row.id}}\ndata:\n  email: {{quote row.email}}\n',
  });
  await fixture.eventually('Ready', async () => (fixture.condition(await fixture.dqrStatus(env, 'traced'), 'Ready')?.status === 'True' ? true : undefined));
  const spans = exporter.getFinishedSpans();
  const sync = spans.find((s) => s.name === 'rowcast.sync' && s.attributes['rowcast.dqr'] === `${env.namespace}/traced` && descendants(spans, s).some((d) => d.name === 'rowcast.apply_batch' && d.attributes['rowcast.applied'] === 2));
  assert.ok(sync !== undefined, `no sync span that applied: ${[...new Set(spans.map((s) => s.name))].join(', ')}`);
  assert.equal(sync.parentSpanContext, undefined, 'a sync is the root of its trace');
  assert.equal(sync.attributes['rowcast.rows'], 2);
  const direct = children(spans, sync).map((s) => s.name).sort();
  assert.deepEqual(direct, ['rowcast.member_sync', 'rowcast.member_sync', 'rowcast.read_and_render']);
  const members = children(spans, sync).filter((s) => s.name === 'rowcast.member_sync');
  assert.deepEqual(members.map((m) => m.attributes['rowcast.cluster']).sort(), ['member-1', 'member-2']);
  const readAndRender = children(spans, sync).find((s) => s.name === 'rowcast.read_and_render');
  assert.ok(readAndRender !== undefined);
  assert.ok(descendants(spans, readAndRender).some((s) => s.name.startsWith('pg.')), 'the query is traced by the pg instrumentation');
  for (const member of members) {
    const batch = children(spans, member).find((s) => s.name === 'rowcast.apply_batch');
    assert.ok(batch !== undefined);
    assert.equal(typeof batch.attributes['rowcast.queue_wait_max_ms'], 'number');
    const http = descendants(spans, member).filter((s) => s.attributes['http.request.method'] !== undefined);
    assert.ok(http.some((s) => s.attributes['http.request.method'] === 'GET'), `the member's lists are traced under it: ${http.map((s) => s.name).join(',')}`);
    assert.equal(descendants(spans, batch).length, 0, 'applies are one batch span, not one HTTP span each');
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
