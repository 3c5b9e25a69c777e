import assert from 'node:assert/strict';
import test from 'node:test';
import { controllerHelp, parseControllerOptions } from '../../src/config/index.ts';

test('defaults, then environment, then flags; the result is frozen', () => {
  const defaults = parseControllerOptions([], {});
  assert.ok(defaults.ok);
  assert.equal(defaults.options.workers, 4);
  assert.equal(defaults.options.probeIntervalMs, 30_000);
  assert.equal(defaults.options.kubeconfig, undefined);
  assert.equal(defaults.options.allowExecAuth, false);
  assert.deepEqual([defaults.options.leaseDurationMs, defaults.options.renewDeadlineMs, defaults.options.retryPeriodMs], [15_000, 10_000, 2_000]);
  assert.ok(Object.isFrozen(defaults.options));
  const fromEnv = parseControllerOptions(['--workers', '8'], { ROWCAST_WORKERS: '2', ROWCAST_PROBE_INTERVAL: '1m', ROWCAST_ALLOW_EXEC_AUTH: 'true', KUBECONFIG: '/k' });
  assert.ok(fromEnv.ok);
  assert.equal(fromEnv.options.workers, 8, 'a flag beats the environment');
  assert.equal(fromEnv.options.probeIntervalMs, 60_000);
  assert.equal(fromEnv.options.allowExecAuth, true);
  assert.equal(fromEnv.options.kubeconfig, '/k');
});

test('bad values are refused naming the flag; --help is not an error', () => {
  const cases: [string[], RegExp][] = [
    [['--workers', '0'], /--workers/],
    [['--probe-interval', 'soon'], /--probe-interval/],
    [['--log-level', 'loud'], /--log-level/],
    [['--no-such-flag'], /no-such-flag/],
    [['--leader-election-renew-deadline', '15s'], /--leader-election-renew-deadline must be shorter than --leader-election-lease-duration/],
    [['--leader-election-lease-duration', '4s', '--leader-election-renew-deadline', '3s', '--leader-election-retry-period', '3s'], /--leader-election-retry-period must be shorter/],
  ];
  for (const [argv, message] of cases) {
    const result = parseControllerOptions(argv, {});
    assert.ok(!result.ok && !result.help, argv.join(' '));
    assert.match(result.error, message);
  }
  const help = parseControllerOptions(['--help'], {});
  assert.ok(!help.ok && help.help);
  for (const flag of ['--kubeconfig', '--allow-exec-auth', '--shutdown-grace', 'ROWCAST_WORKERS']) assert.ok(controllerHelp().includes(flag), flag);
});

test('inCluster namespaces and insecure kubeconfigs are off by default; flags and environment name them; the controller namespace comes from POD_NAMESPACE', () => {
  const defaults = parseControllerOptions(['--namespace', 'team-a'], {});
  assert.ok(defaults.ok);
  assert.deepEqual(defaults.options.allowInClusterNamespaces, []);
  assert.equal(defaults.options.allowInsecureKubeconfigs, false);
  assert.equal(defaults.options.controllerNamespace, 'team-a', 'without POD_NAMESPACE the watched namespace is the own one');
  const set = parseControllerOptions(['--allow-in-cluster-namespaces', 'team-a, team-b', '--allow-insecure-kubeconfigs'], { POD_NAMESPACE: 'rowcast-system' });
  assert.ok(set.ok);
  assert.deepEqual(set.options.allowInClusterNamespaces, ['team-a', 'team-b']);
  assert.equal(set.options.allowInsecureKubeconfigs, true);
  assert.equal(set.options.controllerNamespace, 'rowcast-system');
  const fromEnv = parseControllerOptions([], { ROWCAST_ALLOW_IN_CLUSTER_NAMESPACES: '*', ROWCAST_ALLOW_INSECURE_KUBECONFIGS: 'true' });
  assert.ok(fromEnv.ok);
  assert.deepEqual(fromEnv.options.allowInClusterNamespaces, ['*']);
  assert.equal(fromEnv.options.allowInsecureKubeconfigs, true);
  const bad = parseControllerOptions(['--allow-in-cluster-namespaces', 'Not_A_Namespace'], {});
  assert.ok(!bad.ok && !bad.help);
  assert.match(bad.error, /--allow-in-cluster-namespaces/);
  for (const flag of ['--allow-in-cluster-namespaces', '--allow-insecure-kubeconfigs']) assert.ok(controllerHelp().includes(flag), flag);
});
