import { once } from 'node:events';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect, createServer, type TLSSocket } from 'node:tls';
import yaml from 'js-yaml';
import type { ClusterInfo } from '../harness/kube-apiserver.ts';
import { createClusterPki } from '../harness/pki.ts';

export interface Http1Proxy {
  /** A kubeconfig that reaches the member through the proxy, anonymous to the proxy. */
  kubeconfig: string;
  close(): Promise<void>;
}

/**
 * A member as it is reached through many load balancers and auth proxies: TLS
 * ends at the proxy, which speaks HTTP/1.1 only (no h2 in ALPN, so one request
 * per connection at a time), and calls the apiserver as its admin. Bytes are
 * piped, not parsed: requests and responses, watches included, pass as sent.
 */
export async function startHttp1Proxy(member: ClusterInfo): Promise<Http1Proxy> {
  const dir = await mkdtemp(join(tmpdir(), 'rowcast-http1-proxy-'));
  const pki = await createClusterPki(dir, 'http1-proxy');
  const upstreamPort = Number(new URL(member.server).port);
  const sockets = new Set<TLSSocket>();
  const server = createServer({ cert: pki.servingCert, key: pki.servingKey, ALPNProtocols: ['http/1.1'] }, (client) => {
    const upstream = connect({ host: '127.0.0.1', port: upstreamPort, ca: member.caCert, cert: member.adminCert, key: member.adminKey, ALPNProtocols: ['http/1.1'] });
    for (const socket of [client, upstream]) {
      sockets.add(socket);
      socket.on('close', () => sockets.delete(socket));
      socket.on('error', () => {
        client.destroy();
        upstream.destroy();
      });
    }
    client.pipe(upstream);
    upstream.pipe(client);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const port = (server.address() as { port: number }).port;
  const kubeconfig = yaml.dump({
    apiVersion: 'v1',
    kind: 'Config',
    clusters: [{ name: 'proxied', cluster: { server: `https://127.0.0.1:${port}`, 'certificate-authority-data': Buffer.from(pki.caCert).toString('base64') } }],
    users: [{ name: 'anonymous', user: {} }],
    contexts: [{ name: 'proxied', context: { cluster: 'proxied', user: 'anonymous' } }],
    'current-context': 'proxied',
  });
  return {
    kubeconfig,
    close: async () => {
      for (const socket of sockets) socket.destroy();
      server.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
}
