import assert from 'node:assert/strict';
import { test, type TestContext } from 'node:test';
import pg from 'pg';
import { DbError, NotifyHub, type ConnectionSettings, type ConnectionSettingsInput, type NotifySignal } from '../src/db/index.ts';
import { waitFor } from './harness/ports.ts';
import { failOnLeaks, openTestEnv } from './harness/test-env.ts';
import { dbSettings, recordingLogger } from './helpers/db.ts';

const env = await openTestEnv('db-change-notify');
failOnLeaks(env);

function settings(overrides: Partial<ConnectionSettingsInput> = {}): ConnectionSettings {
  return dbSettings(env.db, { sslmode: 'disable', ...overrides });
}

/** Records signals with their time; `wait` resolves once `count` have arrived. */
function recorder(): { signals: NotifySignal[]; onSignal: (reason: NotifySignal) => void; wait: (count: number, what: string) => Promise<void> } {
  const signals: NotifySignal[] = [];
  return {
    signals,
    onSignal: (reason) => signals.push(reason),
    wait: (count, what) => waitFor(what, () => Promise.resolve(signals.length >= count), 10_000, 20),
  };
}

/** LISTEN sessions the server holds on the test database, seen by the superuser. */
async function listenBackends(): Promise<number[]> {
  const { host, port, user, password } = env.state.postgres;
  const admin = new pg.Client({ host, port, user, password, database: 'postgres' });
  await admin.connect();
  try {
    const { rows } = await admin.query<{ pid: number }>(
      "SELECT pid FROM pg_stat_activity WHERE datname = $1 AND application_name = 'rowcast-listen' ORDER BY pid",
      [env.db.database],
    );
    return rows.map((row) => row.pid);
  } finally {
    await admin.end();
  }
}

async function terminate(pid: number): Promise<void> {
  const { host, port, user, password } = env.state.postgres;
  const admin = new pg.Client({ host, port, user, password, database: 'postgres' });
  await admin.connect();
  try {
    await admin.query('SELECT pg_terminate_backend($1)', [pid]);
  } finally {
    await admin.end();
  }
}

