import { Agent, errors, request, type Dispatcher } from 'undici';
import { OverHeldLimitError, errorCode, type HeldBytes, type ListedCollection } from '../runtime/index.ts';
import { expectingNotFound } from '../telemetry/index.ts';
import { Kubeconfig } from './kubeconfig.ts';

/** Thrown for an HTTP error answer; shaped like client-node's ApiException so runtime's describeApiError reads both. */
export class MemberApiError extends Error {
  override readonly name = 'MemberApiError';
  readonly code: number;
  /** The raw Status body, as client-node keeps it. */
  readonly body: string;
  readonly headers: Record<string, string>;

  constructor(method: string, path: string, code: number, body: string, headers: Record<string, string>) {
    let reason = '';
    try {
      reason = (JSON.parse(body) as { message?: string }).message ?? '';
    } catch {
      reason = '';
    }
    super(`${method} ${path}: HTTP ${code}${reason === '' ? '' : `: ${reason}`}`);
    this.code = code;
    this.body = body;
    this.headers = headers;
  }
}

export interface MemberApiOptions {
  /** Longest wait for response headers; a hung member fails instead of stalling its queue forever. */
  requestTimeoutMs: number;
  /** Connections for calls (not watches) to this member at once. */
  connections?: number;
  /** Names this replica in the apiserver's audit log, so an operator can tell which one wrote. */
  userAgent?: string;
}

/** Which Agent a request goes through: calls are bounded, each watch streams on as long as it lasts. */
export type Traffic = 'calls' | 'watches';

/**
 * A member's credentials and its two undici Agents. Calls share a bounded
 * pool. Watches have their own, unbounded one: over HTTP/1.1 (a member behind
 * a proxy that does not speak h2) a watch holds its connection for as long as
 * it streams, and a tenant with many allowed namespaces keeps dozens open;
 * in a shared pool they would leave no connection for an apply or a list.
 * Over h2 each pool multiplexes on a connection or two.
 */
export class MemberKubeConfig {
  private readonly agents = new Map<Traffic, Agent>();
  private readonly kubeconfig: Kubeconfig;
  /** Bounds the wait for response headers, and again for the body, of every call but a watch. */
  readonly requestTimeoutMs: number;
  private readonly connections: number;
  private readonly userAgent: string | undefined;

  /** From kubeconfig text (its current context), or IN_CLUSTER for the pod's service account. */
  constructor(source: string, options: MemberApiOptions) {
    this.kubeconfig = new Kubeconfig(source);
    this.requestTimeoutMs = options.requestTimeoutMs;
    this.connections = options.connections ?? 16;
    this.userAgent = options.userAgent;
  }

  get server(): string {
    return this.kubeconfig.server;
  }

  /** Identifies the apiserver to a client: its URL and the CA it is trusted by. */
  get endpoint(): { server: string; ca: string } {
    return this.kubeconfig.endpoint;
  }

  /** What it was made from: kubeconfig text, or IN_CLUSTER. */
  exportConfig(): string {
    return this.kubeconfig.exportConfig();
  }

  /** The member's Agent for this traffic, made on first use from the kubeconfig's TLS material. */
  async dispatcher(traffic: Traffic): Promise<Dispatcher> {
    let agent = this.agents.get(traffic);
    if (agent === undefined) {
      const tls = await this.kubeconfig.tls();
      const connect = {
        ...(tls.ca === undefined ? {} : { ca: tls.ca }),
        ...(tls.cert === undefined ? {} : { cert: tls.cert }),
        ...(tls.key === undefined ? {} : { key: tls.key }),
        ...(tls.rejectUnauthorized === undefined ? {} : { rejectUnauthorized: tls.rejectUnauthorized }),
        ...(tls.servername === undefined ? {} : { servername: tls.servername }),
        keepAlive: true,
        keepAliveInitialDelay: 30_000,
      };
      // Another call may have made it while this one read the TLS material.
      agent = this.agents.get(traffic);
      if (agent === undefined) {
        agent = new Agent({
          connect: { ...connect, timeout: Math.min(this.requestTimeoutMs, 10_000) },
          // A watch's lines are bounded one by one (lines()), not its whole stream.
          ...(traffic === 'calls' ? { connections: this.connections, maxResponseSize: MAX_ANSWER_BYTES } : {}),
          headersTimeout: this.requestTimeoutMs,
          // Watches stream for minutes; their informer ends one that falls silent.
          // MemberApi.request sets its own body deadline on every other call.
          bodyTimeout: 0,
        });
        this.agents.set(traffic, agent);
      }
    }
    return agent;
  }

