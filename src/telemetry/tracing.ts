import { context, createContextKey, trace, SpanStatusCode, type Attributes, type Span } from '@opentelemetry/api';
import type { SpanProcessor } from '@opentelemetry/sdk-trace';

export interface TracingOptions {
  env: Readonly<Record<string, string | undefined>>;
  /** Tests pass their own (an in-memory exporter); otherwise the OTLP exporter the OTEL_* variables describe. */
  spanProcessors?: SpanProcessor[];
}

export interface Tracing {
  enabled: boolean;
  shutdown(): Promise<void>;
}

/** Tracing is off unless an OTLP endpoint is configured (or a test brings its processors). */
export function tracingWanted(env: TracingOptions['env']): boolean {
  if (env['OTEL_SDK_DISABLED'] === 'true' || env['OTEL_TRACES_EXPORTER'] === 'none') return false;
  return (env['OTEL_EXPORTER_OTLP_ENDPOINT'] ?? env['OTEL_EXPORTER_OTLP_TRACES_ENDPOINT'] ?? '') !== '';
}

/**
 * Starts the OpenTelemetry SDK with only the pg and undici instrumentations
 * (the auto-instrumentation bundle is slow to load and heavy). Must run before
 * `pg` is first imported, or pg is not patched: main imports the controller
 * only after this. The SDK itself is imported only when tracing is on.
 * Bind values never reach spans (enhancedDatabaseReporting stays off), and
 * spans are made only inside a Rowcast span, so idle watches and probes do
 * not flood the exporter.
 */
export async function startTracing(options: TracingOptions): Promise<Tracing> {
  if (options.spanProcessors === undefined && !tracingWanted(options.env)) return { enabled: false, shutdown: () => Promise.resolve() };
  const [{ NodeSDK }, { PgInstrumentation }, { UndiciInstrumentation }] = await Promise.all([
    import('@opentelemetry/sdk-node'),
    import('@opentelemetry/instrumentation-pg'),
    import('@opentelemetry/instrumentation-undici'),
  ]);
  const sdk = new NodeSDK({
    serviceName: options.env['OTEL_SERVICE_NAME'] ?? 'rowcast',
    instrumentations: [
      new PgInstrumentation({ enhancedDatabaseReporting: false, requireParentSpan: true }),
      new UndiciInstrumentation({ requireParentforSpans: true, ignoreRequestHook: () => context.active().getValue(perCallSpansOff) === true }),
    ],
    ...(options.spanProcessors === undefined ? {} : { spanProcessors: options.spanProcessors }),
    metricReaders: [],
    logRecordProcessors: [],
  });
  sdk.start();
  return { enabled: true, shutdown: () => sdk.shutdown() };
}

const tracer = trace.getTracer('rowcast');

/** Set inside a batch span: its thousands of calls get no HTTP span each (they would flood and overflow the exporter's queue). */
const perCallSpansOff = createContextKey('rowcast.per-call-spans-off');

/** Like inSpan, for a batch of many calls: one span for the batch, none per HTTP call inside it. */
export function inBatchSpan<T>(name: string, attributes: Attributes, fn: (span: Span) => Promise<T>): Promise<T> {
  return context.with(context.active().setValue(perCallSpansOff, true), () => inSpan(name, attributes, fn));
}

/** Runs fn in a span that ends with it, recording an error; a no-op span when tracing is off. */
export function inSpan<T>(name: string, attributes: Attributes, fn: (span: Span) => Promise<T>): Promise<T> {
  return tracer.startActiveSpan(name, { attributes }, async (span) => {
    try {
      return await fn(span);
    } catch (error) {
      span.setStatus({ code: SpanStatusCode.ERROR, message: error instanceof Error ? error.name : 'error' });
      throw error;
    } finally {
      span.end();
    }
  });
}

/**
 * Ties fn to the caller's trace context: work handed to a queue (p-queue)
 * runs later from another task's continuation and would otherwise land in
 * whichever trace happened to be active there.
 */
export function bindToCurrentContext<A extends unknown[], R>(fn: (...args: A) => R): (...args: A) => R {
  return context.bind(context.active(), fn);
}
