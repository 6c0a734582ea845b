/**
 * The node's configuration: one YAML file (or the flags of `weft run`), validated once at
 * start. Every problem names its field (`apps[0].appPort: must be an integer from 1 to 65535`);
 * the result is deeply frozen and every field is filled.
 */
import { readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, join } from 'node:path';
import { parseYaml } from './yaml.ts';
import { WeftError } from './errors.ts';
import { parseDuration, parseSize } from './duration.ts';
import { parseAccessControl } from './security/acl.ts';
import { TRUST_DOMAIN } from './security/spiffe.ts';
import { APP_ID, NAMESPACE } from './appid.ts';
import { tracingConfig, type TracingConfig } from './observability/tracing-config.ts';

export interface AppConfig {
  readonly appId: string;
  readonly namespace: string;
  /** Port of the app's own HTTP server; undefined for a caller-only app. */
  readonly appPort: number | undefined;
  readonly appHost: string;
  /**
   * How the node talks to the app (Dapr's `--app-protocol` values): `http` (HTTP/1.1), `https`
   * (HTTP/1.1 over TLS), `h2c` (HTTP/2 cleartext), `grpc` (Dapr's AppCallback over gRPC), `grpcs`
   * (the same over TLS). With TLS the app's certificate is not verified, as in Dapr.
   */
  readonly appProtocol: AppProtocol;
  /** Max concurrent connections from the node to this app. */
  readonly appMaxConnections: number;
  /**
   * A Dapr HTTP API listener of this app's own, so the node knows which app is calling.
   * The node's main listener (`http.port`) speaks for the first app listed.
   */
  readonly httpPort: number | undefined;
  /** This app's own access policy (replaces `security.accessControl` for calls to it). */
  readonly accessControl: AccessControlSource | undefined;
  /** Dapr's app health checks (`--enable-app-health-check` and friends); src/appchannel/health.ts. */
  readonly health: AppHealthConfig;
}

export interface AppHealthConfig {
  readonly enabled: boolean;
  /** Path probed with GET; a 2xx answer is a success. */
  readonly path: string;
  readonly intervalMs: number;
  readonly timeoutMs: number;
  /** Consecutive failures before the app counts as unhealthy. */
  readonly threshold: number;
}

export const APP_PROTOCOLS = ['http', 'https', 'h2c', 'grpc', 'grpcs'] as const;
export type AppProtocol = (typeof APP_PROTOCOLS)[number];

/**
 * Dapr `Configuration` access control: the path of a YAML file (a whole Configuration document,
 * or its `accessControl` mapping), or the mapping inline. Checked at validation, parsed again
 * when the node starts (src/security/acl.ts).
 */
export type AccessControlSource =
  | { readonly file: string }
  | { readonly inline: Readonly<Record<string, unknown>>; readonly field: string };

export interface SecurityConfig {
  /**
   * The CA directory (issuer.crt, issuer.key, trust-bundle.pem), from `security.caDir` or
   * `WEFT_CA_DIR`; with the local resolver and neither set, `<registry dir>/ca`, created on
   * first use. Undefined only in plaintext mode.
   */
  readonly caDir: string | undefined;
  /** True when caDir is the local resolver's default (created if missing). */
  readonly caDirDefaulted: boolean;
  /** SPIFFE trust domain; undefined means the CA's own (`weft ca init --trust-domain`, default `public`). */
  readonly trustDomain: string | undefined;
  /** Lifetime of app (workload) certificates, ms; renewed at `renewFraction` of it. */
  readonly workloadTtl: number;
  /** Lifetime of the node's own certificate, ms. */
  readonly nodeTtl: number;
  /** Fraction of a certificate's lifetime after which it is renewed (default ½, like Dapr's). */
  readonly renewFraction: number;
  /** No TLS between nodes (explicit only): the caller's node vouches for the caller. */
  readonly plaintext: boolean;
  /** Access policy for calls to every app this node serves (an app's own replaces it). */
  readonly accessControl: AccessControlSource | undefined;
}

