import { ROOT_CONTEXT, context, createContextKey, trace, SpanStatusCode, type Attributes, type Link, type Span } from '@opentelemetry/api';
import type { ReadableSpan, Span as SdkSpan, SpanExporter, SpanProcessor } from '@opentelemetry/sdk-trace';
import type { SecretScrubber } from './secret-scrubber.ts';

export interface TracingOptions {
  env: Readonly<Record<string, string | undefined>>;
  /** Every span passes it before any processor after it (and so any exporter) sees the span. */
  scrubber: SecretScrubber;
  /** Tests pass their own (an in-memory exporter); otherwise the OTLP exporter the OTEL_* variables describe. */
  spanProcessors?: SpanProcessor[];
}

/** A pointer from one trace to a span of another (the notification a sync answers). */
export type TraceLink = Link;

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
 * not flood the exporter. A 404 the caller expects (expectingNotFound) is an
 * answer, not an error: its HTTP span ends OK without error.type.
 */
export async function startTracing(options: TracingOptions): Promise<Tracing> {
  if (options.spanProcessors === undefined && !tracingWanted(options.env)) return { enabled: false, shutdown: () => Promise.resolve() };
  const [{ NodeSDK }, { PgInstrumentation }, { UndiciInstrumentation }, { BatchSpanProcessor }] = await Promise.all([
    import('@opentelemetry/sdk-node'),
    import('@opentelemetry/instrumentation-pg'),
    import('@opentelemetry/instrumentation-undici'),
    import('@opentelemetry/sdk-trace'),
  ]);
  const exporting = options.spanProcessors ?? [new BatchSpanProcessor({ exporter: await otlpExporter(options.env) })];
  const sdk = new NodeSDK({
    serviceName: options.env['OTEL_SERVICE_NAME'] ?? 'rowcast',
    instrumentations: [
      new PgInstrumentation({ enhancedDatabaseReporting: false, requireParentSpan: true }),
      new UndiciInstrumentation({
        requireParentforSpans: true,
        ignoreRequestHook: () => context.active().getValue(perCallSpansOff) === true,
        // Runs where the request starts, so in the caller's context.
        requestHook: (span) => {
          if (context.active().getValue(notFoundExpected) === true) expectedNotFound.add(span);
        },
        // The instrumentation sets ERROR right after this hook for any status >= 400; an OK status is final, so it stays.
        responseHook: (span, { response }) => {
          if (response.statusCode === 404 && expectedNotFound.has(span)) span.setStatus({ code: SpanStatusCode.OK });
        },
      }),
    ],
    spanProcessors: [new ScrubbingSpanProcessor(options.scrubber), new ExpectedNotFoundProcessor(), ...exporting],
    metricReaders: [],
    logRecordProcessors: [],
  });
  sdk.start();
  return { enabled: true, shutdown: () => sdk.shutdown() };
}

/** The exporter OTEL_EXPORTER_OTLP_(TRACES_)PROTOCOL names, as the SDK itself would pick it. */
async function otlpExporter(env: TracingOptions['env']): Promise<SpanExporter> {
  const protocol = env['OTEL_EXPORTER_OTLP_TRACES_PROTOCOL'] ?? env['OTEL_EXPORTER_OTLP_PROTOCOL'] ?? 'http/protobuf';
  if (protocol === 'grpc') return new (await import('@opentelemetry/exporter-trace-otlp-grpc')).OTLPTraceExporter();
  if (protocol === 'http/json') return new (await import('@opentelemetry/exporter-trace-otlp-http')).OTLPTraceExporter();
  return new (await import('@opentelemetry/exporter-trace-otlp-proto')).OTLPTraceExporter();
}

/**
 * Scrubs every span where it ends, before the processors after it see it:
 * instrumentations (pg's `server.address`, undici's URLs, exception events)
 * write attributes Rowcast's call sites never see, so scrubbing there would
 * always miss one.
 */
class ScrubbingSpanProcessor implements SpanProcessor {
  readonly #scrubber: SecretScrubber;

  constructor(scrubber: SecretScrubber) {
    this.#scrubber = scrubber;
  }

  onStart(): void {
    // Attributes set later would escape a scrub here; onEnding sees them all.
  }

