import type pg from 'pg';
import { DbConnectionError } from './errors.ts';
import { stripLeadingComments } from './split-statements.ts';

/**
 * What every statement Rowcast runs on a pooled connection goes through: a
 * bound on each round trip (ConnectionWatch) and a check that the session
 * goes back to the pool as it came (leavesSessionState). The DQR's query and
 * its status write-back share both, since they share the pool.
 */

/** Bound on the clean-up statements of a failed statement; past it the connection is simply destroyed. */
export const cleanupTimeoutMs = 5000;

/** Statements whose effects end with the transaction (or that change nothing). */
const transactionScoped = /^(set\s+local\s|set\s+transaction\s|set\s+constraints\s|show\s)/i;
/** Plain queries and DML: they leave no session state of their own… */
const plainStatement = /^(select|insert|update|delete|merge|with|values|table)\b/i;
/** …unless they call what changes the session from inside a query. */
const sessionChangingCall = /\b(set_config|pg_advisory_lock|pg_advisory_lock_shared|pg_try_advisory_lock|pg_try_advisory_lock_shared|dblink_connect|dblink_connect_u)\s*\(/i;

/**
 * Whether a statement may leave state on its session beyond its transaction
 * (a plain SET, SET ROLE, set_config(…, false), a session advisory lock,
 * PREPARE, LISTEN…). After one, the connection is closed instead of going
 * back to a pool that other queries, and other DQRs' write-backs, share.
 */
export function leavesSessionState(statement: string): boolean {
  const text = stripLeadingComments(statement);
  if (transactionScoped.test(text)) return false;
  return !plainStatement.test(text) || sessionChangingCall.test(text);
}

/**
 * How long one round trip may wait for the server's answer. The server ends
 * its own statement at statement_timeout; past that plus a grace, an answer
 * is not coming (a silent network path) and the read fails. With no
 * statement_timeout only the connection's own end or error, and TCP
 * keepalive behind it, bound the wait.
 */
export function replyBoundMs(pool: pg.Pool): number | undefined {
  const timeout = (pool.options as { statement_timeout?: unknown }).statement_timeout;
  return typeof timeout === 'number' && timeout > 0 ? timeout + cleanupTimeoutMs : undefined;
}

/**
 * Races each round trip of a checked-out connection against the connection's death and a bound.
 * pg-cursor misses a connection that ends in the read's last round trip
 * (after CommandComplete, before ReadyForQuery): its callback is never called,
 * and the read would wait forever with its DQR's key.
 */
export class ConnectionWatch {
  /** Set on the client's first 'error' or 'end'; the connection is not reused after it. */
  failure: Error | undefined;
  private readonly client: pg.PoolClient;
  private readonly boundMs: number | undefined;
  private readonly waiting = new Set<(error: Error) => void>();
  // A connection that dies while checked out emits 'error' on the client; without a listener that crashes Node.
  private readonly onError = (error: Error): void => {
    this.fail(new DbConnectionError(`the database connection failed during ${this.during}`, { cause: error }));
  };
  private readonly onEnd = (): void => {
    this.fail(new DbConnectionError(`the database connection closed during ${this.during}`));
  };
  private readonly during: string;

  /** `during`: what the connection is checked out for, as error messages name it ("the read"). */
  constructor(client: pg.PoolClient, boundMs: number | undefined, during: string) {
    this.client = client;
    this.boundMs = boundMs;
    this.during = during;
    client.on('error', this.onError);
    client.on('end', this.onEnd);
  }

  /** Settles with `promise`, or rejects once the connection fails or the server has not answered `what` within the bound. */
  reply<T>(promise: Promise<T>, what: string): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      let timer: NodeJS.Timeout | undefined;
      const settle = (): void => {
        clearTimeout(timer);
        this.waiting.delete(fail);
      };
      const fail = (error: Error): void => {
        settle();
        reject(error);
      };
      promise.then(
        (value) => {
          settle();
          resolve(value);
        },
        (error: unknown) => {
          settle();
          reject(error instanceof Error ? error : new Error(String(error)));
        },
      );
      if (this.failure !== undefined) {
        fail(this.failure);
        return;
      }
      this.waiting.add(fail);
      if (this.boundMs !== undefined) {
        const boundMs = this.boundMs;
        timer = setTimeout(() => {
          // A connection that went silent is not asked for a ROLLBACK either: it is destroyed.
          this.fail(new DbConnectionError(`the database did not answer ${what} within ${boundMs} ms (statement timeout plus ${cleanupTimeoutMs} ms)`));
        }, boundMs);
      }
    });
  }

  dispose(): void {
    // pg-pool has its own listener for idle clients; ours would otherwise pile up across checkouts.
    this.client.removeListener('error', this.onError);
    this.client.removeListener('end', this.onEnd);
  }

  private fail(error: Error): void {
    this.failure ??= error;
    for (const waiter of [...this.waiting]) waiter(this.failure);
  }
}

