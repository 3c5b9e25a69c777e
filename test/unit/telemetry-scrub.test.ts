import assert from 'node:assert/strict';
import test from 'node:test';
import { createLogger, SecretScrubber } from '../../src/telemetry/index.ts';

test('a registered secret is removed in plain, base64 and URL-encoded forms', () => {
  const scrubber = new SecretScrubber();
  const secret = 'hunter2/pa:ss@word';
  scrubber.register(secret, 'secret:ns/db');
  const leaks = [
    `password authentication failed: ${secret}`,
    `basic ${Buffer.from(secret).toString('base64')}`,
    `postgresql://u:${encodeURIComponent(secret)}@db/x`,
    `token=${Buffer.from(secret).toString('base64url')}`,
  ];
  for (const leak of leaks) {
    const scrubbed = scrubber.scrub(leak);
    assert.ok(!scrubbed.includes(secret), scrubbed);
    assert.ok(scrubbed.includes('[REDACTED]'), scrubbed);
  }
});

test('a secret registered base64-encoded (as Secrets hold it) is removed decoded too', () => {
  const scrubber = new SecretScrubber();
  scrubber.register(Buffer.from('s3cr3t-value').toString('base64'), 'secret:ns/db');
  assert.equal(scrubber.scrub('got s3cr3t-value back'), 'got [REDACTED] back');
});

test('values of secret-named fields are redacted at any depth; others are kept', () => {
  const scrubber = new SecretScrubber();
  const scrubbed = scrubber.scrubValue({
    dqr: 'ns/a',
    connection: { host: 'db', password: 'x1', nested: [{ 'client-key-data': 'abc' }] },
    kubeconfig: 'apiVersion: v1',
    token: '',
  });
  assert.deepEqual(scrubbed, {
    dqr: 'ns/a',
    connection: { host: 'db', password: '[REDACTED]', nested: [{ 'client-key-data': '[REDACTED]' }] },
    kubeconfig: '[REDACTED]',
    token: '',
  });
});

test('short values are not registered, so ordinary words survive', () => {
  const scrubber = new SecretScrubber();
  scrubber.register('abc', 'secret:ns/db');
  assert.equal(scrubber.scrub('abc def'), 'abc def');
});

test('the logger writes one JSON line per call, with child fields, scrubbed, above its level', () => {
  const lines: string[] = [];
  const scrubber = new SecretScrubber();
  scrubber.register('topsecretpw', 'secret:ns/db');
  const logger = createLogger({ level: 'info', scrubber, write: (line) => lines.push(line) }).child({ dqr: 'ns/users' });
  logger.debug('hidden');
  logger.info('query failed', { error: new Error('auth failed for topsecretpw'), rows: 3n });
  assert.equal(lines.length, 1);
  const record = JSON.parse(lines[0] ?? '') as Record<string, unknown>;
  assert.equal(record['msg'], 'query failed');
  assert.equal(record['level'], 'info');
  assert.equal(record['dqr'], 'ns/users');
  assert.equal(record['rows'], '3');
  assert.deepEqual(record['error'], { name: 'Error', message: 'auth failed for [REDACTED]' });
});

test('values too long for one regular expression are still removed, and scrubbing never throws', () => {
  const scrubber = new SecretScrubber();
  const long = `${'['.repeat(200_000)}${']'.repeat(200_000)}`;
  scrubber.register(long, 'secret:ns/db');
  scrubber.register('s3cr3t-value', 'secret:ns/db');
  assert.equal(scrubber.scrub(`a ${long} b s3cr3t-value c`), 'a [REDACTED] b [REDACTED] c');
  assert.equal(scrubber.scrub(`url ${encodeURIComponent(long)}`), 'url [REDACTED]');
});

test("a Secret's values are forgotten when it goes or its data is replaced; a value another Secret registered stays scrubbed", () => {
  const scrubber = new SecretScrubber();
  scrubber.register('old-password', 'secret:team-a/db');
  scrubber.register('shared-password', 'secret:team-a/db');
  scrubber.register('shared-password', 'secret:team-b/db');
  scrubber.register('kept-password', 'secret:team-a/db');

  scrubber.forget('secret:team-a/db', ['user: app\npassword: kept-password\n']);
  assert.equal(scrubber.scrub('old-password kept-password shared-password'), 'old-password [REDACTED] [REDACTED]');
  assert.equal(scrubber.scrub(Buffer.from('old-password').toString('base64')), Buffer.from('old-password').toString('base64'));

  scrubber.forget('secret:team-a/db');
  assert.equal(scrubber.scrub('kept-password shared-password'), 'kept-password [REDACTED]');

  scrubber.forget('secret:team-b/db');
  assert.equal(scrubber.scrub('shared-password'), 'shared-password');
});
