export { SecretScrubber } from './secret-scrubber.ts';
export { createLogger, isLogLevel, type Logger, type LoggerOptions, type LogFields, type LogLevel } from './logger.ts';
