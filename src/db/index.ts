// The db module's only public surface (GUIDE.md: one index.ts per module).
export {
  connectionDefaults,
  sslModes,
  withConnectionDefaults,
  type ConnectionSettings,
  type ConnectionSettingsInput,
  type PoolSettings,
  type SslMode,
} from './connection-settings.ts';
export { classifyDbError, DbError, type ClassifyOptions, type DbErrorClassification } from './errors.ts';
export { PoolRegistry, type DbLogger, type PoolLease, type PoolRegistryOptions } from './pool-registry.ts';
export { readRows, type BatchHandler, type QueryOptions, type QueryResultSummary, type Row } from './read-rows.ts';
export { splitStatements } from './split-statements.ts';
export { rowcastTypes } from './type-parsers.ts';
