import { after, afterEach, beforeEach } from 'node:test';
import { randomBytes } from 'node:crypto';
import { CoreV1Api, CustomObjectsApi, KubeConfig, KubernetesObjectApi } from '@kubernetes/client-node';
import pg from 'pg';
import { readHarnessState, type HarnessState } from './control-plane.ts';
import { adminRequest, type ClusterInfo } from './kube-apiserver.ts';
import { waitFor } from './ports.ts';

export interface TestCluster {
  info: ClusterInfo;
  kubeConfig: KubeConfig;
  core: CoreV1Api;
  custom: CustomObjectsApi;
  objects: KubernetesObjectApi;
}

/** A database of the test file's own, owned by a login role of its own. */
export interface TestDatabase {
  host: string;
  port: number;
  database: string;
  user: string;
  password: string;
  url: string;
}

export interface TestEnv {
  state: HarnessState;
  hub: TestCluster;
  members: TestCluster[];
  /** Created on the hub and on every member under the same name. */
  namespace: string;
  db: TestDatabase;
  /** Runs SQL in the test database as its owner (set-up and assertions). */
  sql<R extends pg.QueryResultRow = pg.QueryResultRow>(text: string, params?: unknown[]): Promise<pg.QueryResult<R>>;
  /** Open connections to the test database other than the env's own, and open watches on every cluster. */
  leaks(): Promise<LeakCount>;
  /** Runs at the end of the file, last registered first, before the env itself is torn down. */
  defer(cleanup: () => Promise<void>): void;
}

export interface LeakCount {
  dbConnections: number;
  watches: number;
}

function testCluster(info: ClusterInfo): TestCluster {
  const kubeConfig = new KubeConfig();
  kubeConfig.loadFromString(info.kubeconfig);
  return {
    info,
    kubeConfig,
    core: kubeConfig.makeApiClient(CoreV1Api),
    custom: kubeConfig.makeApiClient(CustomObjectsApi),
    objects: KubernetesObjectApi.makeApiClient(kubeConfig),
  };
}

/** Sum of the apiserver's own gauge of open WATCH requests. */
async function openWatches(cluster: ClusterInfo): Promise<number> {
  const metrics = await adminRequest(cluster, 'GET', '/metrics');
  if (metrics.status !== 200) throw new Error(`${cluster.name} /metrics: HTTP ${metrics.status}`);
  let total = 0;
  for (const line of metrics.body.split('\n')) {
    if (line.startsWith('apiserver_longrunning_requests{') && line.includes('verb="WATCH"')) total += Number(line.slice(line.lastIndexOf(' ') + 1));
  }
  return total;
}

function slug(name: string): string {
  return name.toLowerCase().replace(/[^a-z0-9]+/g, '-').replace(/^-|-$/g, '').slice(0, 30);
}

/**
 * Gives one test file its own namespace on every cluster and its own database,
 * and removes both when the file ends. Call once at the top of a test file.
 */
export async function openTestEnv(name: string): Promise<TestEnv> {
  const state = await readHarnessState();
  const id = `${slug(name)}-${randomBytes(3).toString('hex')}`;
  const hub = testCluster(state.hub);
  const members = state.members.map(testCluster);
  const namespace = `rc-${id}`;
  for (const cluster of [hub, ...members]) await cluster.core.createNamespace({ body: { metadata: { name: namespace } } });

  const pgAdmin = { host: state.postgres.host, port: state.postgres.port, user: state.postgres.user, password: state.postgres.password };
  const superuser = new pg.Client({ ...pgAdmin, database: 'postgres' });
  await superuser.connect();
  const database = `rc_${id.replace(/-/g, '_')}`;
  const password = randomBytes(18).toString('base64url');
  await superuser.query(`CREATE ROLE "${database}" LOGIN PASSWORD '${password}'`);
  await superuser.query(`CREATE DATABASE "${database}" OWNER "${database}"`);
  const db: TestDatabase = {
    host: state.postgres.host,
    port: state.postgres.port,
    database,
    user: database,
    password,
    url: `postgresql://${database}:${password}@${state.postgres.host}:${state.postgres.port}/${database}`,
  };
  const owner = new pg.Client({ host: db.host, port: db.port, user: db.user, password: db.password, database });
  await owner.connect();
  const ownerPid = (await owner.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]?.pid;

  const deferred: (() => Promise<void>)[] = [];
  const env: TestEnv = {
    defer: (cleanup) => deferred.push(cleanup),
    state,
    hub,
    members,
    namespace,
    db,
    sql: (text, params) => owner.query(text, params),
    leaks: async () => {
      const connections = await superuser.query<{ n: string }>(
        'SELECT count(*) AS n FROM pg_stat_activity WHERE datname = $1 AND pid <> $2',
        [database, ownerPid],
      );
      // The apiservers' own informers watch them too, and re-open their watches every few minutes: one
      // sample may fall into such a gap and read one low. The highest of a few is the count.
      let watches = 0;
      for (let sample = 0; sample < 3; sample++) {
        if (sample > 0) await new Promise((resolve) => setTimeout(resolve, 100));
        const counts = await Promise.all([state.hub, ...state.members].map(openWatches));
        watches = Math.max(watches, counts.reduce((a, b) => a + b, 0));
      }
      return { dbConnections: Number(connections.rows[0]?.n ?? 0), watches };
    },
  };

  after(async () => {
    // A failing cleanup (a leak check) still fails the file, but the env's own
    // connections close first: left open, they would keep the file's process
    // alive long after its failure, and the run would wait on it.
    try {
      for (const cleanup of deferred.reverse()) await cleanup();
    } finally {
      await owner.end();
      await superuser.query(`DROP DATABASE IF EXISTS "${database}" WITH (FORCE)`);
      await superuser.query(`DROP ROLE IF EXISTS "${database}"`);
      await superuser.end();
      // Without a controller-manager a namespace stays Terminating; the run's etcd is thrown away anyway.
      for (const cluster of [hub, ...members]) await cluster.core.deleteNamespace({ name: namespace });
    }
  });
  return env;
}

/** Waits for connections and watches to fall back to the baseline; throws naming what is still open. */
export async function expectNoLeaks(env: TestEnv, baseline: LeakCount, settleMs = 10_000): Promise<void> {
  let now = baseline;
  await waitFor(
    'pools and watches to close',
    async () => {
      now = await env.leaks();
      return now.dbConnections === 0 && now.watches <= baseline.watches;
    },
    settleMs,
    200,
  ).catch((error: unknown) => {
    throw new Error(
      `leak: ${now.dbConnections} database connection(s) still open, ${now.watches - baseline.watches} watch(es) more than before the test`,
      { cause: error },
    );
  });
}

/**
 * Fails any test of the file that leaves a database connection or a watch
 * open. Watches are counted per apiserver, not per file, which is why the test
 * runner runs files one at a time. Files whose controller runs across tests
 * check once, after stopping it, with expectNoLeaks.
 */
export function failOnLeaks(env: TestEnv, settleMs = 10_000): void {
  let baseline: LeakCount = { dbConnections: 0, watches: 0 };
  beforeEach(async () => {
    baseline = await env.leaks();
  });
  afterEach(() => expectNoLeaks(env, baseline, settleMs));
}
