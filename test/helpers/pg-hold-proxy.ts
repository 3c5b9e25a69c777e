import { createServer, connect, type Server, type Socket } from 'node:net';

/**
 * A TCP proxy of the test's own between pg and PostgreSQL (plain TCP: use
 * sslmode=disable). It reads the frontend's message framing, and from the
 * trigger message on it holds every byte from the client, so the server
 * waits for a message that never comes, while its own bytes (an answer, a
 * FATAL, its close) still reach the client.
 */
export interface PgHoldProxy {
  port: number;
  /** Resolves once the trigger message is being held. */
  readonly holding: Promise<void>;
  close(): Promise<void>;
}

/** `trigger` sees each frontend message: its type byte and its body. */
export async function startPgHoldProxy(targetPort: number, trigger: (type: string, body: Buffer) => boolean, targetHost = '127.0.0.1'): Promise<PgHoldProxy> {
  const sockets = new Set<Socket>();
  let markHolding: () => void = () => undefined;
  const holding = new Promise<void>((resolve) => {
    markHolding = resolve;
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
    let pending = Buffer.alloc(0);
    let startupDone = false;
    let held = false;
    client.on('data', (chunk: Buffer) => {
      if (held) return;
      pending = Buffer.concat([pending, chunk]);
      for (;;) {
        // The startup message has no type byte; every later one has.
        const header = startupDone ? 5 : 4;
        if (pending.length < header) return;
        const length = pending.readInt32BE(startupDone ? 1 : 0);
        const size = startupDone ? 1 + length : length;
        if (pending.length < size) return;
        const message = pending.subarray(0, size);
        const type = startupDone ? String.fromCharCode(message[0] ?? 0) : '';
        if (type !== '' && trigger(type, message.subarray(5))) {
          held = true;
          markHolding();
          return;
        }
        pending = pending.subarray(size);
        upstream.write(message);
        startupDone = true;
      }
    });
    upstream.on('data', (chunk: Buffer) => client.write(chunk));
    upstream.on('end', () => client.end());
    client.on('end', () => {
      if (!held) upstream.end();
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });
  const address = server.address();
  if (address === null || typeof address === 'string') throw new Error('pg hold proxy has no port');
  return {
    port: address.port,
    holding,
    close: async () => {
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