  onEnding(span: SdkSpan): void {
    for (const [key, value] of Object.entries(span.attributes)) {
      const clean = this.#clean(key, value);
      if (clean !== value) span.setAttribute(key, clean);
    }
    for (const event of span.events) {
      // Events are plain records the span keeps until export; an exception's message lands here.
      const attributes: Record<string, unknown> | undefined = event.attributes;
      if (attributes === undefined) continue;
      for (const [key, value] of Object.entries(attributes)) attributes[key] = this.#clean(key, value);
    }
    if (span.status.message !== undefined) span.setStatus({ ...span.status, message: this.#scrubber.scrub(span.status.message) });
    span.updateName(this.#scrubber.scrub(span.name));
  }

  onEnd(_span: ReadableSpan): void {
    // Ended spans are read-only; the work was done in onEnding.
  }

  forceFlush(): Promise<void> {
    return Promise.resolve();
  }

  shutdown(): Promise<void> {
    return Promise.resolve();
  }

  /** Attribute values may nest (OpenTelemetry's AnyValue): arrays keep their key, maps bring their own. */
  #clean(key: string, value: unknown): unknown {
    if (typeof value === 'string') return this.#scrubber.scrubField(key, value);
    if (Array.isArray(value)) return value.map((item: unknown) => this.#clean(key, item));
    if (typeof value === 'object' && value !== null && Object.getPrototypeOf(value) === Object.prototype) {
      return Object.fromEntries(Object.entries(value).map(([inner, item]: [string, unknown]) => [inner, this.#clean(inner, item)]));
    }
    return value;
  }
}

/** HTTP spans whose 404 the caller expects; weak, as a span that never gets an answer is simply dropped. */
const expectedNotFound = new WeakSet<Span>();

/** error.type is written after the response hook; on an expected 404 it would still read as a failure. */
class ExpectedNotFoundProcessor implements SpanProcessor {
  onStart(): void {
    // The status code is known only at the end.
  }

  onEnding(span: SdkSpan): void {
    if (span.status.code !== SpanStatusCode.OK || span.attributes['http.response.status_code'] !== 404) return;
    // Attributes cannot be removed through the API; until export the span's record is plain and writable.
    delete (span.attributes as Record<string, unknown>)['error.type'];
  }

  onEnd(_span: ReadableSpan): void {
    // Ended spans are read-only.
  }

  forceFlush(): Promise<void> {
    return Promise.resolve();
  }

  shutdown(): Promise<void> {
    return Promise.resolve();
  }
}

const tracer = trace.getTracer('rowcast');

const notFoundExpected = createContextKey('rowcast.not-found-expected');

/** The HTTP calls fn starts treat a 404 as an answer (a discovery miss, a GET before a create, a DELETE of a gone object). */
export function expectingNotFound<T>(fn: () => Promise<T>): Promise<T> {
  return context.with(context.active().setValue(notFoundExpected, true), fn);
}

/** Set inside a batch span: its thousands of calls get no HTTP span each (they would flood and overflow the exporter's queue). */
const perCallSpansOff = createContextKey('rowcast.per-call-spans-off');

/** Like inSpan, for a batch of many calls: one span for the batch, none per HTTP call inside it. */
export function inBatchSpan<T>(name: string, attributes: Attributes, fn: (span: Span) => Promise<T>): Promise<T> {
  return context.with(context.active().setValue(perCallSpansOff, true), () => inSpan(name, attributes, fn));
}

/** Runs fn in a span that ends with it, recording an error; a no-op span when tracing is off. */
export function inSpan<T>(name: string, attributes: Attributes, fn: (span: Span) => Promise<T>): Promise<T> {
  return runInSpan(name, { attributes }, context.active(), fn);
}

/**
 * Like inSpan, but the root of a trace of its own, whatever context the
 * caller runs in: informer callbacks, timers and queue continuations run in
 * the context of whoever happened to start them, often another DQR's sync.
 * Only the per-call switch is kept, so a root inside a batch adds no flood.
 */
export function inRootSpan<T>(name: string, attributes: Attributes, fn: (span: Span) => Promise<T>, links: readonly Link[] = []): Promise<T> {
  const base = context.active().getValue(perCallSpansOff) === true ? ROOT_CONTEXT.setValue(perCallSpansOff, true) : ROOT_CONTEXT;
  return runInSpan(name, { attributes, root: true, links: [...links] }, base, fn);
}

/**
 * A moment worth pointing at later (a notification received): a span of its
 * own, ended at once, returned as a link for the work it causes; undefined
 * when tracing is off.
 */
export function markMoment(name: string, attributes: Attributes): Link | undefined {
  const span = tracer.startSpan(name, { attributes, root: true }, ROOT_CONTEXT);
  span.end();
  const spanContext = span.spanContext();
  return trace.isSpanContextValid(spanContext) ? { context: spanContext } : undefined;
}

function runInSpan<T>(name: string, options: { attributes: Attributes; root?: boolean; links?: Link[] }, parent: ReturnType<typeof context.active>, fn: (span: Span) => Promise<T>): Promise<T> {
  return tracer.startActiveSpan(name, options, parent, async (span) => {
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
