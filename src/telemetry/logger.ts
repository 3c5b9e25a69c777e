import type { SecretScrubber } from './secret-scrubber.ts';

export type LogLevel = 'debug' | 'info' | 'warn' | 'error';
export type LogFields = Record<string, unknown>;

/** A constant message plus key/values; scope (dqr, cluster, reconcileID) lives in child loggers. */
export interface Logger {
  debug(message: string, fields?: LogFields): void;
  info(message: string, fields?: LogFields): void;
  warn(message: string, fields?: LogFields): void;
  error(message: string, fields?: LogFields): void;
  child(fields: LogFields): Logger;
}

const severity: Record<LogLevel, number> = { debug: 0, info: 1, warn: 2, error: 3 };

export function isLogLevel(value: string): value is LogLevel {
  return Object.hasOwn(severity, value);
}

export interface LoggerOptions {
  level: LogLevel;
  scrubber: SecretScrubber;
  /** Receives one JSON line without its newline; stdout by default. */
  write?: (line: string) => void;
}

/** Structured JSON lines, scrubbed of registered secrets and secret-named fields. */
export function createLogger(options: LoggerOptions, bound: LogFields = {}): Logger {
  const write = options.write ?? ((line: string) => process.stdout.write(`${line}\n`));
  const threshold = severity[options.level];
  const emit = (level: LogLevel, message: string, fields: LogFields | undefined): void => {
    if (severity[level] < threshold) return;
    const record = options.scrubber.scrubValue({ ...bound, ...fields }) as LogFields;
    write(
      JSON.stringify({ ts: new Date().toISOString(), level, msg: options.scrubber.scrub(message), ...record }, (_key, value: unknown) =>
        typeof value === 'bigint' ? value.toString() : value,
      ),
    );
  };
  return {
    debug: (message, fields) => emit('debug', message, fields),
    info: (message, fields) => emit('info', message, fields),
    warn: (message, fields) => emit('warn', message, fields),
    error: (message, fields) => emit('error', message, fields),
    child: (fields) => createLogger({ ...options, write }, { ...bound, ...fields }),
  };
}
