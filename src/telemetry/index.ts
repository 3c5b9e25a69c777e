export { SecretScrubber } from './secret-scrubber.ts';
export { createLogger, isLogLevel, type Logger, type LoggerOptions, type LogFields, type LogLevel } from './logger.ts';
export { APPLY_RESULTS, Metrics, RECONCILE_RESULTS, SYNC_TRIGGERS, type ApplyResult, type StatusWatchCount, type SyncTrigger } from './metrics.ts';
export { serveEndpoints, type EndpointOptions, type RunningEndpoints } from './http-endpoints.ts';
export { bindToCurrentContext, expectingNotFound, inBatchSpan, inRootSpan, inSpan, markMoment, startTracing, tracingWanted, type TraceLink, type Tracing, type TracingOptions } from './tracing.ts';
