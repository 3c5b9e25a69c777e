/** What went wrong with a Kubernetes API call, in words safe for status, events and logs. */
export interface ApiFailure {
  kind: 'not-found' | 'conflict' | 'invalid' | 'forbidden' | 'unauthorized' | 'throttled' | 'unavailable' | 'gone' | 'other';
  /** HTTP status, when the server answered. */
  code?: number;
  /** The Status reason, e.g. AlreadyExists, Conflict, Invalid. */
  reason?: string;
  /** Built from the parsed Status, never from the exception's message (which embeds headers and body). */
  message: string;
  causes: { field: string; message: string }[];
  /** The Status details' kind and name: what the server could not find, for a 404. */
  details?: { kind?: string | undefined; name?: string | undefined };
  retryAfterMs?: number;
  /** Waiting may help (the server or network); terminal errors need a change of input. */
  retryable: boolean;
}

interface StatusBody {
  reason?: string;
  message?: string;
  details?: { kind?: string; name?: string; causes?: { field?: string; message?: string }[]; retryAfterSeconds?: number };
}

function parseStatus(body: unknown): StatusBody {
  if (typeof body === 'string') {
    try {
      return JSON.parse(body) as StatusBody;
    } catch {
      return {};
    }
  }
  return typeof body === 'object' && body !== null ? body : {};
}

function headerValue(headers: unknown, name: string): string | undefined {
  if (typeof headers !== 'object' || headers === null) return undefined;
  for (const [key, value] of Object.entries(headers)) if (key.toLowerCase() === name && typeof value === 'string') return value;
  return undefined;
}

const networkCodes = new Set(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENETUNREACH', 'EPIPE', 'UND_ERR_SOCKET', 'UND_ERR_CONNECT_TIMEOUT', 'UND_ERR_HEADERS_TIMEOUT', 'UND_ERR_BODY_TIMEOUT']);

/** The first `code` among an error and its causes that `wanted` accepts: undici and Node wrap the one that says what happened. */
export function errorCode(error: unknown, wanted: (code: string) => boolean): string | undefined {
  for (let current: unknown = error, depth = 0; current instanceof Error && depth < 5; current = current.cause, depth++) {
    const code = (current as { code?: unknown }).code;
    if (typeof code === 'string' && wanted(code)) return code;
  }
  return undefined;
}

/** The 500s an apiserver answers about the object sent, not about itself. */
const contentError = /^(failed to create typed patch object|failed to convert new object|unable to convert unstructured object)|error decoding from json|illegal base64 data/;

/**
 * Sorts an error from @kubernetes/client-node (ApiException with .code and a
 * raw string .body; watch errors with .statusCode; undici TypeErrors for
 * dropped connections) into one shape, retryable or terminal.
 */
export function describeApiError(error: unknown): ApiFailure {
  const fields = (typeof error === 'object' && error !== null ? error : {}) as { code?: unknown; statusCode?: unknown; body?: unknown; headers?: unknown };
  const code = typeof fields.code === 'number' ? fields.code : typeof fields.statusCode === 'number' ? fields.statusCode : undefined;
  if (code === undefined) {
    const err = error instanceof Error ? error : new Error(String(error));
    const net = errorCode(err, (code) => networkCodes.has(code));
    const timedOut = err.name === 'TimeoutError' || err.name === 'AbortError';
    const message =
      net === 'UND_ERR_BODY_TIMEOUT'
        ? 'the member stopped sending: response body not complete within the request timeout'
        : net === 'UND_ERR_HEADERS_TIMEOUT'
          ? 'no response headers within the request timeout'
          : net !== undefined
            ? `connection failed (${net})`
            : timedOut
              ? 'request timed out'
              : err.message === 'fetch failed' || err.message === 'terminated'
                ? 'connection failed'
                : err.message;
    return { kind: 'unavailable', message, causes: [], retryable: true };
  }
  const status = parseStatus(fields.body);
  const causes = (status.details?.causes ?? []).map((c) => ({ field: c.field ?? '', message: c.message ?? '' }));
  const base = {
    code,
    ...(status.reason === undefined ? {} : { reason: status.reason }),
    message: status.message ?? `HTTP ${code}`,
    causes,
    ...(status.details?.kind === undefined && status.details?.name === undefined ? {} : { details: { kind: status.details.kind, name: status.details.name } }),
  };
  const retryAfterHeader = Number(headerValue(fields.headers, 'retry-after'));
  const retryAfterSeconds = Number.isFinite(retryAfterHeader) && retryAfterHeader > 0 ? retryAfterHeader : status.details?.retryAfterSeconds;
  const retryAfter = retryAfterSeconds === undefined ? {} : { retryAfterMs: retryAfterSeconds * 1000 };
  switch (code) {
    case 404:
      return { ...base, kind: 'not-found', retryable: false };
    case 409:
      return { ...base, kind: 'conflict', retryable: false };
    case 400:
    case 422:
      return { ...base, kind: 'invalid', retryable: false };
    case 401:
      return { ...base, kind: 'unauthorized', message: status.message ?? 'unauthorized: the credentials were refused', retryable: true };
    case 403:
      return { ...base, kind: 'forbidden', retryable: false };
    case 410:
      return { ...base, kind: 'gone', retryable: true };
    case 429:
      return { ...base, ...retryAfter, kind: 'throttled', retryable: true };
    case 500:
      // Server-side apply answers a body that does not fit the kind's schema
      // (a template's typo) or cannot be converted (binaryData that is not
      // base64) with a 500, not a 422: it is bad input all the same.
      if (contentError.test(status.message ?? '')) return { ...base, kind: 'invalid', retryable: false };
      return { ...base, ...retryAfter, kind: 'unavailable', retryable: true };
    default:
      return code >= 500 ? { ...base, ...retryAfter, kind: 'unavailable', retryable: true } : { ...base, kind: 'other', retryable: false };
  }
}
