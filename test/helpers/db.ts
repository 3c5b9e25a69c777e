import assert from 'node:assert/strict';
import { withConnectionDefaults, type ConnectionSettings, type ConnectionSettingsInput, type DbLogger } from '../../src/db/index.ts';
import type { TestDatabase } from '../harness/test-env.ts';

export interface LogEntry {
  level: string;
  msg: string;
  fields: Record<string, unknown> | undefined;
}

/** A DbLogger that keeps what it is told, so a test can look for a message (or a secret). */
export function recordingLogger(): { logger: DbLogger; entries: LogEntry[] } {
  const entries: LogEntry[] = [];
  const at =
    (level: string) =>
    (msg: string, fields?: Record<string, unknown>): void => {
      entries.push({ level, msg, fields });
    };
  return { entries, logger: { error: at('error'), warn: at('warn'), info: at('info'), debug: at('debug') } };
}

/** Connection settings for the test file's own database, with Rowcast's defaults. */
export function dbSettings(db: TestDatabase, overrides: Partial<ConnectionSettingsInput> = {}): ConnectionSettings {
  return withConnectionDefaults({ host: db.host, port: db.port, database: db.database, user: db.user, password: db.password, ...overrides });
}

/** A DbLogger that says nothing. */
export const quietLogger: DbLogger = { error: () => undefined, warn: () => undefined, info: () => undefined, debug: () => undefined };

/** The error a promise rejects with; fails the test if it resolves. */
export async function rejection(promise: Promise<unknown>): Promise<unknown> {
  try {
    await promise;
  } catch (error) {
    return error;
  }
  assert.fail('expected the promise to reject');
}
