/**
 * `consul`: name resolution for clusters, through a Consul agent (1.10+) and its HTTP API,
 * using the `consul` npm client.
 *
 * ```yaml
 * resolver:
 *   type: consul
 *   consul:
 *     address: 127.0.0.1:8500          # or https://consul.internal:8501; else CONSUL_HTTP_ADDR
 *     token: ...                       # else CONSUL_HTTP_TOKEN / CONSUL_HTTP_TOKEN_FILE
 *     tls: { ca: /etc/consul/ca.pem, cert: /etc/weft/consul.pem, key: /etc/weft/consul-key.pem }
 *     datacenter: dc1
 *     tags: [weft]
 *     meta: { zone: eu-1a }
 *     checkTtl: 6s
 *     deregisterCriticalServiceAfter: 1m
 *     consulNamespace: team-a          # Consul Enterprise only
 *     wait: 30s                        # blocking-query wait
 *     serviceAddress: agent            # else the node's advertise address (WEFT_CONSUL_SERVICE_ADDRESS)
 * ```
 *
 * Registration: one Consul service instance per (node, namespace, app), with the ID
 * `weft:<nodeId>:<namespace>:<appId>` (stable across restarts of the node, so a restart
 * replaces its own entries instead of adding new ones), a TTL check the node passes every
 * TTL/3, and `DeregisterCriticalServiceAfter` so the entries of a node that died are reaped.
 * Registration, heartbeats and re-registration (when the agent forgot us, e.g. a restarted
 * dev agent) run in the background with jittered backoff: `register()` never fails because
 * Consul is down.
 *
 * Watches: one blocking query per watched app on `/v1/health/service/<appId>?passing=true`,
 * filtered to weft's instances of that namespace, shared by all listeners of that app. On an
 * outage the last known good list stays, the loop keeps retrying, and `status()` says why.
 *
 * Actor membership (`watchActors`): an app whose meta carries `actor_types` is registered a
 * second time under the shared service `weft-actors` (ID `weft:<node>:<ns>:<app>.actors`, its
 * own TTL check, the same meta plus `weft_actor_app`), so one blocking query per namespace lists
 * every actor host with its types and placement acknowledgement.
 */
import { EventEmitter } from 'node:events';
import { readFileSync } from 'node:fs';
import { Agent as HttpAgent } from 'node:http';
import { Agent as HttpsAgent } from 'node:https';
import Consul from 'consul';
import { parseDuration } from '../duration.ts';
import { ACTOR_TYPES_META, appKey, registerResolver, type AppKey, type Instance, type Registration, type Resolver, type ResolverContext, type ResolverStatus } from './resolver.ts';

/** Meta keys weft adds to every registration; reserved in `resolver.consul.meta`. */
export const META_NAMESPACE = 'weft_namespace';
export const META_NODE_ID = 'weft_node_id';
/** The shared service actor-hosting apps also register under (placement's membership). */
export const ACTORS_SERVICE = 'weft-actors';
/** On a `weft-actors` entry: the app that hosts the actors. */
export const META_ACTOR_APP = 'weft_actor_app';

const KNOWN_OPTIONS = [
  'address', 'token', 'tls', 'datacenter', 'tags', 'meta', 'checkTtl', 'deregisterCriticalServiceAfter',
  'consulNamespace', 'wait', 'requestTimeout', 'backoff', 'serviceAddress',
] as const;

// Consul's own limits on service meta (agent/structs: validateMetaPair and friends).
const META_KEY = /^[A-Za-z0-9_-]+$/;
const META_MAX_PAIRS = 64;
const META_MAX_KEY = 128;
const META_MAX_VALUE = 512;
const DATACENTER = /^[A-Za-z0-9_.-]+$/;
const CONSUL_NAMESPACE = /^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$/;

export interface ConsulOptions {
  /** Base URL of the agent's HTTP API, without `/v1` (e.g. `http://127.0.0.1:8500`). */
  readonly baseUrl: string;
  readonly token: string | undefined;
  readonly tls: { readonly ca?: Buffer; readonly cert?: Buffer; readonly key?: Buffer; readonly serverName?: string; readonly rejectUnauthorized: boolean } | undefined;
  readonly datacenter: string | undefined;
  readonly tags: readonly string[];
  readonly meta: Readonly<Record<string, string>>;
  readonly checkTtlMs: number;
  readonly deregisterAfterMs: number;
  readonly consulNamespace: string | undefined;
  readonly waitMs: number;
  readonly requestTimeoutMs: number;
  readonly backoff: { readonly initialMs: number; readonly maxMs: number };
  /**
   * What to register as the service address instead of the node's advertise address: a host
   * name or IP, or `agent` to register none, so Consul answers with the address of the agent's
   * node (the host's own address in a node-per-host cluster).
   */
  readonly serviceAddress: string | undefined;
}

type ConfigError = ResolverContext['configError'];