  /** Authorization headers for a raw request; recomputed per call so exec and token plugins can refresh. */
  async authHeaders(): Promise<Record<string, string>> {
    const headers = await this.kubeconfig.authHeaders();
    if (this.userAgent !== undefined) headers['User-Agent'] = this.userAgent;
    return headers;
  }

  async close(): Promise<void> {
    const agents = [...this.agents.values()];
    this.agents.clear();
    await Promise.all(agents.map((agent) => agent.destroy()));
  }
}

const METADATA_LIST = 'application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1';
/** Also what a metadata-only watch asks for: each event's object then carries metadata only. */
const METADATA_OBJECT = 'application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1';

// JSON leaves these raw, but the apiserver reads apply bodies
// (application/apply-patch+yaml) with a YAML decoder, which refuses DEL, C1
// controls, U+FEFF, U+FFFE and U+FFFF ("control characters are not allowed")
// and, being YAML 1.1, folds U+2028 and U+2029 as line breaks.
const RAW_IN_JSON_REFUSED_BY_YAML = /[\u007f-\u009f\u2028\u2029\ufeff\ufffe\uffff]/g;

function answerTooLarge(method: string, path: string, cause: unknown): AnswerTooLargeError {
  return new AnswerTooLargeError(`${method} ${path}: the member's answer is over ${MAX_ANSWER_TEXT}: Rowcast reads no more of one answer`, { cause });
}

/** Items per page of a list, as client-go's pager asks; halved for a page whose answer is too large. */
const LIST_PAGE_SIZE = 500;

