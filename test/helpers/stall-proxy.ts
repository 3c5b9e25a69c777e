import { createServer, connect, type Server, type Socket } from 'node:net';

/**
 * A TCP proxy of the test's own in front of a real server. It forwards both
 * ways until `stallNextResponse()` is called; from then on, the first chunk
 * the server sends after the client's next request is passed on and every
 * later byte in either direction is held, sockets left open: a peer that
 * answered and then went silent, as a dropped route or a frozen middlebox
 * leaves it. Bytes are not parsed, so TLS passes through end to end.
 */
export interface StallProxy {
  port: number;
  stallNextResponse(): void;
  /** Resolves once the stalled response's first chunk has been passed on. */
  readonly stalled: Promise<void>;
  /** Drops the held connections (the client sees them reset) and forwards again: the peer is back. */
  release(): void;
  close(): Promise<void>;
}

export async function startStallProxy(targetPort: number, targetHost = '127.0.0.1'): Promise<StallProxy> {
  const sockets = new Set<Socket>();
  let armed = false;
  let requestSeen = false;
  let holding = false;
  let markStalled: () => void = () => undefined;
  const stalled = new Promise<void>((resolve) => {
    markStalled = resolve;
  });
  const server: Server = createServer((client) => {
    const upstream = connect({ host: targetHost, port: targetPort });
    sockets.add(client);
    sockets.add(upstream);
    const drop = (): void => {
      client.destroy();
      upstream.destroy();
    };
    client.on('error', drop);
    upstream.on('error', drop);
    client.on('close', () => sockets.delete(client));
    upstream.on('close', () => sockets.delete(upstream));
    client.on('data', (chunk: Buffer) => {
      if (holding) return;
      if (armed) requestSeen = true;
      upstream.write(chunk);
    });
    upstream.on('data', (chunk: Buffer) => {
      if (holding) return;
      client.write(chunk);
      if (armed && requestSeen) {
        holding = true;
        markStalled();
      }
    });
    client.on('end', () => {
      if (!holding) upstream.end();
    });
    upstream.on('end', () => {
      if (!holding) client.end();
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });
  const address = server.address();
  if (address === null || typeof address === 'string') throw new Error('stall proxy has no port');
  return {
    port: address.port,
    stalled,
    stallNextResponse: () => {
      armed = true;
    },
    release: () => {
      armed = false;
      requestSeen = false;
      holding = false;
      for (const socket of sockets) socket.destroy();
    },
    close: async () => {
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