export interface ListenConfig {
  readonly host: string;
  readonly port: number;
}

export interface NodeConfig {
  /** Unique per node; undefined derives `<hostname>-<peer port>` once the port is bound. */
  readonly nodeId: string | undefined;
  readonly namespace: string;
  /** The address other nodes use to reach this node's peer server. */
  readonly advertiseAddress: string;
  /** `maxConnections`: connections each HTTP API listener keeps open at once (one more is answered 503 WEFT_OVERLOADED and closed). */
  readonly http: ListenConfig & { readonly maxConnections: number };
  readonly grpc: ListenConfig & { readonly enabled: boolean };
  readonly peer: ListenConfig;
  readonly metrics: ListenConfig & { readonly enabled: boolean };
  /** Worker threads owning the outbound peer connections; 0 runs them on the main thread. */
  readonly workers: number;
  readonly apiToken: string | undefined;
  readonly maxBodySize: number;
  readonly timeouts: {
    /** Default deadline of a call from the caller's node to the target app's answer. */
    readonly invoke: number;
    /** Time allowed for calls in flight when the node stops. */
    readonly shutdown: number;
    /** Time a client may take to send a request head to the HTTP API (408 past it). */
    readonly headers: number;
  };
  readonly apps: readonly AppConfig[];
  readonly resolver: {
    readonly type: string;
    readonly options: Readonly<Record<string, unknown>>;
  };
  readonly logLevel: 'debug' | 'info' | 'warn' | 'error' | 'silent';
  /** Dapr Resiliency documents (file paths), applied to calls from this node's apps. */
  readonly resiliency: readonly string[];
  /** Retries allowed per target app and outbound thread: ratio × calls + minPerSecond. */
  readonly retryBudget: { readonly ratio: number; readonly minPerSecond: number };
  readonly outlierDetection: {
    readonly consecutiveFailures: number;
    readonly baseEjectionMs: number;
    readonly maxEjectionMs: number;
    readonly maxEjectionPercent: number;
  };
  readonly security: SecurityConfig;
  /** Per-target routing state: how long watches of targets no call names live, and how many unknown ones. */
  readonly routing: { readonly idleMs: number; readonly emptyIdleMs: number; readonly maxEmpty: number };
  /**
   * Directories (or files) of Dapr `Component` documents: the actor state store is the
   * `state.sqlite` / `state.postgresql` component with `actorStateStore: "true"` (docs/state.md).
   */
  readonly resourcesPaths: readonly string[];
  /** Traces (docs/tracing.md): Dapr `Configuration` spec.tracing and the OTEL_* environment. */
  readonly tracing: TracingConfig;
  /** Actor placement and turns (docs/actors.md). */
  readonly actors: {
    /** A turn running longer is released and its caller fails. */
    readonly callTimeoutMs: number;
    /** Serve no actor when the resolver has not answered for this long. */
    readonly fenceMs: number;
    /** A member gone from the registry counts as gone only after this (default fenceTimeout + 1 s). */
    readonly lockDelayMs: number;
    /** How long a leaving node stays registered after its acknowledgement, so others see it. */
    readonly leaveLingerMs: number;
  };
}

/** What the lock delay adds to the fence timeout: the fencing tick (200 ms), the DELETE of a fenced actor (500 ms), slack. */
export const FENCE_MARGIN_MS = 1000;

export const DEFAULTS = {
  namespace: 'default',
  host: '127.0.0.1',
  httpPort: 3500,
  grpcPort: 50001,
  peerPort: 50002,
  metricsPort: 9090,
  workers: 0,
  maxBodySize: 4 * 1024 * 1024,
  invokeTimeout: 60_000,
  shutdownTimeout: 10_000,
  headersTimeout: 60_000,
  appMaxConnections: 128,
  /** nginx's worker_connections scale: far above what one host's apps need, far below what exhausts a process's file descriptors. */
  httpMaxConnections: 1024,
  resolver: 'local',
  logLevel: 'info',
  certTtl: 24 * 3_600_000,
} as const;

const LOG_LEVELS = ['debug', 'info', 'warn', 'error', 'silent'] as const;

