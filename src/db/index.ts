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
export { classifyDbError, DbConnectionError, DbError, type ClassifyOptions, type DbErrorClassification, type DbReachability } from './errors.ts';
export { PoolRegistry, type DbLogger, type PoolLease, type PoolRegistryOptions } from './pool-registry.ts';
export { readRows, type BatchHandler, type QueryOptions, type QueryResultSummary, type Row } from './read-rows.ts';
export { leavesSessionState } from './session-guard.ts';
export { splitStatements } from './split-statements.ts';
export { rowcastTypes } from './type-parsers.ts';
export { maxTimestamp, readMaxTimestamp, type MaxTimestamp } from './change-detection.ts';
export { parseQualifiedName, quoteIdentifier, type QualifiedName } from './identifiers.ts';
export { NotifyHub, type NotifyHubOptions, type NotifySignal, type NotifySubscription } from './notify-hub.ts';
export {
  bindParams,
  compileStatusTemplate,
  rowColumnsOf,
  type BindContext,
  type CompiledStatement,
  type StatementCompileError,
  type StatementCompileResult,
} from './status-template.ts';
export { WriteBackError, WriteBackQueue, type WriteBackQueueOptions, type WriteBackResult } from './write-back-queue.ts';
export {
  ensureLedger,
  ledgerChunkSize,
  ledgerFootprint,
  updateLedgerStatus,
  writeLedger,
  type LedgerChange,
  type LedgerEntry,
  type LedgerKey,
} from './ledger.ts';