/** A hub closed when the test ends, passed or failed: an open LISTEN connection would keep the file from exiting. */
function openHub(t: TestContext, options: ConstructorParameters<typeof NotifyHub>[0]): NotifyHub {
  const hub = new NotifyHub(options);
  t.after(() => hub.closeAll());
  return hub;
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

test('a committed NOTIFY reaches two subscribers of one channel over ONE connection; a rolled-back one does not', async (t) => {
  const hub = openHub(t, { logger: recordingLogger().logger, debounceMs: 20 });
  const a = recorder();
  const b = recorder();
  const other = recorder();
  const subA = hub.subscribe(settings(), 'rowcast_users', a.onSignal);
  // Different pool sizing, same database: the same LISTEN connection.
  const subB = hub.subscribe(settings({ pool: { max: 3, statementTimeoutMs: 5000 } }), 'rowcast_users', b.onSignal);
  const subOther = hub.subscribe(settings(), 'Other Channel', other.onSignal);
  await Promise.all([subA.ready, subB.ready, subOther.ready]);
  assert.equal(hub.connections, 1);
  assert.equal((await listenBackends()).length, 1);

  await env.sql(`SELECT pg_notify('rowcast_users', 'k1')`);
  await Promise.all([a.wait(1, 'subscriber a'), b.wait(1, 'subscriber b')]);
  assert.deepEqual([a.signals, b.signals], [['notify'], ['notify']]);

  // The channel name is an exact, case-sensitive identifier; a rolled-back NOTIFY is never delivered.
  await env.sql('BEGIN');
  await env.sql(`SELECT pg_notify('Other Channel', '')`);
  await env.sql('ROLLBACK');
  await env.sql(`SELECT pg_notify('other channel', '')`);
  await sleep(300);
  assert.deepEqual(other.signals, []);
  await env.sql(`NOTIFY "Other Channel"`);
  await other.wait(1, 'the other channel');
  assert.deepEqual([a.signals.length, b.signals.length], [1, 1], 'other channels do not wake these subscribers');

  await Promise.all([subA.close(), subB.close(), subOther.close()]);
  assert.equal(hub.connections, 0);
  await hub.closeAll();
});

test('a burst of 1,000 notifications gives a handful of signals, not 1,000', async (t) => {
  const hub = openHub(t, { logger: recordingLogger().logger });
  const server = recorder();
  const client = recorder();
  const subServer = hub.subscribe(settings(), 'burst_server', server.onSignal);
  const subClient = hub.subscribe(settings(), 'burst_client', client.onSignal);
  await Promise.all([subServer.ready, subClient.ready]);

  // 1,000 separate transactions from one DO block (COMMIT inside), distinct payloads so none collapse.
  await env.sql(`DO $$ BEGIN FOR i IN 1..1000 LOOP PERFORM pg_notify('burst_server', i::text); COMMIT; END LOOP; END $$`);
  // 1,000 separate transactions from the client, one round trip each.
  const started = performance.now();
  for (let i = 0; i < 1000; i++) await env.sql(`SELECT pg_notify('burst_client', $1)`, [String(i)]);
  const clientMs = performance.now() - started;
  await server.wait(1, 'a signal for the server-side burst');
  await client.wait(1, 'a signal for the client-side burst');
  await sleep(1200); // longer than maxWaitMs: anything still pending has fired
  process.stdout.write(
    `# burst: server-side 1,000 commits -> ${server.signals.length} signal(s); client-side 1,000 commits over ${Math.round(clientMs)} ms -> ${client.signals.length} signal(s)\n`,
  );
  assert.ok(server.signals.length >= 1 && server.signals.length <= 10, `server burst: ${server.signals.length}`);
  assert.ok(client.signals.length >= 1 && client.signals.length <= 10, `client burst: ${client.signals.length}`);
  assert.ok([...server.signals, ...client.signals].every((reason) => reason === 'notify'));
  await hub.closeAll();
});

test('pg_terminate_backend on the LISTEN connection: reconnect, re-LISTEN, signal reconnect, later NOTIFYs arrive', async (t) => {
  const { logger, entries } = recordingLogger();
  const hub = openHub(t, { logger, debounceMs: 20, reconnect: { baseMs: 100, maxMs: 1000 } });
  const a = recorder();
  const b = recorder();
  const subA = hub.subscribe(settings(), 'chan_a', a.onSignal);
  const subB = hub.subscribe(settings(), 'chan_b', b.onSignal);
  await Promise.all([subA.ready, subB.ready]);
  const [before] = await listenBackends();
  assert.ok(before !== undefined);

  await terminate(before);
  await Promise.all([a.wait(1, 'reconnect signal a'), b.wait(1, 'reconnect signal b')]);
  assert.deepEqual([a.signals, b.signals], [['reconnect'], ['reconnect']]);
  const afterTerminate = await listenBackends();
  assert.equal(afterTerminate.length, 1);
  assert.notEqual(afterTerminate[0], before);
  assert.equal(hub.connections, 1);
  assert.ok(entries.some((entry) => entry.msg.startsWith('LISTEN connection lost') && entry.fields?.['code'] === '57P01'));
  assert.ok(entries.every((entry) => !JSON.stringify(entry).includes(env.db.password)), 'no password in logs');

  // Both channels were LISTENed again.
  await env.sql(`SELECT pg_notify('chan_a', ''), pg_notify('chan_b', '')`);
  await Promise.all([a.wait(2, 'notify a after reconnect'), b.wait(2, 'notify b after reconnect')]);
  assert.deepEqual([a.signals, b.signals], [['reconnect', 'notify'], ['reconnect', 'notify']]);

  // Twice in a row, to show the loop survives repeated drops.
  await terminate(afterTerminate[0] ?? 0);
  await a.wait(3, 'second reconnect');
  assert.equal(a.signals[2], 'reconnect');
  await hub.closeAll();
  assert.equal(hub.connections, 0);
});

test('the last subscriber of a channel UNLISTENs; the last of the database closes the connection', async (t) => {
  const hub = openHub(t, { logger: recordingLogger().logger, debounceMs: 20 });
  const keep = recorder();
  const gone = recorder();
  const subKeep = hub.subscribe(settings(), 'keep', keep.onSignal);
  const subGone = hub.subscribe(settings(), 'gone', gone.onSignal);
  await Promise.all([subKeep.ready, subGone.ready]);
  await subGone.close();
  await subGone.close(); // idempotent
  assert.equal(hub.connections, 1);
  await env.sql(`SELECT pg_notify('gone', ''), pg_notify('keep', '')`);
  await keep.wait(1, 'keep');
  await sleep(200);
  assert.deepEqual(gone.signals, []);

  // The channel can come back on the same connection.
  const again = recorder();
  const subAgain = hub.subscribe(settings(), 'gone', again.onSignal);
  await subAgain.ready;
  await env.sql(`SELECT pg_notify('gone', '')`);
  await again.wait(1, 'resubscribed channel');
  assert.equal((await listenBackends()).length, 1);

  await subAgain.close();
  await subKeep.close();
  assert.equal(hub.connections, 0);
  await waitFor('the LISTEN backend to go', async () => (await listenBackends()).length === 0, 5000);
  await hub.closeAll();
});

test('a subscriber that throws breaks neither the hub nor its neighbours', async (t) => {
  const { logger, entries } = recordingLogger();
  const hub = openHub(t, { logger, debounceMs: 20 });
  let thrown = 0;
  const good = recorder();
  const subBad = hub.subscribe(settings(), 'shared', () => {
    thrown += 1;
    throw new Error('subscriber bug');
  });
  const subGood = hub.subscribe(settings(), 'shared', good.onSignal);
  await Promise.all([subBad.ready, subGood.ready]);
  await env.sql(`SELECT pg_notify('shared', '1')`);
  await good.wait(1, 'first');
  await sleep(100);
  await env.sql(`SELECT pg_notify('shared', '2')`);
  await good.wait(2, 'second');
  await waitFor('the throwing subscriber to be called twice', () => Promise.resolve(thrown === 2), 2000, 20);
  assert.ok(entries.some((entry) => entry.level === 'error' && entry.msg === 'notify subscriber threw'));
  await hub.closeAll();
});

test('closing a subscription before the connection is up, bad channels and a closed hub', async (t) => {
  const hub = openHub(t, { logger: recordingLogger().logger });
  const early = hub.subscribe(settings(), 'early', () => undefined);
  await early.close();
  await early.ready; // resolved by close, never left hanging
  assert.equal(hub.connections, 0);

  for (const channel of ['', 'x'.repeat(64), 'a\0b']) {
    assert.throws(
      () => hub.subscribe(settings(), channel, () => undefined),
      (error: unknown) => error instanceof DbError && /^spec\.changeDetection\.channel: /.test(error.message),
    );
  }
  // Quotes and spaces in a channel are only a name (quoted identifier), never SQL.
  const odd = recorder();
  const subOdd = hub.subscribe(settings(), `x"; SELECT pg_sleep(10); --`, odd.onSignal);
  await subOdd.ready;
  await env.sql(`SELECT pg_notify($1, '')`, [`x"; SELECT pg_sleep(10); --`]);
  await odd.wait(1, 'odd channel');

  await hub.closeAll();
  assert.throws(() => hub.subscribe(settings(), 'late', () => undefined), (error: unknown) => error instanceof DbError && error.code === 'ROWCAST_HUB_CLOSED');
});

test('a database that is down: retried with backoff, logged without the password, closeAll still ends promptly', async (t) => {
  const { logger, entries } = recordingLogger();
  const hub = openHub(t, { logger, reconnect: { baseMs: 50, maxMs: 200 } });
  const sub = hub.subscribe(settings({ password: 'wrong-password-123' }), 'nobody', () => undefined);
  await waitFor('three failed attempts', () => Promise.resolve(entries.filter((e) => e.msg === 'LISTEN connection failed').length >= 3), 10_000, 20);
  const failure = entries.find((e) => e.msg === 'LISTEN connection failed');
  assert.equal(failure?.fields?.['code'], '28P01');
  assert.equal(failure.level, 'error', 'a wrong password is terminal, logged as an error');
  assert.ok(entries.every((entry) => !JSON.stringify(entry).includes('wrong-password-123')));
  assert.equal(hub.connections, 0);
  const started = performance.now();
  await sub.close();
  await hub.closeAll();
  assert.ok(performance.now() - started < 2000);
});

test('a LISTEN connection that hangs silently (backend frozen with SIGSTOP) is found by the heartbeat and replaced', async (t) => {
  const { logger, entries } = recordingLogger();
  const hub = openHub(t, { logger, debounceMs: 20, heartbeatMs: 200, reconnect: { baseMs: 50, maxMs: 200 } });
  const a = recorder();
  const sub = hub.subscribe(settings(), 'frozen', a.onSignal);
  await sub.ready;
  const [frozen] = await listenBackends();
  assert.ok(frozen !== undefined);
  // A frozen backend keeps its socket open and answers nothing: no error, no end, only silence.
  process.kill(frozen, 'SIGSTOP');
  // Thawed whatever happens: a stopped backend would block DROP DATABASE at the end of the file.
  t.after(() => {
    try {
      process.kill(frozen, 'SIGCONT');
    } catch {
      // Already thawed and gone.
    }
  });
  await a.wait(1, 'reconnect after the heartbeat failed');
  assert.deepEqual(a.signals, ['reconnect']);
  assert.ok(entries.some((entry) => entry.msg.startsWith('LISTEN connection heartbeat failed')));
  process.kill(frozen, 'SIGCONT');
  await env.sql(`SELECT pg_notify('frozen', '')`);
  await a.wait(2, 'notify on the new connection');
  assert.equal(a.signals[1], 'notify');
  await waitFor('the frozen backend to exit once thawed', async () => !(await listenBackends()).includes(frozen), 5000);
  await hub.closeAll();
});
