import assert from 'node:assert/strict';
import test from 'node:test';
import { ApiextensionsV1Api } from '@kubernetes/client-node';
import { API_VERSION, CLUSTER_TARGET, DATABASE_QUERY_RESOURCE, GROUP, VERSION, parseClusterTarget, parseDatabaseQueryResource } from '../src/api/index.ts';
import { apiCases, type ApiCase } from './api-cases.ts';
import { adminRequest } from './harness/kube-apiserver.ts';
import { failOnLeaks, openTestEnv } from './harness/test-env.ts';

const env = await openTestEnv('crds');
failOnLeaks(env);

const plural = { DatabaseQueryResource: 'databasequeryresources', ClusterTarget: 'clustertargets' } as const;

interface Verdict {
  accepted: boolean;
  fields: string[];
  message: string;
}

async function apiserverVerdict(c: ApiCase): Promise<Verdict> {
  try {
    await env.hub.custom.createNamespacedCustomObject({ group: GROUP, version: VERSION, namespace: env.namespace, plural: plural[c.kind], body: c.manifest });
    return { accepted: true, fields: [], message: '' };
  } catch (error) {
    const { code, body } = error as { code?: number; body?: unknown };
    assert.equal(code, 422, `${c.name}: expected 422 Invalid, got ${String(code)}: ${String(body)}`);
    const status = JSON.parse(String(body)) as { message?: string; details?: { causes?: { field?: string }[] } };
    return { accepted: false, fields: (status.details?.causes ?? []).map((cause) => cause.field ?? ''), message: status.message ?? '' };
  }
}

function parserVerdict(c: ApiCase): Verdict {
  const result = c.kind === 'DatabaseQueryResource' ? parseDatabaseQueryResource(c.manifest) : parseClusterTarget(c.manifest);
  return result.ok ? { accepted: true, fields: [], message: '' } : { accepted: false, fields: result.errors.map((e) => e.path), message: '' };
}

test('the hub serves both kinds, namespaced, with short names, categories and a status subresource', async () => {
  const resources = await adminRequest(env.state.hub, 'GET', `/apis/${API_VERSION}`);
  assert.equal(resources.status, 200);
  const list = JSON.parse(resources.body) as { resources: { name: string; namespaced: boolean; shortNames?: string[]; categories?: string[] }[] };
  const find = (name: string) => list.resources.find((r) => r.name === name);
  assert.deepEqual(find('databasequeryresources')?.shortNames, ['dqr']);
  assert.deepEqual(find('clustertargets')?.shortNames, ['ct']);
  assert.equal(find('databasequeryresources')?.namespaced, true);
  assert.equal(find('clustertargets')?.namespaced, true);
  assert.ok(find('databasequeryresources/status'), 'DQR status subresource');
  assert.ok(find('clustertargets/status'), 'ClusterTarget status subresource');
  assert.ok(find('databasequeryresources')?.categories?.includes('rowcast'));
});

test('printer columns show what a person wants in kubectl get', async () => {
  const crds = env.hub.kubeConfig.makeApiClient(ApiextensionsV1Api);
  const columns = async (kind: string) => {
    const crd = await crds.readCustomResourceDefinition({ name: `${kind}.${GROUP}` });
    return (crd.spec.versions[0]?.additionalPrinterColumns ?? []).map((c) => c.name);
  };
  const dqr = await columns('databasequeryresources');
  const ct = await columns('clustertargets');
  for (const name of ['Ready', 'Rows', 'Clusters', 'Age']) assert.ok(dqr.includes(name), `DQR column ${name} in ${dqr.join(',')}`);
  for (const name of ['Ready', 'Reachable', 'Version', 'Age']) assert.ok(ct.includes(name), `ClusterTarget column ${name} in ${ct.join(',')}`);
});

test('the apiserver and src/api give the same verdict on every case of the shared table', async () => {
  assert.ok(apiCases.length >= 20, 'the table has its cases');
  assert.ok(apiCases.some((c) => c.kind === DATABASE_QUERY_RESOURCE.kind && c.valid));
  assert.ok(apiCases.some((c) => c.kind === CLUSTER_TARGET.kind && !c.valid));
  for (const c of apiCases) {
    const server = await apiserverVerdict(c);
    const parser = parserVerdict(c);
    assert.equal(server.accepted, c.valid, `${c.name}: apiserver ${server.accepted ? 'accepted' : `rejected (${server.message})`}`);
    assert.equal(parser.accepted, c.valid, `${c.name}: parser ${parser.accepted ? 'accepted' : `rejected ${parser.fields.join(', ')}`}`);
    if (!c.valid) {
      const field = c.field ?? '';
      assert.ok(field !== '', `${c.name}: an invalid case names its field`);
      assert.ok(server.message.includes(field), `${c.name}: apiserver message names ${field}: ${server.message}`);
      assert.ok(parser.fields.some((f) => f === field || f.startsWith(`${field}.`) || f.startsWith(`${field}[`)), `${c.name}: parser names ${field}: ${parser.fields.join(', ')}`);
    }
  }
});
