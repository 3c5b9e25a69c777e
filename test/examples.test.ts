import assert from 'node:assert/strict';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import yaml from 'js-yaml';
import { API_VERSION, CLUSTER_TARGET, DATABASE_QUERY_RESOURCE } from '../src/api/index.ts';
import { openTestEnv } from './harness/test-env.ts';
import { adminRequest } from './harness/kube-apiserver.ts';
import { applyHub, condition, dqrPath, dqrStatus, eventually, getHub, putDatabaseSecret, startController } from './helpers/hub-fixture.ts';

// What a new user does with the repository: load examples/sql/*.sql, apply clusters/*.yaml and
// examples/*.yaml as they are (only the kubeconfig placeholder filled in), and expect every DQR Ready.

const env = await openTestEnv('examples');
const repo = join(import.meta.dirname, '..');

interface Doc {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string };
  stringData?: Record<string, string>;
}

async function docs(dir: string, ext: string): Promise<{ file: string; text: string }[]> {
  const files = (await readdir(join(repo, dir))).filter((f) => f.endsWith(ext)).sort();
  return Promise.all(files.map(async (f) => ({ file: `${dir}/${f}`, text: await readFile(join(repo, dir, f), 'utf8') })));
}

async function applyDelete(path: string): Promise<void> {
  const response = await adminRequest(env.state.hub, 'DELETE', path);
  assert.ok(response.status < 300 || response.status === 404, `DELETE ${path}: ${String(response.status)} ${response.body}`);
}

function hubPath(doc: Doc): string {
  const base = `/apis/${API_VERSION}/namespaces/${env.namespace}`;
  if (doc.apiVersion === 'v1' && doc.kind === 'Secret') return `/api/v1/namespaces/${env.namespace}/secrets`;
  if (doc.apiVersion === API_VERSION && doc.kind === CLUSTER_TARGET.kind) return `${base}/${CLUSTER_TARGET.plural}`;
  if (doc.apiVersion === API_VERSION && doc.kind === DATABASE_QUERY_RESOURCE.kind) return `${base}/${DATABASE_QUERY_RESOURCE.plural}`;
  throw new Error(`${doc.kind} ${doc.metadata.name}: no path for ${doc.apiVersion}`);
}

test('every examples/sql/*.sql loads into a fresh database, and every clusters/*.yaml and examples/*.yaml applied as written becomes Ready', async () => {
  const member = env.members[0];
  assert.ok(member !== undefined);
  const sql = await docs('examples/sql', '.sql');
  assert.ok(sql.length >= 3);
  for (const { file, text } of sql) {
    await env.sql(text).catch((error: unknown) => {
      throw new Error(`${file}: ${String(error)}`);
    });
  }
  await putDatabaseSecret(env, 'app-db');

  // The namespaces the examples write to, on the member standing in for east-1 and on the hub (clusters/hub.yaml).
  const namespaces = ['profiles', 'tenants', 'apps'];
  for (const cluster of [env.hub, member]) {
    for (const name of namespaces) await cluster.core.createNamespace({ body: { metadata: { name } } });
  }
  env.defer(async () => {
    for (const cluster of [env.hub, member]) {
      for (const name of namespaces) await cluster.core.deleteNamespace({ name });
    }
  });

  const applied: Doc[] = [];
  for (const { file, text } of [...(await docs('clusters', '.yaml')), ...(await docs('examples', '.yaml'))]) {
    for (const doc of (yaml.loadAll(text) as (Doc | null)[]).filter((d): d is Doc => d !== null)) {
      assert.equal(doc.metadata.namespace, undefined, `${file}: ${doc.kind} ${doc.metadata.name} leaves the namespace to kubectl -n`);
      if (doc.kind === 'Secret' && doc.stringData?.['kubeconfig'] !== undefined) {
        assert.match(doc.stringData['kubeconfig'], /REPLACE-WITH/, `${file}: the kubeconfig is a placeholder`);
        doc.stringData['kubeconfig'] = member.info.kubeconfig;
      }
      await applyHub(env, hubPath(doc), { ...doc, metadata: { ...doc.metadata, namespace: env.namespace } }).catch((error: unknown) => {
        throw new Error(`${file}: ${doc.kind} ${doc.metadata.name}: ${String(error)}`);
      });
      applied.push(doc);
    }
  }
  const dqrs = applied.filter((d) => d.kind === DATABASE_QUERY_RESOURCE.kind).map((d) => d.metadata.name);
  assert.deepEqual(dqrs.sort(), ['app-rollouts', 'tenant-deployments', 'user-configmaps']);

  const controller = await startController(env);
  try {
    for (const name of dqrs) {
      await eventually(
        `${name} Ready`,
        async () => (condition(await dqrStatus(env, name), 'Ready')?.status === 'True' ? true : undefined),
        60_000,
      ).catch(async (error: unknown) => {
        throw new Error(`${name}: ${String(error)}\nstatus: ${JSON.stringify(await dqrStatus(env, name), null, 2)}`);
      });
    }
    for (const name of dqrs) await applyDelete(`${hubPath({ apiVersion: API_VERSION, kind: DATABASE_QUERY_RESOURCE.kind, metadata: { name } })}/${name}`);
    await eventually('the DQRs finalized', async () => {
      const left = await Promise.all(dqrs.map((name) => getHub(env, dqrPath(env, name))));
      return left.every((d) => d === undefined) ? true : undefined;
    });
  } finally {
    await controller.stop();
  }
});