function isObj(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/**
 * Validates `resolver.consul` (with the CONSUL_* environment as fallback). Every problem names
 * its field; values that came from the environment say so.
 */
export function parseConsulOptions(raw: Readonly<Record<string, unknown>>, env: NodeJS.ProcessEnv, configError: ConfigError): ConsulOptions {
  const field = (name: string): string => `resolver.consul.${name}`;
  for (const key of Object.keys(raw)) {
    if (!(KNOWN_OPTIONS as readonly string[]).includes(key)) throw configError(field(key), `unknown field (known: ${KNOWN_OPTIONS.join(', ')})`);
  }
  const str = (name: string, v: unknown): string | undefined => {
    if (v === undefined || v === null) return undefined;
    if (typeof v !== 'string' || v.trim() === '') throw configError(field(name), 'must be a non-empty string');
    return v.trim();
  };
  const duration = (name: string, fallback: number, min: number, max: number): number => {
    const v = raw[name];
    if (v === undefined || v === null) return fallback;
    const ms = parseDuration(v);
    if (ms === undefined) throw configError(field(name), `"${String(v)}" is not a duration (e.g. 500ms, 10s, 1m)`);
    if (ms < min || ms > max) throw configError(field(name), `must be from ${fmtMs(min)} to ${fmtMs(max)} (got ${String(v)})`);
    return ms;
  };

  // TLS first: it decides the scheme of an address written without one.
  const tlsRaw = raw['tls'];
  if (tlsRaw !== undefined && tlsRaw !== null && !isObj(tlsRaw)) throw configError(field('tls'), 'must be a mapping with ca, cert, key (file paths)');
  const tlsObj: Record<string, unknown> = isObj(tlsRaw) ? tlsRaw : {};
  const tlsKnown = ['ca', 'cert', 'key', 'serverName', 'insecureSkipVerify'];
  for (const key of Object.keys(tlsObj)) {
    if (!tlsKnown.includes(key)) throw configError(field(`tls.${key}`), `unknown field (known: ${tlsKnown.join(', ')})`);
  }
  const file = (name: 'ca' | 'cert' | 'key', envName: string): Buffer | undefined => {
    const fromConfig = str(`tls.${name}`, tlsObj[name]);
    const path = fromConfig ?? (env[envName] || undefined);
    if (path === undefined) return undefined;
    try {
      return readFileSync(path);
    } catch (err) {
      throw configError(field(`tls.${name}`), `cannot read ${path}${fromConfig === undefined ? ` (from ${envName})` : ''}: ${(err as Error).message}`);
    }
  };
  const ca = file('ca', 'CONSUL_CACERT');
  const cert = file('cert', 'CONSUL_CLIENT_CERT');
  const key = file('key', 'CONSUL_CLIENT_KEY');
  if ((cert === undefined) !== (key === undefined)) throw configError(field(cert === undefined ? 'tls.cert' : 'tls.key'), 'tls.cert and tls.key go together: set both or neither');
  const serverName = str('tls.serverName', tlsObj['serverName']) ?? (env['CONSUL_TLS_SERVER_NAME'] || undefined);
  const skip = tlsObj['insecureSkipVerify'];
  if (skip !== undefined && typeof skip !== 'boolean') throw configError(field('tls.insecureSkipVerify'), 'must be true or false');
  const envVerify = (env['CONSUL_HTTP_SSL_VERIFY'] ?? '').toLowerCase();
  const rejectUnauthorized = skip === true ? false : !(skip === undefined && (envVerify === 'false' || envVerify === '0'));
  const tlsWanted = isObj(tlsRaw) && Object.keys(tlsRaw).length > 0;

  // Address: host:port, or a URL; CONSUL_HTTP_ADDR; then Consul's default.
  const fromConfig = str('address', raw['address']);
  const addrText = fromConfig ?? (env['CONSUL_HTTP_ADDR'] || '127.0.0.1:8500');
  const addrSource = fromConfig === undefined && env['CONSUL_HTTP_ADDR'] ? ' (from CONSUL_HTTP_ADDR)' : '';
  if (addrText.startsWith('unix://')) throw configError(field('address'), `unix sockets are not supported${addrSource}; use host:port`);
  const sslEnv = (env['CONSUL_HTTP_SSL'] ?? '').toLowerCase();
  const https = tlsWanted || sslEnv === 'true' || sslEnv === '1';
  const withScheme = /^[a-z][a-z0-9+.-]*:\/\//i.test(addrText) ? addrText : `${https ? 'https' : 'http'}://${addrText}`;
  let url: URL;
  try {
    url = new URL(withScheme);
  } catch {
    throw configError(field('address'), `"${addrText}"${addrSource} is not host:port or an http(s) URL`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw configError(field('address'), `"${addrText}"${addrSource}: the scheme must be http or https`);
  if (url.hostname === '') throw configError(field('address'), `"${addrText}"${addrSource} has no host`);
  if (url.search !== '' || url.hash !== '') throw configError(field('address'), `"${addrText}"${addrSource} must not have a query or fragment`);
  if (url.protocol === 'http:' && tlsWanted) throw configError(field('tls'), `is set but the address ${url.origin}${addrSource} is plain http; use https://`);
  const path = url.pathname.replace(/\/+$/, '');
  const baseUrl = `${url.protocol}//${url.host}${path}`;

  const tokenConfig = str('token', raw['token']);
  let token = tokenConfig ?? (env['CONSUL_HTTP_TOKEN'] || undefined);
  if (token === undefined && env['CONSUL_HTTP_TOKEN_FILE']) {
    try {
      token = readFileSync(env['CONSUL_HTTP_TOKEN_FILE'], 'utf8').trim() || undefined;
    } catch (err) {
      throw configError(field('token'), `cannot read CONSUL_HTTP_TOKEN_FILE ${env['CONSUL_HTTP_TOKEN_FILE']}: ${(err as Error).message}`);
    }
  }

  const datacenter = str('datacenter', raw['datacenter']);
  if (datacenter !== undefined && !DATACENTER.test(datacenter)) throw configError(field('datacenter'), `"${datacenter}" is not a datacenter name (letters, digits, . _ -)`);

  const tagsRaw = raw['tags'];
  let tags: string[] = [];
  if (tagsRaw !== undefined && tagsRaw !== null) {
    if (!Array.isArray(tagsRaw)) throw configError(field('tags'), 'must be a list of strings');
    tags = tagsRaw.map((t: unknown, i) => {
      if (typeof t !== 'string' || t === '') throw configError(field(`tags[${i}]`), 'must be a non-empty string');
      return t;
    });
  }

  const metaRaw = raw['meta'];
  const meta: Record<string, string> = {};
  if (metaRaw !== undefined && metaRaw !== null) {
    if (!isObj(metaRaw)) throw configError(field('meta'), 'must be a mapping of keys to strings');
    for (const [k, v] of Object.entries(metaRaw)) {
      const problem = metaKeyProblem(k);
      if (problem !== undefined) throw configError(field(`meta.${k}`), problem);
      if (k === META_NAMESPACE || k === META_NODE_ID) throw configError(field(`meta.${k}`), 'is set by weft itself');
      if (typeof v !== 'string' && typeof v !== 'number' && typeof v !== 'boolean') throw configError(field(`meta.${k}`), 'must be a string');
      const value = String(v);
      if (value.length > META_MAX_VALUE) throw configError(field(`meta.${k}`), `is longer than Consul's ${META_MAX_VALUE} characters`);
      meta[k] = value;
    }
    // weft adds its own keys, plus whatever the node announces: leave room for them.
    if (Object.keys(meta).length > META_MAX_PAIRS - 16) throw configError(field('meta'), `has more than ${META_MAX_PAIRS - 16} keys (Consul allows ${META_MAX_PAIRS} in all)`);
  }

  const checkTtlMs = duration('checkTtl', 6000, 300, 3_600_000);
  const deregisterAfterMs = duration('deregisterCriticalServiceAfter', 60_000, 1000, 7 * 24 * 3_600_000);
  const waitMs = duration('wait', 30_000, 1000, 600_000);
  const requestTimeoutMs = duration('requestTimeout', 5000, 100, 120_000);

  const consulNamespace = str('consulNamespace', raw['consulNamespace']) ?? (env['CONSUL_NAMESPACE'] || undefined);
  if (consulNamespace !== undefined && !CONSUL_NAMESPACE.test(consulNamespace)) {
    throw configError(field('consulNamespace'), `"${consulNamespace}" is not a Consul namespace name (letters, digits, _ and -, at most 63)`);
  }

  const backoffRaw = raw['backoff'];
  if (backoffRaw !== undefined && backoffRaw !== null && !isObj(backoffRaw)) throw configError(field('backoff'), 'must be a mapping with initial and max');
  const b: Record<string, unknown> = isObj(backoffRaw) ? backoffRaw : {};
  for (const k of Object.keys(b)) if (k !== 'initial' && k !== 'max') throw configError(field(`backoff.${k}`), 'unknown field (known: initial, max)');
  const backoffMs = (name: 'initial' | 'max', fallback: number): number => {
    const v = b[name];
    if (v === undefined || v === null) return fallback;
    const ms = parseDuration(v);
    if (ms === undefined || ms < 10 || ms > 600_000) throw configError(field(`backoff.${name}`), `must be a duration from 10ms to 10m (got ${String(v)})`);
    return ms;
  };
  const initialMs = backoffMs('initial', 250);
  const maxMs = backoffMs('max', 5000);
  if (maxMs < initialMs) throw configError(field('backoff.max'), `must not be less than backoff.initial (${fmtMs(initialMs)})`);

  const serviceAddress = str('serviceAddress', raw['serviceAddress']) ?? (env['WEFT_CONSUL_SERVICE_ADDRESS'] || undefined);
  if (serviceAddress !== undefined && !/^[A-Za-z0-9._:-]+$/.test(serviceAddress)) {
    throw configError(field('serviceAddress'), `"${serviceAddress}" is not a host name, an IP address or "agent"`);
  }

  const tls = https || url.protocol === 'https:'
    ? { ...(ca ? { ca } : {}), ...(cert ? { cert } : {}), ...(key ? { key } : {}), ...(serverName ? { serverName } : {}), rejectUnauthorized }
    : undefined;

  return {
    baseUrl, token, tls, datacenter, tags, meta, checkTtlMs, deregisterAfterMs, consulNamespace, waitMs, requestTimeoutMs,
    backoff: { initialMs, maxMs }, serviceAddress,
  };
}

function metaKeyProblem(key: string): string | undefined {
  if (key.length > META_MAX_KEY) return `key is longer than Consul's ${META_MAX_KEY} characters`;
  if (!META_KEY.test(key)) return 'key may only contain letters, digits, _ and - (Consul\'s rule)';
  if (key.startsWith('consul-')) return 'keys starting with "consul-" are reserved by Consul';
  return undefined;
}

function fmtMs(ms: number): string {
  return ms % 60_000 === 0 ? `${ms / 60_000}m` : ms % 1000 === 0 ? `${ms / 1000}s` : `${ms}ms`;
}

/** A duration as Consul (Go's time.ParseDuration) reads it. */
function goDuration(ms: number): string {
  return `${Math.max(1, Math.round(ms))}ms`;
}

/** The Consul service ID of one app on one node: `weft:<nodeId>:<namespace>:<appId>`. */
export function serviceId(nodeId: string, namespace: string, appId: string): string {
  // namespace and appId cannot contain ':', so the ID is unambiguous even when nodeId does.
  return `weft:${nodeId}:${namespace}:${appId}`;
}

export function checkId(id: string): string {
  return `service:${id}`;
}

// ---- the parts of the consul client weft uses (its bundled typings omit ctx, timeout, baseUrl) ----

interface CallOptions {
  ctx?: EventEmitter;
  timeout?: number;
}
interface RawResponse {
  statusCode?: number;
  headers: Record<string, string | string[] | undefined>;
  body?: unknown;
}
interface ConsulClient {
  agent: {
    service: {
      register(o: Record<string, unknown> & CallOptions): Promise<unknown>;
      deregister(o: { id: string } & CallOptions): Promise<unknown>;
    };
    check: {
      pass(o: { id: string } & CallOptions): Promise<unknown>;
      warn(o: { id: string; note?: string } & CallOptions): Promise<unknown>;
    };
  };
  health: { service(o: Record<string, unknown> & CallOptions): Promise<unknown> };
  status: { leader(o?: CallOptions): Promise<unknown> };
  destroy(): void;
}
type ConsulConstructor = new (opts: Record<string, unknown>) => ConsulClient;

/** An event emitter papi (the client's HTTP layer) aborts requests on, when it emits `cancel`. */
class CancelScope extends EventEmitter {
  includeResponse: boolean;
  constructor(includeResponse = false) {
    super();
    this.includeResponse = includeResponse;
    this.setMaxListeners(0);
  }
  cancel(): void {
    this.emit('cancel');
  }
}

interface HealthEntry {
  Node?: { Node?: string; Address?: string };
  Service?: { ID?: string; Service?: string; Address?: string; Port?: number; Meta?: Record<string, string> | null; Tags?: string[] | null };
  Checks?: Array<{ Status?: string }> | null;
}

/** Sleeps, but wakes early (without throwing) when the signal aborts. */
function sleep(ms: number, signal: AbortSignal): Promise<void> {
  if (signal.aborted) return Promise.resolve();
  return new Promise((resolve) => {
    const done = (): void => {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    timer.unref();
    signal.addEventListener('abort', done, { once: true });
  });
}

function statusCodeOf(err: unknown): number | undefined {
  const e = err as { statusCode?: unknown; response?: { statusCode?: unknown } } | null;
  if (e === null || typeof e !== 'object') return undefined;
  const code = e.response?.statusCode;
  return typeof code === 'number' ? code : undefined;
}

function bodyOf(err: unknown): string {
  const body = (err as { response?: { body?: unknown } } | null)?.response?.body;
  if (body === undefined || body === null) return '';
  return (Buffer.isBuffer(body) ? body.toString('utf8') : typeof body === 'string' ? body : JSON.stringify(body)).trim();
}

/** Did the agent answer "I have no such check" (it restarted empty, or the service was reaped)? */
function isUnknownCheck(err: unknown): boolean {
  const code = statusCodeOf(err);
  if (code === 404) return true;
  // Consul before 1.11 answered 500 with this text.
  return code === 500 && /does not have associated TTL|unknown check/i.test(bodyOf(err));
}

export class ConsulResolver implements Resolver {
  readonly scheme = 'consul';
  readonly options: ConsulOptions;
  private readonly ctx: ResolverContext;
  private readonly client: ConsulClient;
  private readonly httpAgent: HttpAgent;
  private readonly keepers = new Map<string, Keeper>();
  private readonly keeping = new Map<string, Promise<void>>();
  private readonly watches = new Map<string, AppWatch>();
  /** Channels (one per registration, one per watched app) whose last exchange failed, with why. */
  private readonly failing = new Map<string, string>();
  /** Service ID → when its TTL was last passed (the send time; 0: the agent forgot it). */
  private readonly renewals = new Map<string, number>();
  private lastError: string | undefined;
  private lastSuccessAt: number | undefined;
  private contacted = false;
  private outage = false;
  private closed = false;
  private readonly stopping = new AbortController();
  private readonly probeScope = new CancelScope();

  constructor(ctx: ResolverContext, env: NodeJS.ProcessEnv = process.env) {
    this.ctx = ctx;
    this.options = parseConsulOptions(ctx.options, env, ctx.configError);
    const o = this.options;
    this.httpAgent = o.tls !== undefined
      ? new HttpsAgent({ keepAlive: true, ...o.tls, ...(o.tls.serverName ? { servername: o.tls.serverName } : {}) })
      : new HttpAgent({ keepAlive: true });
    const headers: Record<string, string> = {};
    if (o.consulNamespace !== undefined) headers['X-Consul-Namespace'] = o.consulNamespace;
    this.client = new (Consul as unknown as ConsulConstructor)({
      baseUrl: `${o.baseUrl}/v1`,
      agent: this.httpAgent,
      headers,
      ...(o.token !== undefined ? { defaults: { token: o.token } } : {}),
    });
  }

  async start(): Promise<void> {
    // One early probe, so a misconfigured address shows in the log at boot; never fatal. If it
    // fails, it goes on in the background until Consul answers (or anything else succeeds), so
    // the status of a node that registers and watches nothing yet still recovers.
    if (!(await this.probe())) void this.reprobe();
  }

  private async probe(): Promise<boolean> {
    try {
      const leader = await this.client.status.leader({ timeout: Math.min(this.options.requestTimeoutMs, 2000), ctx: this.probeScope });
      this.succeeded('probe');
      if (leader === '' || leader === undefined) this.ctx.log('warn', 'consul answers but knows no leader yet; registrations may be delayed', { address: this.options.baseUrl });
      else this.ctx.log('info', 'consul reached', { address: this.options.baseUrl, leader });
      return true;
    } catch (err) {
      this.failed('probe', this.describe(err, 'GET /v1/status/leader'));
      return false;
    }
  }

  private async reprobe(): Promise<void> {
    for (let attempt = 1; !this.closed && this.failing.has('probe'); attempt++) {
      await sleep(this.backoff(attempt), this.stopping.signal);
      if (this.closed || !this.failing.has('probe')) return;
      await this.probe();
    }
  }

  async register(registration: Registration): Promise<void> {
    if (this.closed) return;
    await this.keep(serviceId(registration.nodeId, registration.namespace, registration.appId), registration);
    // An app hosting actors is listed under the shared actors service too (app ids have no dots).
    const actorsId = serviceId(registration.nodeId, registration.namespace, `${registration.appId}.actors`);
    if (Object.hasOwn(registration.meta, ACTOR_TYPES_META)) {
      // Actor membership follows the node, not the app's health (see Registration.appHealthy).
      await this.keep(actorsId, { ...registration, appId: ACTORS_SERVICE, appHealthy: true, meta: { ...registration.meta, [META_ACTOR_APP]: registration.appId } });
    } else if (this.keepers.has(actorsId)) {
      await this.dropId(actorsId);
    }
  }

  /** One keeper change at a time per ID: two racing updates would leave an orphan keeper heartbeating. */
  private keep(id: string, registration: Registration): Promise<void> {
    const next = (this.keeping.get(id) ?? Promise.resolve()).then(() => this.replaceKeeper(id, registration));
    const settled = next.catch(() => {});
    this.keeping.set(id, settled);
    void settled.then(() => {
      if (this.keeping.get(id) === settled) this.keeping.delete(id);
    });
    return next;
  }

  private async replaceKeeper(id: string, registration: Registration): Promise<void> {
    if (this.closed) return;
    const previous = this.keepers.get(id);
    if (previous !== undefined) await previous.stop();
    const keeper = new Keeper(this, id, this.serviceDefinition(id, registration), registration.appHealthy === false);
    this.keepers.set(id, keeper);
    await keeper.start();
  }

  async deregister(registration: Registration): Promise<void> {
    const actorsId = serviceId(registration.nodeId, registration.namespace, `${registration.appId}.actors`);
    if (this.keepers.has(actorsId)) await this.dropId(actorsId);
    await this.dropId(serviceId(registration.nodeId, registration.namespace, registration.appId));
  }

  private async dropId(id: string): Promise<void> {
    const keeper = this.keepers.get(id);
    this.keepers.delete(id);
    this.renewals.delete(id);
    if (keeper !== undefined) await keeper.stop();
    await this.deregisterId(id);
  }

  /** Actor membership: the namespace's entries of the shared actors service, as their apps. */
  watchActors(namespace: string, onChange: (instances: readonly Instance[]) => void): () => void {
    return this.watch({ appId: ACTORS_SERVICE, namespace }, (list) => {
      onChange(list.map((i) => ({ ...i, appId: i.meta[META_ACTOR_APP] ?? i.appId })));
    });
  }

  watch(app: AppKey, onChange: (instances: readonly Instance[]) => void): () => void {
    if (this.closed) return () => {};
    const key = appKey(app.appId, app.namespace);
    let w = this.watches.get(key);
    if (w === undefined) {
      w = new AppWatch(this, { appId: app.appId, namespace: app.namespace });
      this.watches.set(key, w);
      w.start();
    }
    const watch = w;
    watch.add(onChange);
    return () => {
      if (watch.remove(onChange) === 0 && this.watches.get(key) === watch) {
        this.watches.delete(key);
        watch.stop();
      }
    };
  }

  status(): ResolverStatus {
    const healthy = this.contacted && this.failing.size === 0;
    const s: { scheme: string; healthy: boolean; lastError?: string; lastSuccessAt?: number; renewedAt?: number } = { scheme: this.scheme, healthy };
    // The newest failure among the loops still failing says most about why.
    if (!healthy) s.lastError = [...this.failing.values()].at(-1) ?? this.lastError ?? 'consul not contacted yet';
    if (this.lastSuccessAt !== undefined) s.lastSuccessAt = this.lastSuccessAt;
    if (this.renewals.size > 0) s.renewedAt = Math.min(...this.renewals.values());
    return s;
  }

  /** Graceful shutdown: stop watching, deregister everything this node registered. */
  async close(): Promise<void> {
    if (this.closed) return;
    const keepers = this.shutdown();
    await Promise.all(keepers.map(async (k) => {
      await k.stop();
      await this.deregisterId(k.id);
    }));
    this.client.destroy();
  }

  /**
   * Stops every loop and timer without deregistering: what a crashed node leaves behind (its
   * checks lapse to critical after the TTL and Consul reaps them). For tests and fast exits.
   */
  halt(): void {
    if (this.closed) return;
    for (const k of this.shutdown()) void k.stop();
    this.client.destroy();
  }

  private shutdown(): Keeper[] {
    this.closed = true;
    this.stopping.abort();
    this.probeScope.cancel();
    for (const w of this.watches.values()) w.stop();
    this.watches.clear();
    const keepers = [...this.keepers.values()];
    this.keepers.clear();
    this.failing.clear();
    return keepers;
  }

  // ---- shared by keepers and watches ----

  get consul(): ConsulClient {
    return this.client;
  }

  get log(): ResolverContext['log'] {
    return this.ctx.log;
  }

  /** Jittered exponential backoff ("equal jitter"): half fixed, half random, capped. */
  backoff(attempt: number, cap = this.options.backoff.maxMs): number {
    const ceiling = Math.min(cap, this.options.backoff.initialMs * 2 ** Math.min(attempt, 20));
    return ceiling / 2 + Math.random() * (ceiling / 2);
  }

  succeeded(channel: string): void {
    this.contacted = true;
    this.lastSuccessAt = Date.now();
    this.failing.delete(channel);
    this.failing.delete('probe');
    if (this.failing.size === 0 && this.outage) {
      this.outage = false;
      this.ctx.log('info', 'consul is reachable again', { address: this.options.baseUrl });
    }
  }

  failed(channel: string, message: string): void {
    if (this.closed) return;
    this.failing.delete(channel); // re-inserted last: the newest failure
    this.failing.set(channel, message);
    this.lastError = message;
    if (!this.outage) {
      this.outage = true;
      this.ctx.log('warn', 'consul request failed; keeping the last known instances and retrying in the background', { address: this.options.baseUrl, err: message });
    }
  }

  /** A registration's TTL was passed at `sentAt` (0: the agent no longer knows it). */
  renewed(id: string, sentAt: number): void {
    if (this.closed || !this.keepers.has(id)) return;
    this.renewals.set(id, sentAt);
  }

  /** Clears a channel that stopped (its failure no longer says anything about Consul). */
  forget(channel: string): void {
    this.failing.delete(channel);
  }

  describe(err: unknown, what: string): string {
    const code = statusCodeOf(err);
    if (code !== undefined) {
      const body = bodyOf(err).slice(0, 300);
      let text = `consul ${what}: HTTP ${code}${body ? ` ${body}` : ''}`;
      if (code === 403) text += ' (ACL: check resolver.consul.token or CONSUL_HTTP_TOKEN)';
      if (code === 400 && this.options.consulNamespace !== undefined && /namespace/i.test(body)) text += ' (resolver.consul.consulNamespace needs Consul Enterprise)';
      return text;
    }
    const e = err as { code?: unknown; message?: unknown; errors?: unknown; isTimeout?: unknown } | null;
    if (e?.isTimeout === true) return `consul ${what}: no answer from ${this.options.baseUrl} in time`;
    let detail = typeof e?.code === 'string' ? e.code : '';
    if (Array.isArray(e?.errors) && e.errors.length > 0) {
      const first = e.errors[0] as { code?: unknown; message?: unknown };
      detail = typeof first.code === 'string' ? first.code : String(first.message ?? detail);
    }
    let message = typeof e?.message === 'string' ? (e.message.replace(/^consul: [a-z.]+: /, '').split('\n')[0] ?? '') : String(err);
    const alert = /alert ([a-z ]+?)(?::|$)/i.exec(message);
    if (alert !== null) message = `the server ended the TLS handshake: ${alert[1]}`;
    const errCode = typeof e?.code === 'string' ? e.code : '';
    if (alert !== null || /CERT|SSL|TLS/.test(errCode)) {
      return `consul ${what}: TLS with ${this.options.baseUrl} failed: ${message || detail} (check resolver.consul.tls or CONSUL_CACERT, CONSUL_CLIENT_CERT, CONSUL_CLIENT_KEY)`;
    }
    return `consul ${what}: cannot reach ${this.options.baseUrl}: ${message || detail}`;
  }

  private serviceDefinition(id: string, r: Registration): Record<string, unknown> {
    const o = this.options;
    const meta: Record<string, string> = { ...o.meta };
    const dropped: string[] = [];
    for (const [k, v] of Object.entries(r.meta)) {
      if (metaKeyProblem(k) !== undefined || k === META_NAMESPACE || k === META_NODE_ID || String(v).length > META_MAX_VALUE) dropped.push(k);
      else meta[k] = String(v);
    }
    if (dropped.length > 0) this.ctx.log('warn', 'consul: meta keys Consul would refuse were left out of the registration', { appId: r.appId, keys: dropped });
    meta[META_NAMESPACE] = r.namespace;
    meta[META_NODE_ID] = r.nodeId;
    const tags = [...new Set([...o.tags, ...(r.tags ?? [])])];
    const address = o.serviceAddress === 'agent' ? {} : { address: o.serviceAddress ?? r.address };
    return {
      id,
      name: r.appId,
      ...address,
      port: r.port,
      tags,
      meta,
      check: {
        checkid: checkId(id),
        name: 'weft node heartbeat',
        notes: `passed by weft node ${r.nodeId} every ${fmtMs(Math.floor(o.checkTtlMs / 3))}`,
        ttl: goDuration(o.checkTtlMs),
        status: 'passing',
        deregistercriticalserviceafter: goDuration(o.deregisterAfterMs),
      },
    };
  }

  private async deregisterId(id: string): Promise<void> {
    try {
      await this.client.agent.service.deregister({ id, timeout: this.options.requestTimeoutMs });
    } catch (err) {
      if (statusCodeOf(err) === 404) return; // already gone: reaped, or the agent restarted
      // Not fatal: the check lapses and Consul reaps the entry after deregisterCriticalServiceAfter.
      this.ctx.log('warn', 'consul deregistration failed; the entry will lapse and be reaped', { serviceId: id, err: this.describe(err, `PUT /v1/agent/service/deregister/${id}`) });
    }
  }
}

/** Keeps one registration alive: register, pass the TTL check every TTL/3, re-register when needed. */
class Keeper {
  readonly id: string;
  private readonly resolver: ConsulResolver;
  private readonly definition: Record<string, unknown>;
  /** The app failed its health checks: heartbeats set the check to warning, out of passing-only queries. */
  private readonly appUnhealthy: boolean;
  private readonly abort = new AbortController();
  private readonly scope = new CancelScope();
  private loop: Promise<void> | null = null;

  constructor(resolver: ConsulResolver, id: string, definition: Record<string, unknown>, appUnhealthy: boolean) {
    this.resolver = resolver;
    this.id = id;
    this.definition = definition;
    this.appUnhealthy = appUnhealthy;
  }

  /** Makes the first attempt (awaited, never throwing), then keeps going in the background. */
  async start(): Promise<void> {
    const first = this.registerOnce();
    this.loop = first.then((ok) => this.run(ok));
    await first;
  }

  async stop(): Promise<void> {
    this.abort.abort();
    this.scope.cancel();
    this.resolver.forget(this.channel);
    await this.loop;
  }

  private get channel(): string {
    return `register:${this.id}`;
  }

  private get ttl(): number {
    return this.resolver.options.checkTtlMs;
  }

  /**
   * Registers, then passes the check at once: the agent keeps the status an existing check had
   * (a restarted node's lapsed check stays critical whatever the registration says), so only a
   * pass makes the entry routable again without waiting a heartbeat interval.
   */
  private async registerOnce(): Promise<boolean> {
    if (this.abort.signal.aborted) return false;
    try {
      await this.resolver.consul.agent.service.register({ ...this.definition, timeout: this.resolver.options.requestTimeoutMs, ctx: this.scope });
      this.resolver.succeeded(this.channel);
    } catch (err) {
      if (!this.abort.signal.aborted) this.resolver.failed(this.channel, this.resolver.describe(err, 'PUT /v1/agent/service/register'));
      return false;
    }
    return (await this.pass()) === 'ok';
  }

  /**
   * One TTL heartbeat. Its send time is when the agent's TTL restarts at the latest: the node's
   * lease. An app that failed its health checks is heartbeated as `warning`: out of every
   * passing-only query, yet never critical, so Consul does not reap the node's entry.
   */
  private async pass(): Promise<'ok' | 'unknown' | 'failed'> {
    const sent = Date.now();
    const options = { id: checkId(this.id), timeout: this.resolver.options.requestTimeoutMs, ctx: this.scope };
    try {
      if (this.appUnhealthy) await this.resolver.consul.agent.check.warn({ ...options, note: 'the app failed its health checks (weft enableAppHealthCheck)' });
      else await this.resolver.consul.agent.check.pass(options);
      this.resolver.succeeded(this.channel);
      this.resolver.renewed(this.id, sent);
      return 'ok';
    } catch (err) {
      if (this.abort.signal.aborted) return 'failed';
      if (isUnknownCheck(err)) {
        // The agent forgot the registration: whoever watches has seen this node go.
        this.resolver.renewed(this.id, 0);
        this.resolver.succeeded(this.channel);
        return 'unknown';
      }
      this.resolver.failed(this.channel, this.resolver.describe(err, `PUT /v1/agent/check/pass/${checkId(this.id)}`));
      return 'failed';
    }
  }

  private async run(registeredAtStart: boolean): Promise<void> {
    const signal = this.abort.signal;
    let registered = registeredAtStart;
    let attempt = 0;
    // While failing, retry faster than the TTL so the check is refreshed as soon as Consul is back.
    const cap = Math.max(50, Math.min(this.resolver.options.backoff.maxMs, this.ttl / 3));
    while (!signal.aborted) {
      await sleep(registered && attempt === 0 ? this.ttl / 3 : this.resolver.backoff(attempt, cap), signal);
      if (signal.aborted) return;
      if (!registered) {
        // After any failure the next attempt is a full (idempotent) registration: it also
        // covers an agent that restarted and forgot us while it was unreachable.
        registered = await this.registerOnce();
        attempt = registered ? 0 : attempt + 1;
        continue;
      }
      const passed = await this.pass();
      if (signal.aborted) return;
      if (passed === 'ok') {
        attempt = 0;
      } else if (passed === 'unknown') {
        this.resolver.log('info', 'consul agent no longer knows this registration (restarted or reaped); registering again', { serviceId: this.id });
        registered = await this.registerOnce();
        attempt = registered ? 0 : 1;
      } else {
        registered = false;
        attempt = 1;
      }
    }
  }
}

function sortInstances(list: Instance[]): Instance[] {
  return list.sort((a, b) => (a.nodeId < b.nodeId ? -1 : a.nodeId > b.nodeId ? 1 : a.port - b.port));
}

/** One blocking-query loop per watched app, shared by its listeners. */
class AppWatch {
  private readonly resolver: ConsulResolver;
  private readonly app: AppKey;
  private readonly listeners = new Set<(list: readonly Instance[]) => void>();
  private readonly abort = new AbortController();
  private readonly scope = new CancelScope(true);
  /** The last list read from Consul (the last known good one during an outage). */
  private list: readonly Instance[] | null = null;
  private listKey = '';
  private index = 0n;
  /**
   * After an outage (or an agent that came back with its index started over), instances the
   * agent no longer lists are kept until this time: a restarted agent forgets every service
   * and the nodes register again within a TTL, so an empty answer then is not news.
   */
  private graceUntil: number | undefined;
  private interrupted = false;

  constructor(resolver: ConsulResolver, app: AppKey) {
    this.resolver = resolver;
    this.app = app;
  }

  private get channel(): string {
    return `watch:${appKey(this.app.appId, this.app.namespace)}`;
  }

  add(listener: (list: readonly Instance[]) => void): void {
    this.listeners.add(listener);
    const known = this.list;
    if (known !== null) {
      setImmediate(() => {
        if (this.listeners.has(listener) && this.list === known) listener(known);
      });
    }
  }

  remove(listener: (list: readonly Instance[]) => void): number {
    this.listeners.delete(listener);
    return this.listeners.size;
  }

  start(): void {
    void this.run();
  }

  stop(): void {
    this.abort.abort();
    this.scope.cancel();
    this.resolver.forget(this.channel);
  }

  private async run(): Promise<void> {
    const signal = this.abort.signal;
    const o = this.resolver.options;
    let attempt = 0;
    const filter = `Service.Meta.${META_NAMESPACE} == ${JSON.stringify(this.app.namespace)}`;
    while (!signal.aborted) {
      const asked = this.index;
      const started = Date.now();
      let res: RawResponse;
      let body: unknown;
      try {
        const query: Record<string, unknown> & CallOptions = {
          service: this.app.appId,
          passing: true,
          filter,
          ctx: this.scope,
          // Consul may hold a blocking query up to wait + wait/16; leave room for the network.
          timeout: asked > 0n ? o.waitMs + o.waitMs / 16 + o.requestTimeoutMs : o.requestTimeoutMs,
        };
        if (o.datacenter !== undefined) query['dc'] = o.datacenter;
        if (asked > 0n) {
          // While holding instances back after an outage, come back when the grace ends.
          const wait = this.graceUntil === undefined ? o.waitMs : Math.max(100, Math.min(o.waitMs, this.graceUntil - Date.now()));
          query['index'] = asked.toString();
          query['wait'] = goDuration(wait);
          query['timeout'] = wait + wait / 16 + o.requestTimeoutMs;
        }
        const answer = (await this.resolver.consul.health.service(query)) as [RawResponse, unknown];
        [res, body] = answer;
      } catch (err) {
        if (signal.aborted) return;
        this.resolver.failed(this.channel, this.resolver.describe(err, `GET /v1/health/service/${this.app.appId}`));
        // Start over with a non-blocking read: after an agent restart the old index means nothing.
        this.index = 0n;
        this.interrupted = true;
        await sleep(this.resolver.backoff(attempt++), signal);
        continue;
      }
      if (signal.aborted) return;
      this.resolver.succeeded(this.channel);
      attempt = 0;

      const header = res.headers['x-consul-index'];
      let next = 0n;
      try {
        next = BigInt(Array.isArray(header) ? (header[0] ?? '0') : (header ?? '0'));
      } catch {
        next = 0n;
      }
      // Consul's rules for blocking clients: an index that went backwards starts over from 0,
      // and an index below 1 is taken as 1 so the next query blocks.
      if (next < asked) {
        next = 0n;
        this.interrupted = true;
      } else if (next < 1n) next = 1n;
      this.index = next;
      if (this.interrupted) {
        this.interrupted = false;
        if (this.list !== null && this.list.length > 0) this.graceUntil = Date.now() + o.checkTtlMs;
      }

      const fresh = this.toInstances(body);
      if (this.graceUntil !== undefined && Date.now() < this.graceUntil && this.list !== null) {
        const seen = new Set(fresh.map((i) => i.nodeId));
        const held = this.list.filter((i) => !seen.has(i.nodeId));
        if (held.length === 0) this.graceUntil = undefined;
        this.deliver(held.length === 0 ? fresh : sortInstances([...fresh, ...held]));
      } else {
        this.graceUntil = undefined;
        this.deliver(fresh);
      }

      // A query that came back at once without news (a misbehaving proxy, or no index
      // support) must not spin.
      if (asked > 0n && next === asked && Date.now() - started < 50) await sleep(this.resolver.backoff(1), signal);
    }
  }

  private toInstances(body: unknown): Instance[] {
    const entries = Array.isArray(body) ? (body as HealthEntry[]) : [];
    const out: Instance[] = [];
    for (const e of entries) {
      const s = e.Service;
      if (s === undefined || s.Service !== this.app.appId) continue;
      const meta = s.Meta ?? {};
      // Only weft's registrations of this namespace: a same-named service registered by
      // something else (or another namespace) is never routed to.
      if (meta[META_NAMESPACE] !== this.app.namespace) continue;
      if ((e.Checks ?? []).some((c) => c.Status !== 'passing')) continue;
      const address = s.Address || e.Node?.Address || '';
      const port = s.Port ?? 0;
      if (address === '' || !Number.isInteger(port) || port < 1 || port > 65535) continue;
      const rest: Record<string, string> = {};
      for (const [k, v] of Object.entries(meta)) if (k !== META_NAMESPACE && k !== META_NODE_ID) rest[k] = v;
      out.push({
        appId: this.app.appId,
        namespace: this.app.namespace,
        nodeId: meta[META_NODE_ID] || s.ID || `${address}:${port}`,
        address,
        port,
        meta: rest,
      });
    }
    return sortInstances(out);
  }

  private deliver(list: Instance[]): void {
    const key = JSON.stringify(list);
    if (this.list !== null && key === this.listKey) return;
    const frozen = Object.freeze(list);
    this.list = frozen;
    this.listKey = key;
    for (const l of [...this.listeners]) {
      try {
        l(frozen);
      } catch (err) {
        this.resolver.log('error', 'a resolver listener threw', { err: (err as Error).message });
      }
    }
  }
}

export function setup(): void {
  registerResolver('consul', (ctx) => new ConsulResolver(ctx));
}

setup();
