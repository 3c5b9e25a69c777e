import assert from 'node:assert/strict';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { adminRequest, startApiserver, type RunningApiserver } from '../harness/kube-apiserver.ts';
import type { TestEnv } from '../harness/test-env.ts';

export interface AuditedMember {
  apiserver: RunningApiserver;
  /** JSON lines, one per request and stage past RequestReceived. */
  auditLog: string;
}

/**
 * A member apiserver of the test file's own, on the shared etcd, with the
 * file's namespace and an audit log: what reached the member is read where it
 * was served. `writesOnly`: only create, update, patch and delete in that
 * namespace are logged; otherwise every request is.
 */
export async function startAuditedMember(env: TestEnv, name: string, writesOnly: boolean): Promise<AuditedMember> {
  const dir = join(env.state.runDir, `audit-${env.namespace}`);
  await mkdir(dir, { recursive: true });
  const policy = join(dir, 'policy.yaml');
  const auditLog = join(dir, 'audit.log');
  const rules = writesOnly
    ? ['  - level: Metadata', '    verbs: ["create", "update", "patch", "delete", "deletecollection"]', `    namespaces: ["${env.namespace}"]`, '  - level: None']
    : ['  - level: Metadata'];
  await writeFile(policy, ['apiVersion: audit.k8s.io/v1', 'kind: Policy', 'omitStages: ["RequestReceived"]', 'rules:', ...rules, ''].join('\n'));
  const apiserver = await startApiserver(env.state.binaries.kubeApiserver, name, env.state.runDir, env.state.etcdUrl, [
    `--audit-policy-file=${policy}`,
    `--audit-log-path=${auditLog}`,
    '--audit-log-format=json',
  ]);
  assert.equal((await adminRequest(apiserver.info, 'POST', '/api/v1/namespaces', { metadata: { name: env.namespace } })).status, 201);
  return { apiserver, auditLog };
}
