import { readFileSync } from 'node:fs';
import { isIPv6 } from 'node:net';
import { YAML_LIMITS, loadYamlDocument } from '../api/index.ts';

/** The source that means the pod's own service account, as every Kubernetes client reads it. */
export const IN_CLUSTER = 'in-cluster';
const SERVICE_ACCOUNT_DIR = '/var/run/secrets/kubernetes.io/serviceaccount';
/** A projected service-account token is rotated on disk: a token read from a file is used this long, then read again (client-go's period). */
const TOKEN_FILE_REREAD_MS = 60_000;

/** What a TLS connection to the apiserver takes from the kubeconfig. */
export interface KubeTls {
  ca?: Buffer;
  cert?: Buffer;
  key?: Buffer;
  rejectUnauthorized?: boolean;
  servername?: string;
}

type Entry = Record<string, unknown>;

interface ClientNodeConfig {
  applyToHTTPSOptions(options: Entry): Promise<void>;
}

function record(value: unknown): Entry | undefined {
  return typeof value === 'object' && value !== null && !Array.isArray(value) ? (value as Entry) : undefined;
}

function text(entry: Entry, key: string): string | undefined {
  const value = entry[key];
  return typeof value === 'string' && value !== '' ? value : undefined;
}

function named(list: unknown, name: string, what: string): Entry {
  const found = Array.isArray(list) ? list.map(record).find((item) => item?.['name'] === name) : undefined;
  const body = record(found?.[what]);
  if (body === undefined) throw new Error(`kubeconfig: ${what} ${JSON.stringify(name)} not found`);
  return body;
}

/** A file's bytes, or base64 data, the file first (what kubectl does when both are set). */
function fileOrData(file: string | undefined, data: string | undefined): Buffer | undefined {
  if (file !== undefined) return readFileSync(file);
  return data === undefined ? undefined : Buffer.from(data, 'base64');
}

/**
 * One kubeconfig context, read the way kubectl reads it: the cluster's URL
 * and CA, and the user's token, token file, client certificate or basic
 * credentials. A user authenticated by a plugin (exec, auth-provider) is
 * handed to client-node's plugins, loaded only for such a kubeconfig: they
 * are most of client-node's memory, which every other kubeconfig does not
 * need.
 */
export class Kubeconfig {
  readonly server: string;
  private readonly cluster: Entry;
  private readonly user: Entry;
  /** What was loaded: kubeconfig text, or IN_CLUSTER. */
  private readonly source: string;
  private plugins: Promise<ClientNodeConfig> | undefined;
  private tokenFromFile: { token: string; readAt: number } | undefined;

  /**
   * From kubeconfig text (YAML or JSON, its current context), or IN_CLUSTER
   * for the pod's service account (its token and CA in `serviceAccountDir`).
   */
  constructor(source: string, serviceAccountDir = SERVICE_ACCOUNT_DIR) {
    this.source = source;
    if (source === IN_CLUSTER) {
      const host = process.env['KUBERNETES_SERVICE_HOST'];
      const port = process.env['KUBERNETES_SERVICE_PORT'];
      if (host === undefined || host === '' || port === undefined || port === '') throw new Error('not running in a pod: KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT are not set (pass --kubeconfig)');
      this.server = `https://${isIPv6(host) ? `[${host}]` : host}:${port}`;
      this.cluster = { server: this.server, 'certificate-authority': `${serviceAccountDir}/ca.crt` };
      this.user = { tokenFile: `${serviceAccountDir}/token` };
      return;
    }
    const loaded = loadYamlDocument(source, YAML_LIMITS.kubeconfig);
    if (!loaded.ok) throw new Error(`kubeconfig: ${loaded.problem.message}`);
    const doc = record(loaded.value);
    if (doc === undefined) throw new Error('kubeconfig: expected a mapping');
    const contextName = doc['current-context'];
    if (typeof contextName !== 'string' || contextName === '') throw new Error('kubeconfig has no current context');
    const context = named(doc['contexts'], contextName, 'context');
    const clusterName = context['cluster'];
    if (typeof clusterName !== 'string') throw new Error(`kubeconfig: context ${JSON.stringify(contextName)} names no cluster`);
    this.cluster = named(doc['clusters'], clusterName, 'cluster');
    const userName = context['user'];
    this.user = typeof userName === 'string' && userName !== '' ? named(doc['users'], userName, 'user') : {};
    const server = text(this.cluster, 'server');
    if (server === undefined) throw new Error(`kubeconfig: cluster ${JSON.stringify(clusterName)} has no server`);
    this.server = server.replace(/\/+$/, '');
  }