export function configError(field: string, problem: string): WeftError {
  return new WeftError('WEFT_CONFIG', `${field}: ${problem}`);
}

type Obj = Record<string, unknown>;

function isObj(v: unknown): v is Obj {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Reads fields of one YAML mapping, naming each by its path when it is wrong. */
class Fields {
  readonly path: string;
  readonly obj: Obj;
  private readonly known: Set<string>;

  constructor(path: string, value: unknown, known: readonly string[]) {
    this.path = path;
    if (value === undefined || value === null) value = {};
    if (!isObj(value)) throw configError(path || '(top level)', 'must be a mapping');
    this.obj = value;
    this.known = new Set(known);
    for (const key of Object.keys(value)) {
      if (!this.known.has(key)) throw configError(this.name(key), `unknown field (known: ${known.join(', ')})`);
    }
  }

  name(key: string): string {
    return this.path ? `${this.path}.${key}` : key;
  }

  string(key: string, fallback: string, pattern?: RegExp, what?: string): string {
    const v = this.obj[key];
    if (v === undefined || v === null) return fallback;
    if (typeof v !== 'string' || v === '') throw configError(this.name(key), 'must be a non-empty string');
    if (pattern && !pattern.test(v)) throw configError(this.name(key), `"${v}" is not ${what ?? `of the form ${pattern}`}`);
    return v;
  }

  optString(key: string): string | undefined {
    const v = this.obj[key];
    if (v === undefined || v === null) return undefined;
    if (typeof v !== 'string' || v === '') throw configError(this.name(key), 'must be a non-empty string');
    return v;
  }

  int(key: string, fallback: number, min: number, max: number): number {
    const v = this.obj[key];
    if (v === undefined || v === null) return fallback;
    const n = typeof v === 'string' && /^\d+$/.test(v) ? Number(v) : v;
    if (typeof n !== 'number' || !Number.isInteger(n) || n < min || n > max) {
      throw configError(this.name(key), `must be an integer from ${min} to ${max} (got ${JSON.stringify(v)})`);
    }
    return n;
  }

  port(key: string, fallback: number): number {
    return this.int(key, fallback, 0, 65535);
  }

  bool(key: string, fallback: boolean): boolean {
    const v = this.obj[key];
    if (v === undefined || v === null) return fallback;
    if (typeof v !== 'boolean') throw configError(this.name(key), 'must be true or false');
    return v;
  }

  duration(key: string, fallback: number): number {
    const v = this.obj[key];
    if (v === undefined || v === null) return fallback;
    const ms = parseDuration(v);
    if (ms === undefined) throw configError(this.name(key), `"${String(v)}" is not a duration (e.g. 500ms, 5s, 1m30s, PT5S)`);
    return ms;
  }

  /** A bare number in `unitMs` (as a CLI flag gives it), or a duration; from `min` to `max` ms. */
  durationIn(key: string, unitMs: number, fallback: number, min: number, max: number): number {
    const v = this.obj[key];
    if (v === undefined || v === null) return fallback;
    const bare = typeof v === 'number' ? v : typeof v === 'string' && /^\d+$/.test(v.trim()) ? Number(v) : undefined;
    const ms = bare !== undefined ? bare * unitMs : parseDuration(v);
    const unit = unitMs === 1000 ? 'seconds' : 'milliseconds';
    if (ms === undefined || !Number.isFinite(ms)) throw configError(this.name(key), `"${String(v)}" is not a number of ${unit} or a duration (e.g. ${unitMs === 1000 ? '5 or 5s' : '500 or 500ms'})`);
    if (ms < min || ms > max) throw configError(this.name(key), `must be from ${min} ms to ${max} ms (got ${JSON.stringify(v)})`);
    return ms;
  }

  size(key: string, fallback: number): number {
    const v = this.obj[key];
    if (v === undefined || v === null) return fallback;
    const n = parseSize(v);
    if (n === undefined || n <= 0) throw configError(this.name(key), `"${String(v)}" is not a size (e.g. 4Mi, 512Ki, 1048576)`);
    return n;
  }

  oneOf<T extends string>(key: string, fallback: T, values: readonly T[]): T {
    const v = this.obj[key];
    if (v === undefined || v === null) return fallback;
    if (typeof v !== 'string' || !(values as readonly string[]).includes(v)) {
      throw configError(this.name(key), `must be one of ${values.join(', ')} (got ${JSON.stringify(v)})`);
    }
    return v as T;
  }

  sub(key: string, known: readonly string[]): Fields {
    return new Fields(this.name(key), this.obj[key], known);
  }
}

function listen(f: Fields, key: string, port: number, host: string, more: readonly string[] = []): Fields & { listen: ListenConfig } {
  const sub = f.sub(key, ['host', 'port', 'enabled', ...more]);
  return Object.assign(sub, { listen: { host: sub.string('host', host), port: sub.port('port', port) } });
}

/** Validates a parsed YAML document (or the equivalent object built from CLI flags). */
export function validateConfig(raw: unknown, env: NodeJS.ProcessEnv = process.env): NodeConfig {
  const top = new Fields('', raw, [
    'nodeId', 'namespace', 'advertiseAddress', 'http', 'grpc', 'peer', 'metrics', 'workers', 'apiToken',
    'maxBodySize', 'timeouts', 'apps', 'resolver', 'logLevel', 'resiliency', 'retryBudget', 'outlierDetection',
    'security', 'actors', 'routing', 'resourcesPath', 'tracing',
  ]);
  const namespace = top.string('namespace', DEFAULTS.namespace, NAMESPACE, 'a valid namespace (letters, digits, - and _, at most 63)');
  const http = listen(top, 'http', DEFAULTS.httpPort, DEFAULTS.host, ['maxConnections']);
  const grpc = listen(top, 'grpc', DEFAULTS.grpcPort, DEFAULTS.host);
  const peer = listen(top, 'peer', DEFAULTS.peerPort, DEFAULTS.host);
  const metrics = listen(top, 'metrics', DEFAULTS.metricsPort, DEFAULTS.host);
  const advertiseAddress = top.string('advertiseAddress', peer.listen.host === '0.0.0.0' || peer.listen.host === '::' ? '127.0.0.1' : peer.listen.host);

  const timeouts = top.sub('timeouts', ['invoke', 'shutdown', 'headers']);

  const appsRaw = top.obj['apps'] ?? [];
  if (!Array.isArray(appsRaw)) throw configError('apps', 'must be a list of apps');
  const seen = new Set<string>();
  const apps = appsRaw.map((entry, i): AppConfig => {
    const a = new Fields(`apps[${i}]`, entry, [
      'appId', 'namespace', 'appPort', 'appHost', 'appProtocol', 'appMaxConnections', 'httpPort', 'accessControl',
      'enableAppHealthCheck', 'appHealthCheckPath', 'appHealthProbeInterval', 'appHealthProbeTimeout', 'appHealthThreshold',
    ]);
    if (a.obj['appId'] === undefined) throw configError(`apps[${i}].appId`, 'is required');
    const appId = a.string('appId', '', APP_ID, 'a valid app id (letters, digits, - and _, at most 63; no dots)');
    const ns = a.string('namespace', namespace, NAMESPACE, 'a valid namespace');
    const key = `${ns}/${appId}`;
    if (seen.has(key)) throw configError(`apps[${i}].appId`, `"${appId}" is listed twice in namespace ${ns}`);
    seen.add(key);
    const appPort = a.obj['appPort'] === undefined || a.obj['appPort'] === null ? undefined : a.int('appPort', 0, 1, 65535);
    const health = appHealth(a);
    if (health.enabled && appPort === undefined) throw configError(`apps[${i}].enableAppHealthCheck`, 'needs appPort: a caller-only app has nothing to probe');
    return {
      appId,
      namespace: ns,
      appPort,
      appHost: a.string('appHost', DEFAULTS.host),
      appProtocol: a.oneOf('appProtocol', 'http', APP_PROTOCOLS),
      appMaxConnections: a.int('appMaxConnections', DEFAULTS.appMaxConnections, 1, 10_000),
      httpPort: a.obj['httpPort'] === undefined || a.obj['httpPort'] === null ? undefined : a.port('httpPort', 0),
      accessControl: accessControlSource(a, 'accessControl'),
      health,
    };
  });

  const resolverRaw = top.obj['resolver'];
  const resolver = typeof resolverRaw === 'string' ? new Fields('resolver', { type: resolverRaw }, ['type']) : new Fields('resolver', resolverRaw, ['type', 'local', 'static', 'consul']);
  const resolverType = resolver.string('type', DEFAULTS.resolver);
  const resolverOptions = resolver.obj[resolverType];
  if (resolverOptions !== undefined && !isObj(resolverOptions)) throw configError(`resolver.${resolverType}`, 'must be a mapping');

  const resiliencyRaw = top.obj['resiliency'] ?? [];
  const resiliency = (Array.isArray(resiliencyRaw) ? resiliencyRaw : [resiliencyRaw]).map((v, i) => {
    if (typeof v !== 'string' || v === '') throw configError(Array.isArray(resiliencyRaw) ? `resiliency[${i}]` : 'resiliency', 'must be the path of a Resiliency YAML file');
    return v;
  });
  const resourcesRaw = top.obj['resourcesPath'] ?? [];
  const resourcesPaths = (Array.isArray(resourcesRaw) ? resourcesRaw : [resourcesRaw]).map((v, i) => {
    if (typeof v !== 'string' || v === '') throw configError(Array.isArray(resourcesRaw) ? `resourcesPath[${i}]` : 'resourcesPath', 'must be the path of a directory of Dapr Component YAML files');
    return v;
  });
  const budget = top.sub('retryBudget', ['ratio', 'minPerSecond']);
  const ratio = budget.obj['ratio'] ?? 0.2;
  if (typeof ratio !== 'number' || !(ratio >= 0 && ratio <= 10)) throw configError('retryBudget.ratio', 'must be a number from 0 to 10 (0.2 = retries up to 20% of calls)');
  const outlier = top.sub('outlierDetection', ['consecutiveFailures', 'baseEjectionTime', 'maxEjectionTime', 'maxEjectionPercent']);
  const baseEjectionMs = outlier.duration('baseEjectionTime', 5000);
  const maxEjectionMs = outlier.duration('maxEjectionTime', 60_000);
  if (baseEjectionMs <= 0) throw configError('outlierDetection.baseEjectionTime', 'must be more than 0');
  if (maxEjectionMs < baseEjectionMs) throw configError('outlierDetection.maxEjectionTime', 'must be at least baseEjectionTime');
  const apiToken = top.optString('apiToken') ?? (env['DAPR_API_TOKEN'] || undefined);
  const security = securityConfig(top, resolverType, resolverOptions as Obj | undefined, env);
  const routingField = top.sub('routing', ['idleTimeout', 'unknownIdleTimeout', 'maxUnknown']);
  const routing = {
    idleMs: routingField.duration('idleTimeout', 300_000),
    emptyIdleMs: routingField.duration('unknownIdleTimeout', 10_000),
    maxEmpty: routingField.int('maxUnknown', 256, 1, 100_000),
  };
  const actorsField = top.sub('actors', ['callTimeout', 'fenceTimeout', 'lockDelay', 'leaveLinger']);
  const actorCallTimeoutMs = actorsField.duration('callTimeout', 60_000);
  const fenceMs = actorsField.duration('fenceTimeout', 5000);
  if (fenceMs < 500) throw configError('actors.fenceTimeout', 'must be at least 500ms (and more than the resolver\'s heartbeat interval)');
  // A fenced node cuts its running turns at once (docs/actors.md): the lock delay covers the
  // fence timeout, the 200 ms fencing tick and the app's DELETE, not the actor call timeout.
  const lockDelayMs = actorsField.duration('lockDelay', fenceMs + FENCE_MARGIN_MS);
  if (lockDelayMs < fenceMs + FENCE_MARGIN_MS) throw configError('actors.lockDelay', `must be at least fenceTimeout + ${FENCE_MARGIN_MS / 1000}s (a cut-off owner must have stopped before its actors move)`);
  const config: NodeConfig = {
    nodeId: top.obj['nodeId'] === undefined ? undefined : top.string('nodeId', '', /^[A-Za-z0-9._:-]+$/, 'a valid node id (letters, digits, . _ : -)'),
    namespace,
    advertiseAddress,
    http: { ...http.listen, maxConnections: http.int('maxConnections', DEFAULTS.httpMaxConnections, 1, 1_000_000) },
    grpc: { ...grpc.listen, enabled: grpc.bool('enabled', true) },
    peer: peer.listen,
    metrics: { ...metrics.listen, enabled: metrics.bool('enabled', true) },
    workers: top.int('workers', DEFAULTS.workers, 0, 64),
    apiToken,
    maxBodySize: top.size('maxBodySize', DEFAULTS.maxBodySize),
    timeouts: {
      invoke: timeouts.duration('invoke', DEFAULTS.invokeTimeout),
      shutdown: timeouts.duration('shutdown', DEFAULTS.shutdownTimeout),
      headers: timeouts.duration('headers', DEFAULTS.headersTimeout),
    },
    apps,
    resolver: { type: resolverType, options: (resolverOptions as Obj | undefined) ?? {} },
    logLevel: top.oneOf('logLevel', DEFAULTS.logLevel, LOG_LEVELS),
    resiliency,
    routing,
    retryBudget: { ratio, minPerSecond: budget.int('minPerSecond', 10, 0, 1_000_000) },
    outlierDetection: {
      consecutiveFailures: outlier.int('consecutiveFailures', 5, 1, 1000),
      baseEjectionMs,
      maxEjectionMs,
      maxEjectionPercent: outlier.int('maxEjectionPercent', 50, 0, 100),
    },
    security,
    resourcesPaths,
    tracing: tracingConfig(top.obj['tracing'], env),
    actors: { callTimeoutMs: actorCallTimeoutMs, fenceMs, lockDelayMs, leaveLingerMs: actorsField.duration('leaveLinger', 1000) },
  };
  return deepFreeze(config);
}

/**
 * An app's health check settings, named and defaulted as daprd's flags: the interval in seconds
 * and the timeout in milliseconds when given as bare numbers (as the flags take them), or as
 * durations (`5s`, `500ms`).
 */
function appHealth(a: Fields): AppHealthConfig {
  const path = a.string('appHealthCheckPath', '/healthz');
  if (!/^\/[\x21-\x7e]*$/.test(path)) throw configError(a.name('appHealthCheckPath'), `"${path}" must be a path starting with / (printable ASCII, no spaces)`);
  const intervalMs = a.durationIn('appHealthProbeInterval', 1000, 5000, 1000, 3_600_000);
  const timeoutMs = a.durationIn('appHealthProbeTimeout', 1, 500, 1, 600_000);
  if (timeoutMs > intervalMs) throw configError(a.name('appHealthProbeTimeout'), `must not exceed appHealthProbeInterval (${intervalMs} ms): a probe must end before the next starts`);
  return {
    enabled: a.bool('enableAppHealthCheck', false),
    path,
    intervalMs,
    timeoutMs,
    threshold: a.int('appHealthThreshold', 3, 1, 1000),
  };
}

/** `security.accessControl` (or an app's): a file path or an inline mapping, checked now. */
function accessControlSource(f: Fields, key: string): AccessControlSource | undefined {
  const v = f.obj[key];
  const field = f.name(key);
  if (v === undefined || v === null) return undefined;
  if (typeof v === 'string' && v !== '') {
    readAccessControlFile(v, field);
    return { file: v };
  }
  if (!isObj(v)) throw configError(field, 'must be the path of a Dapr Configuration YAML file, or an accessControl mapping');
  parseAccessControl(v, field);
  return { inline: v, field };
}

/** Reads and checks an access control file; errors name the file and the field inside it. */
export function readAccessControlFile(path: string, field = 'security.accessControl'): unknown {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw configError(field, `cannot read ${path}: ${(err as Error).message}`);
  }
  let doc: unknown;
  try {
    doc = parseYaml(text);
  } catch (err) {
    throw configError(field, `${path} is not valid YAML: ${(err as Error).message}`);
  }
  parseAccessControl(doc, path);
  return doc;
}