/** JSON that every apiserver decoder (JSON or YAML) reads back as exactly this value. */
function jsonBody(body: unknown): string {
  return JSON.stringify(body).replace(RAW_IN_JSON_REFUSED_BY_YAML, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

/**
 * The most the hub reads of one answer (a call's body, a watch's line): far
 * above any object an apiserver stores (etcd refuses 1.5 MiB). Anyone who may
 * create a ClusterTarget can point it at a server of their own, and the hub
 * runs every tenant's syncs: a member that sends more is cut off, not buffered.
 */
export const MAX_ANSWER_BYTES = 16 * 2 ** 20;
const MAX_ANSWER_TEXT = `${MAX_ANSWER_BYTES / 2 ** 20} MiB`;

/** A member's answer went past MAX_ANSWER_BYTES: the connection was dropped there. Retryable, like any misbehaving member. */
export class AnswerTooLargeError extends Error {
  override readonly name = 'AnswerTooLargeError';
}

function tooLarge(error: unknown): boolean {
  return errorCode(error, (code) => code === 'UND_ERR_RES_EXCEEDED_MAX_SIZE') !== undefined;
}

/** A stream's text split at newlines; the stream's error (a dropped connection) rejects the iteration. */
async function* lines(chunks: AsyncIterable<string>): AsyncGenerator<string> {
  let rest = '';
  for await (const chunk of chunks) {
    rest += chunk;
    if (rest.length > MAX_ANSWER_BYTES && !rest.includes('\n')) throw new AnswerTooLargeError(`watch event over ${MAX_ANSWER_TEXT}: Rowcast reads no more of one answer`);
    let newline = rest.indexOf('\n');
    while (newline !== -1) {
      yield rest.slice(0, newline);
      rest = rest.slice(newline + 1);
      newline = rest.indexOf('\n');
    }
  }
  if (rest !== '') yield rest;
}

export interface ApiResource {
  name: string;
  namespaced: boolean;
  kind: string;
  verbs: string[];
}

export interface RequestOptions {
  query?: Record<string, string | undefined>;
  accept?: string;
  body?: unknown;
  contentType?: string;
  signal?: AbortSignal;
  /**
   * Called synchronously after every await, just as the request is handed to
   * its connection: a check made here is as late as it can be. Throwing sends
   * nothing (the leader fence).
   */
  beforeSend?: () => void;
  /** Told the length of the answer's text once it is read whole. */
  onAnswer?: (length: number) => void;
}

export interface ObjectRef {
  apiVersion: string;
  kind: string;
  namespace: string | undefined;
  name: string;
}

/**
 * The calls Rowcast makes on a member, sent as raw JSON. client-node's
 * KubernetesObjectApi runs built-in kinds through its models, which silently
 * drop unknown fields (so the server's strict field validation never sees a
 * template's typo) and turn timestamps into Dates; here bytes go out as
 * rendered and come back as the server wrote them.
 */
export class MemberApi {
  readonly kubeConfig: MemberKubeConfig;
  readonly server: string;
  private readonly discovery = new Map<string, Promise<ApiResource[]>>();
  /** Counts by verb, for tests and metrics: an unchanged resync must send no writes. */
  readonly requests = { get: 0, list: 0, apply: 0, delete: 0, discovery: 0 };
  /** Host of the server, as rest_client_requests_total labels it. */
  readonly host: string;
  private readonly onResponse: ((host: string, method: string, code: string) => void) | undefined;

  /** What this member's informers may hold at once; a list may not read more than that either. None: unbounded (the hub's own API). */
  readonly held: HeldBytes | undefined;

  constructor(kubeConfig: MemberKubeConfig, onResponse?: (host: string, method: string, code: string) => void, held?: HeldBytes) {
    this.kubeConfig = kubeConfig;
    this.onResponse = onResponse;
    this.held = held;
    this.server = kubeConfig.server;
    this.host = new URL(this.server).host;
  }

  /**
   * Every call here is a bounded one (a watch, on the same Agent, whose
   * bodyTimeout stays 0, is ended by its informer when it falls silent): headers within the request
   * timeout, then the whole body within the request timeout again. A member
   * that answers and then goes silent fails the call instead of holding its
   * queue slot, and the DQR's key, forever.
   */
  async request<T>(method: Dispatcher.HttpMethod, path: string, options: RequestOptions = {}): Promise<T> {
    const url = new URL(this.server + path);
    for (const [key, value] of Object.entries(options.query ?? {})) if (value !== undefined) url.searchParams.set(key, value);
    const headers: Record<string, string> = { ...(await this.kubeConfig.authHeaders()), Accept: options.accept ?? 'application/json' };
    if (options.body !== undefined) headers['Content-Type'] = options.contentType ?? 'application/json';
    const bodyDeadline = new AbortController();
    const signal = options.signal === undefined ? bodyDeadline.signal : AbortSignal.any([options.signal, bodyDeadline.signal]);
    const timeoutMs = this.kubeConfig.requestTimeoutMs;
    const dispatcher = await this.kubeConfig.dispatcher('calls');
    options.beforeSend?.();
    let response: Dispatcher.ResponseData;
    try {
      response = await request(url, {
        method,
        headers,
        dispatcher,
        bodyTimeout: timeoutMs,
        signal,
        ...(options.body === undefined ? {} : { body: jsonBody(options.body) }),
      });
    } catch (error) {
      this.onResponse?.(this.host, method, '<error>');
      throw tooLarge(error) ? answerTooLarge(method, url.pathname, error) : error;
    }
    this.onResponse?.(this.host, method, String(response.statusCode));
    const timer = setTimeout(() => {
      bodyDeadline.abort(new errors.BodyTimeoutError(`${method} ${url.pathname}: response body not complete within ${timeoutMs} ms`));
    }, timeoutMs);
    let text: string;
    try {
      text = await response.body.text();
    } catch (error) {
      throw tooLarge(error) ? answerTooLarge(method, url.pathname, error) : error;
    } finally {
      clearTimeout(timer);
    }
    options.onAnswer?.(text.length);
    if (response.statusCode >= 400) {
      const responseHeaders: Record<string, string> = {};
      for (const [key, value] of Object.entries(response.headers)) if (typeof value === 'string') responseHeaders[key] = value;
      throw new MemberApiError(method, url.pathname, response.statusCode, text, responseHeaders);
    }
    const json = String(response.headers['content-type'] ?? '').includes('json');
    return (json && text !== '' ? JSON.parse(text) : text) as T;
  }

  /**
   * Opens a watch and resolves once the member answered it, with its events'
   * lines. No deadline of its own: the informer ends a silent one (and so a
   * hung member's) through `signal`.
   */
  async watch(path: string, query: Record<string, string | undefined>, signal: AbortSignal, metadataOnly = false): Promise<AsyncIterable<string>> {
    const url = new URL(this.server + path);
    url.searchParams.set('watch', 'true');
    for (const [key, value] of Object.entries(query)) if (value !== undefined) url.searchParams.set(key, value);
    const headers: Record<string, string> = { ...(await this.kubeConfig.authHeaders()), Accept: metadataOnly ? METADATA_OBJECT : 'application/json' };
    const dispatcher = await this.kubeConfig.dispatcher('watches');
    let response: Dispatcher.ResponseData;
    try {
      response = await request(url, { method: 'GET', headers, dispatcher, signal });
    } catch (error) {
      this.onResponse?.(this.host, 'GET', '<error>');
      throw error;
    }
    this.onResponse?.(this.host, 'GET', String(response.statusCode));
    if (response.statusCode >= 400) {
      const text = await response.body.text();
      throw new MemberApiError('WATCH', url.pathname, response.statusCode, text, {});
    }
    response.body.setEncoding('utf8');
    return lines(response.body);
  }

  /** The resources of one group version; cached, and refetched when a kind is missing (a CRD installed later). */
  async resourceFor(apiVersion: string, kind: string): Promise<ApiResource | undefined> {
    const cached = this.discovery.get(apiVersion);
    if (cached !== undefined) {
      const found = (await cached.catch(() => [])).find((r) => r.kind === kind);
      if (found !== undefined) return found;
    }
    const path = apiVersion.includes('/') ? `/apis/${apiVersion}` : `/api/${apiVersion}`;
    const fetched = (async () => {
      this.requests.discovery++;
      try {
        // A group version not served (a CRD not installed) is a miss, not an error.
        const list = await expectingNotFound(() => this.request<{ resources: ApiResource[] }>('GET', path));
        return list.resources.filter((r) => !r.name.includes('/'));
      } catch (error) {
        if (error instanceof MemberApiError && error.code === 404) return [];
        throw error;
      }
    })();
    this.discovery.set(apiVersion, fetched);
    try {
      return (await fetched).find((r) => r.kind === kind);
    } catch (error) {
      this.discovery.delete(apiVersion);
      throw error;
    }
  }

  /** Collection path for a resource, in a namespace or cluster-wide. */
  static collectionPath(apiVersion: string, resource: ApiResource, namespace: string | undefined): string {
    const root = apiVersion.includes('/') ? `/apis/${apiVersion}` : `/api/${apiVersion}`;
    return resource.namespaced && namespace !== undefined ? `${root}/namespaces/${namespace}/${resource.name}` : `${root}/${resource.name}`;
  }

  /** Server-side apply of one object, never forcing: a field owned by someone else comes back as 409. */
  async apply(
    object: Record<string, unknown>,
    path: string,
    fieldManager: string,
    options: { dryRun?: boolean; signal?: AbortSignal; beforeSend?: () => void; force?: boolean } = {},
  ): Promise<Record<string, unknown>> {
    this.requests.apply++;
    return this.request<Record<string, unknown>>('PATCH', path, {
      // force only to heal drift on an object Rowcast owns: the fields it renders come back from whoever took them.
      query: { fieldManager, force: options.force === true ? 'true' : 'false', fieldValidation: 'Strict', ...(options.dryRun === true ? { dryRun: 'All' } : {}) },
      body: object,
      contentType: 'application/apply-patch+yaml',
      ...(options.signal === undefined ? {} : { signal: options.signal }),
      ...(options.beforeSend === undefined ? {} : { beforeSend: options.beforeSend }),
    });
  }

  /**
   * Every item of a collection matching a label selector, page by page.
   * `metadataOnly` asks for PartialObjectMetadata: labels, annotations and uid
   * are all a prune or conflict check needs, at a fraction of the bytes.
   */
  async list(path: string, labelSelector: string | undefined, signal?: AbortSignal, metadataOnly = false): Promise<Record<string, unknown>[]> {
    return (await this.listWithVersion(path, labelSelector, signal, metadataOnly)).items;
  }

  /**
   * As list, with the resourceVersion of the snapshot the pages were read
   * from (the first page's: a continue token reads the same snapshot), from
   * which a watch goes on.
   */
  async listWithVersion(path: string, labelSelector: string | undefined, signal?: AbortSignal, metadataOnly = false): Promise<{ items: Record<string, unknown>[]; resourceVersion: string; bytes: number }> {
    const items: Record<string, unknown>[] = [];
    let bytes = 0;
    const onAnswer = (length: number): void => {
      bytes += length;
    };
    let continueToken: string | undefined;
    let resourceVersion: string | undefined;
    let limit = LIST_PAGE_SIZE;
    type Page = { items?: Record<string, unknown>[]; metadata?: { continue?: string; resourceVersion?: string } };
    for (;;) {
      this.requests.list++;
      let page: Page;
      try {
        page = await this.request<Page>('GET', path, {
          query: { labelSelector, limit: String(limit), continue: continueToken },
          ...(metadataOnly ? { accept: METADATA_LIST } : {}),
          ...(signal === undefined ? {} : { signal }),
          onAnswer,
        });
      } catch (error) {
        // Big objects (each up to etcd's 1.5 MiB) can fill a page past the limit: the same page again, half as long.
        if (error instanceof AnswerTooLargeError && limit > 1) {
          limit = Math.ceil(limit / 2);
          continue;
        }
        throw error;
      }
      resourceVersion ??= page.metadata?.resourceVersion;
      items.push(...(page.items ?? []));
      // A member that answers page after page without end is cut off where its caches would be.
      if (this.held !== undefined && bytes > this.held.limit) throw new OverHeldLimitError(`a list of ${path}`, this.held.limit);
      continueToken = page.metadata?.continue === '' ? undefined : page.metadata?.continue;
      if (continueToken === undefined) break;
    }
    return { items, resourceVersion: resourceVersion ?? '', bytes };
  }

  /** A collection as an informer lists it: page by page, with the resourceVersion its watch goes on from. */
  async listCollection<T>(path: string, labelSelector?: string, metadataOnly = false): Promise<ListedCollection<T>> {
    const { items, resourceVersion, bytes } = await this.listWithVersion(path, labelSelector, undefined, metadataOnly);
    return { items: items as T[], metadata: { resourceVersion }, bytes };
  }

  async get(path: string, signal?: AbortSignal, metadataOnly = false): Promise<Record<string, unknown> | undefined> {
    this.requests.get++;
    try {
      return await expectingNotFound(() =>
        this.request<Record<string, unknown>>('GET', path, {
          ...(metadataOnly ? { accept: METADATA_OBJECT } : {}),
          ...(signal === undefined ? {} : { signal }),
        }),
      );
    } catch (error) {
      if (error instanceof MemberApiError && error.code === 404) return undefined;
      throw error;
    }
  }

  /**
   * Deletes only the object seen: a uid precondition, so a same-named
   * newcomer is never removed by mistake, and with a resourceVersion, none
   * changed since it was seen (a 409 then).
   */
  async delete(path: string, uid: string | undefined, signal?: AbortSignal, beforeSend?: () => void, resourceVersion?: string): Promise<void> {
    this.requests.delete++;
    const preconditions = { ...(uid === undefined ? {} : { uid }), ...(resourceVersion === undefined ? {} : { resourceVersion }) };
    try {
      await expectingNotFound(() =>
        this.request('DELETE', path, {
          body: { kind: 'DeleteOptions', apiVersion: 'v1', propagationPolicy: 'Background', ...(Object.keys(preconditions).length === 0 ? {} : { preconditions }) },
          ...(signal === undefined ? {} : { signal }),
          ...(beforeSend === undefined ? {} : { beforeSend }),
        }),
      );
    } catch (error) {
      if (error instanceof MemberApiError && error.code === 404) return;
      throw error;
    }
  }

  async version(signal?: AbortSignal): Promise<string> {
    const info = await this.request<{ gitVersion?: string }>('GET', '/version', signal === undefined ? {} : { signal });
    return info.gitVersion ?? 'unknown';
  }

  async close(): Promise<void> {
    await this.kubeConfig.close();
  }
}