  /** The source again: kubeconfig text, or IN_CLUSTER. */
  exportConfig(): string {
    return this.source;
  }

  /** Identifies the apiserver to a client: its URL and the CA it is trusted by. */
  get endpoint(): { server: string; ca: string } {
    return { server: this.server, ca: text(this.cluster, 'certificate-authority-data') ?? text(this.cluster, 'certificate-authority') ?? '' };
  }

  private get usesPlugin(): boolean {
    return this.user['exec'] !== undefined || this.user['auth-provider'] !== undefined;
  }

  /** The TLS material of a connection to the apiserver; files are read now. */
  async tls(): Promise<KubeTls> {
    const tls: KubeTls = {};
    const ca = fileOrData(text(this.cluster, 'certificate-authority'), text(this.cluster, 'certificate-authority-data'));
    if (ca !== undefined) tls.ca = ca;
    if (this.cluster['insecure-skip-tls-verify'] === true) tls.rejectUnauthorized = false;
    const servername = text(this.cluster, 'tls-server-name');
    if (servername !== undefined) tls.servername = servername;
    // An exec plugin may answer with a client certificate of its own.
    const fromPlugin: Entry = {};
    if (this.usesPlugin) await (await this.clientNode()).applyToHTTPSOptions(fromPlugin);
    const cert = fromPlugin['cert'] ?? fileOrData(text(this.user, 'client-certificate'), text(this.user, 'client-certificate-data'));
    const key = fromPlugin['key'] ?? fileOrData(text(this.user, 'client-key'), text(this.user, 'client-key-data'));
    if (Buffer.isBuffer(cert)) tls.cert = cert;
    else if (typeof cert === 'string') tls.cert = Buffer.from(cert);
    if (Buffer.isBuffer(key)) tls.key = key;
    else if (typeof key === 'string') tls.key = Buffer.from(key);
    return tls;
  }

  /** The request headers that say who is asking; asked per request, so a rotated token file or a plugin's refreshed token is used. */
  async authHeaders(): Promise<Record<string, string>> {
    const headers: Record<string, string> = {};
    const impersonate = text(this.user, 'as');
    if (impersonate !== undefined) headers['Impersonate-User'] = impersonate;
    if (this.usesPlugin) {
      const options: { headers?: Record<string, unknown> } = {};
      await (await this.clientNode()).applyToHTTPSOptions(options);
      const authorization = options.headers?.['Authorization'];
      if (typeof authorization === 'string') headers['Authorization'] = authorization;
      return headers;
    }
    const token = text(this.user, 'token') ?? this.tokenFile();
    const username = text(this.user, 'username');
    if (token !== undefined) headers['Authorization'] = `Bearer ${token}`;
    else if (username !== undefined) headers['Authorization'] = `Basic ${Buffer.from(`${username}:${text(this.user, 'password') ?? ''}`).toString('base64')}`;
    return headers;
  }

  /** client-go spells it tokenFile, client-node token-file: both are read. */
  private tokenFile(): string | undefined {
    const path = text(this.user, 'tokenFile') ?? text(this.user, 'token-file');
    if (path === undefined) return undefined;
    const now = Date.now();
    if (this.tokenFromFile === undefined || now - this.tokenFromFile.readAt > TOKEN_FILE_REREAD_MS) {
      this.tokenFromFile = { token: readFileSync(path, 'utf8').trim(), readAt: now };
    }
    return this.tokenFromFile.token;
  }

  private clientNode(): Promise<ClientNodeConfig> {
    this.plugins ??= (async () => {
      const { KubeConfig } = await import('@kubernetes/client-node');
      const config = new KubeConfig();
      config.loadFromString(this.source);
      return config;
    })();
    return this.plugins;
  }
}
