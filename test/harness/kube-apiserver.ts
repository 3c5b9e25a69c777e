import { request } from 'node:https';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import yaml from 'js-yaml';
import { createClusterPki, type ClusterPki } from './pki.ts';
import { ManagedProcess } from './processes.ts';
import { freePort, waitFor } from './ports.ts';

/** What a test needs to reach one cluster; plain data, so it crosses processes in the state file. */
export interface ClusterInfo {
  name: string;
  server: string;
  kubeconfigPath: string;
  kubeconfig: string;
  caCert: string;
  adminCert: string;
  adminKey: string;
  pid: number;
  logFile: string;
}

export interface ClusterCredentials {
  server: string;
  caCert: string;
  adminCert: string;
  adminKey: string;
}

/** One request as the cluster admin, JSON in and text out; for the harness's own plumbing. */
export function adminRequest(
  cluster: ClusterCredentials,
  method: string,
  path: string,
  body?: unknown,
  timeoutMs = 5000,
  contentType = method === 'PATCH' ? 'application/merge-patch+json' : 'application/json',
): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const payload = body === undefined ? undefined : JSON.stringify(body);
    const req = request(
      new URL(path, cluster.server),
      {
        method,
        ca: cluster.caCert,
        cert: cluster.adminCert,
        key: cluster.adminKey,
        timeout: timeoutMs,
        headers: payload === undefined ? {} : { 'content-type': contentType },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (chunk: Buffer) => chunks.push(chunk));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }));
        res.on('error', reject);
      },
    );
    req.on('timeout', () => req.destroy(new Error(`${method} ${path} timed out`)));
    req.on('error', reject);
    req.end(payload);
  });
}

/** A kubeconfig with everything inline: the only form Rowcast accepts by default. */
export function kubeconfigYaml(name: string, cluster: ClusterCredentials): string {
  const b64 = (text: string): string => Buffer.from(text).toString('base64');
  return yaml.dump({
    apiVersion: 'v1',
    kind: 'Config',
    clusters: [{ name, cluster: { server: cluster.server, 'certificate-authority-data': b64(cluster.caCert) } }],
    users: [{ name: `${name}-admin`, user: { 'client-certificate-data': b64(cluster.adminCert), 'client-key-data': b64(cluster.adminKey) } }],
    contexts: [{ name, context: { cluster: name, user: `${name}-admin` } }],
    'current-context': name,
  });
}

export interface RunningApiserver {
  info: ClusterInfo;
  process: ManagedProcess;
}

/** Flags after controller-runtime's envtest: own PKI, client-cert admin, RBAC, loopback only. */
function apiserverArgs(name: string, dir: string, port: number, etcdUrl: string): string[] {
  return [
    `--etcd-servers=${etcdUrl}`,
    `--etcd-prefix=/clusters/${name}`,
    '--bind-address=127.0.0.1',
    '--advertise-address=127.0.0.1',
    `--secure-port=${port}`,
    `--cert-dir=${dir}`,
    `--tls-cert-file=${join(dir, 'serving.crt')}`,
    `--tls-private-key-file=${join(dir, 'serving.key')}`,
    `--client-ca-file=${join(dir, 'ca.crt')}`,
    '--authorization-mode=RBAC',
    '--disable-admission-plugins=ServiceAccount',
    `--service-account-issuer=https://127.0.0.1:${port}`,
    `--service-account-key-file=${join(dir, 'sa.pub')}`,
    `--service-account-signing-key-file=${join(dir, 'sa.key')}`,
    '--service-cluster-ip-range=10.0.0.0/24',
    '--allow-privileged=true',
    // Endpoints may not point at loopback; no controller-manager runs to need them.
    '--endpoint-reconciler-type=none',
    '--v=0',
  ];
}

/** `extraArgs`: flags of the caller's own (an audit log, say), after the harness's. */
export async function startApiserver(binary: string, name: string, runDir: string, etcdUrl: string, extraArgs: readonly string[] = []): Promise<RunningApiserver> {
  const dir = join(runDir, name);
  await mkdir(dir, { recursive: true });
  const pki: ClusterPki = await createClusterPki(dir, name);
  const port = await freePort();
  const server = `https://127.0.0.1:${port}`;
  const logFile = join(dir, 'kube-apiserver.log');
  const proc = new ManagedProcess({ name: `${name} kube-apiserver`, command: binary, args: [...apiserverArgs(name, dir, port, etcdUrl), ...extraArgs], logFile });
  proc.start();
  const credentials: ClusterCredentials = { server, caCert: pki.caCert, adminCert: pki.adminCert, adminKey: pki.adminKey };
  const kubeconfig = kubeconfigYaml(name, credentials);
  const kubeconfigPath = join(dir, 'kubeconfig');
  await writeFile(kubeconfigPath, kubeconfig, { mode: 0o600 });
  await waitFor(
    `${name} kube-apiserver /readyz (log: ${logFile})`,
    async () => (await adminRequest(credentials, 'GET', '/readyz')).status === 200,
    120_000,
    200,
    () => (proc.running ? undefined : `it exited; see ${logFile}`),
  );
  const pid = proc.pid;
  if (pid === undefined) throw new Error(`${name} kube-apiserver has no pid`);
  return { info: { name, ...credentials, kubeconfigPath, kubeconfig, pid, logFile }, process: proc };
}
