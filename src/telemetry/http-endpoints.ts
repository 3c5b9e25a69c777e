import { createServer, type Server } from 'node:http';
import type { Registry } from 'prom-client';

export interface EndpointOptions {
  /** host:port or :port; port 0 picks a free one. */
  bindAddress: string;
  registry: Registry;
  /** /readyz answers 200 only while this is true (hub caches synced). */
  ready: () => boolean;
  /** Why it is not ready, told in the /readyz body. */
  notReadyReason?: () => string | undefined;
}

export interface RunningEndpoints {
  /** The port actually bound. */
  port: number;
  close(): Promise<void>;
}

/** /metrics, /healthz and /readyz on one small HTTP server. */
export async function serveEndpoints(options: EndpointOptions): Promise<RunningEndpoints> {
  const colon = options.bindAddress.lastIndexOf(':');
  const host = colon <= 0 ? undefined : options.bindAddress.slice(0, colon).replace(/^\[|\]$/g, '');
  const port = Number(options.bindAddress.slice(colon + 1));
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new Error(`bind address ${JSON.stringify(options.bindAddress)}: expected host:port or :port`);
  const server: Server = createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405).end();
      return;
    }
    if (path === '/healthz') {
      res.writeHead(200, { 'content-type': 'text/plain' }).end('ok\n');
    } else if (path === '/readyz') {
      const ready = options.ready();
      res.writeHead(ready ? 200 : 503, { 'content-type': 'text/plain' }).end(ready ? 'ok\n' : `${options.notReadyReason?.() ?? 'caches not synced'}\n`);
    } else if (path === '/metrics') {
      options.registry.metrics().then(
        (text) => res.writeHead(200, { 'content-type': options.registry.contentType }).end(text),
        () => res.writeHead(500).end(),
      );
    } else {
      res.writeHead(404).end();
    }
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, resolve);
  });
  const address = server.address();
  return {
    port: typeof address === 'object' && address !== null ? address.port : port,
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}
