import { connect } from 'node:net';
import type pg from 'pg';

/** CancelRequest code from the protocol (1234 << 16 | 5678). */
const cancelRequestCode = 80_877_102;

/**
 * Asks the server to cancel whatever the client's backend is running, the way
 * libpq's PQcancel does: a CancelRequest on a fresh socket, naming the backend
 * by process id and secret key. pg has no public cancel, and closing our own
 * socket alone leaves the backend working until it next writes or its
 * statement_timeout fires. Best effort: resolves whatever happens, within
 * timeoutMs. Plain TCP even for TLS pools: the server accepts a cancel
 * request without TLS and it carries no secret besides the one-use key.
 */
export function cancelBackend(client: pg.PoolClient, timeoutMs: number): Promise<void> {
  // pg fills these from BackendKeyData; they are not in its type declarations.
  const { processID, secretKey } = client as unknown as { processID?: unknown; secretKey?: unknown };
  if (typeof processID !== 'number' || typeof secretKey !== 'number') return Promise.resolve();
  const packet = Buffer.alloc(16);
  packet.writeInt32BE(16, 0);
  packet.writeInt32BE(cancelRequestCode, 4);
  packet.writeInt32BE(processID, 8);
  packet.writeInt32BE(secretKey, 12);
  return new Promise((resolve) => {
    const socket = client.host.startsWith('/')
      ? connect({ path: `${client.host}/.s.PGSQL.${client.port}` })
      : connect({ host: client.host, port: client.port });
    const done = (): void => {
      clearTimeout(timer);
      socket.destroy();
      resolve();
    };
    const timer = setTimeout(done, timeoutMs);
    socket.once('connect', () => socket.end(packet));
    // The server closes the socket once it has read the request.
    socket.once('close', done);
    socket.once('error', done);
  });
}