function securityConfig(top: Fields, resolverType: string, resolverOptions: Obj | undefined, env: NodeJS.ProcessEnv): SecurityConfig {
  const sec = top.sub('security', ['caDir', 'trustDomain', 'workloadTtl', 'nodeTtl', 'renewFraction', 'plaintext', 'accessControl']);
  const plaintext = sec.bool('plaintext', false);
  const configured = sec.optString('caDir');
  if (plaintext && configured !== undefined) throw configError('security.plaintext', 'cannot be true while security.caDir is set (choose mTLS with a CA, or plaintext)');
  const trustDomain = sec.obj['trustDomain'] === undefined || sec.obj['trustDomain'] === null
    ? undefined
    : sec.string('trustDomain', '', TRUST_DOMAIN, 'a valid trust domain (lowercase letters, digits, . - _)');
  const ttl = (key: string): number => {
    const ms = sec.duration(key, DEFAULTS.certTtl);
    if (ms < 2000) throw configError(sec.name(key), `must be at least 2s (got ${ms} ms): certificates are renewed before they end`);
    return ms;
  };
  const workloadTtl = ttl('workloadTtl');
  const nodeTtl = ttl('nodeTtl');
  const renewFraction = sec.obj['renewFraction'] ?? 0.5;
  if (typeof renewFraction !== 'number' || !(renewFraction >= 0.05 && renewFraction <= 0.9)) {
    throw configError(sec.name('renewFraction'), `must be a number from 0.05 to 0.9 (got ${JSON.stringify(renewFraction)}): the fraction of a certificate's lifetime after which it is renewed`);
  }
  const accessControl = accessControlSource(sec, 'accessControl');
  let caDir = plaintext ? undefined : configured ?? (env['WEFT_CA_DIR'] || undefined);
  let caDirDefaulted = false;
  if (!plaintext && caDir === undefined) {
    if (resolverType !== 'local') {
      throw configError('security.caDir', `is required with the ${resolverType} resolver: nodes on several hosts talk mTLS with certificates from one CA (\`weft ca init --dir DIR\`, then caDir: DIR, --ca-dir DIR or WEFT_CA_DIR); set security.plaintext: true to run without TLS`);
    }
    // One host: a CA of its own beside the registry file, shared by every node on the host.
    const raw = resolverOptions?.['path'];
    const registry = typeof raw === 'string' && raw !== '' ? raw : env['WEFT_REGISTRY'] || join(homedir(), '.weft', 'registry.sqlite');
    caDir = join(dirname(registry.startsWith('~/') ? join(homedir(), registry.slice(2)) : registry), 'ca');
    caDirDefaulted = true;
  }
  if (caDir?.startsWith('~/')) caDir = join(homedir(), caDir.slice(2));
  return { caDir, caDirDefaulted, trustDomain, workloadTtl, nodeTtl, renewFraction, plaintext, accessControl };
}

/** A config file's YAML document as parsed, not yet validated (for callers that add to it). */
export function readConfigDocument(path: string): unknown {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw configError('--config', `cannot read ${path}: ${(err as Error).message}`);
  }
  try {
    return parseYaml(text) ?? {};
  } catch (err) {
    throw configError('--config', `${path} is not valid YAML: ${(err as Error).message}`);
  }
}

export function loadConfigFile(path: string, env: NodeJS.ProcessEnv = process.env): NodeConfig {
  return validateConfig(readConfigDocument(path), env);
}

function deepFreeze<T>(value: T): T {
  if (typeof value === 'object' && value !== null && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const v of Object.values(value)) deepFreeze(v);
  }
  return value;
}
