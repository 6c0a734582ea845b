/**
 * Dapr `Resiliency` documents, accepted as Dapr users write them, validated once and resolved
 * into an immutable `ResiliencyPolicies` whose lookups are O(1) and allocate nothing.
 *
 * What is read (everything else in `spec` is an error naming the field):
 *   apiVersion: dapr.io/v1alpha1, kind: Resiliency, metadata (name, namespace; the rest ignored), scopes
 *   spec.policies.timeouts.<name>: <duration>
 *   spec.policies.retries.<name>: {policy, duration, maxInterval, maxRetries, matching: {httpStatusCodes, gRPCStatusCodes}}
 *   spec.policies.circuitBreakers.<name>: {maxRequests, interval, timeout, trip}
 *   spec.targets.apps.<appId>: {timeout, retry, circuitBreaker, circuitBreakerCacheSize}
 *   spec.targets.actors.<type>: {timeout, retry, circuitBreaker, circuitBreakerScope, circuitBreakerCacheSize}
 *   spec.targets.components.<name>: validated (references must exist) but not used by weft
 *
 * Resolution, as Dapr does it: documents apply in order, a later definition of the same name
 * replaces an earlier one; a target names its policies; an app or actor type with no target gets
 * the default policies `Default{App|Actor}{Retry|Timeout|CircuitBreaker}Policy`, else
 * `Default{Retry|Timeout|CircuitBreaker}Policy`; the retry of a call with no retry policy is the
 * built-in one (`DaprBuiltInServiceRetries` / `DaprBuiltInActorRetries`, overridable, at least
 * 3 retries). A document with `scopes` applies only to calls made by the apps it lists.
 */
import { parseAllDocuments } from '../yaml.ts';
import { WeftError } from '../errors.ts';
import { parseDuration } from '../duration.ts';
import { DAPR_EXPONENTIAL, parseCodeRanges, statusMatch } from './backoff.ts';
import type { RetryPolicy, StatusMatch } from './backoff.ts';
import type { BreakerPolicy } from './breaker.ts';
import { compileTrip, TripSyntaxError } from './trip.ts';

export type BreakerScope = 'instance' | 'type' | 'id' | 'both';

/** What applies to calls to one app or one actor type. */
export interface TargetPolicy {
  /** Per-attempt timeout (Dapr's `timeout` policy); undefined = only the call's own deadline. */
  readonly timeoutMs?: number;
  /** Always set: the target's retry policy, a default policy or the built-in one. */
  readonly retry: RetryPolicy;
  readonly breaker?: BreakerPolicy;
  /** How breakers are keyed: `instance` (apps: one per app instance, as Dapr), or the actor scope. */
  readonly breakerScope?: BreakerScope;
  /** Dapr's `circuitBreakerCacheSize`: how many breakers to keep for this target. */
  readonly breakerCacheSize: number;
}

export const BUILTIN_SERVICE_RETRIES = 'DaprBuiltInServiceRetries';
export const BUILTIN_ACTOR_RETRIES = 'DaprBuiltInActorRetries';
const PROTECTED_POLICIES = new Set(['DaprBuiltInActorNotFoundRetries']);
const OTHER_BUILTINS = new Set(['DaprBuiltInActorReminderRetries', 'DaprBuiltInInitializationRetries']);

/**
 * weft's built-in retry, used when no Resiliency document gives a call a retry policy.
 *
 * Dapr's built-in retries a failure that surely never reached the app 3 times, 1 s apart. weft
 * retries exactly the same failures the same number of times, but with full-jitter exponential
 * backoff (uniform in [0, 250 ms], [0, 500 ms], [0, 1 s]): the retry goes to another instance,
 * so waiting a whole second first mostly adds latency, and jitter keeps many callers that lost
 * the same node from retrying in lock step. Worst case 1.75 s, under Dapr's 3 s.
 */
export const DEFAULT_RETRY: RetryPolicy = Object.freeze({
  name: 'weft-default',
  policy: 'exponential',
  jitter: 'full',
  durationMs: 1000,
  initialIntervalMs: 250,
  multiplier: 2,
  randomizationFactor: 0,
  maxIntervalMs: 1000,
  maxRetries: 3,
  matching: undefined,
});

export const DEFAULT_APP_BREAKER_CACHE_SIZE = 100;
export const DEFAULT_ACTOR_BREAKER_CACHE_SIZE = 5000;

const RETRY_DEFAULTS = { durationMs: 5000, maxIntervalMs: 60_000, maxRetries: -1 } as const;
const BREAKER_DEFAULTS = { maxRequests: 1, intervalMs: 0, timeoutMs: 60_000, trip: 'consecutiveFailures > 5' } as const;

type Obj = Record<string, unknown>;

function err(field: string, problem: string): WeftError {
  return new WeftError('WEFT_CONFIG', `${field}: ${problem}`);
}

function isObj(v: unknown): v is Obj {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function mapping(field: string, v: unknown, known?: readonly string[]): Obj {
  if (v === undefined || v === null) return {};
  if (!isObj(v)) throw err(field || '(document)', 'must be a mapping');
  if (known !== undefined) {
    for (const key of Object.keys(v)) if (!known.includes(key)) throw err(field ? `${field}.${key}` : key, `unknown field (known: ${known.join(', ')})`);
  }
  return v;
}

function optName(field: string, v: unknown): string | undefined {
  if (v === undefined || v === null || v === '') return undefined;
  if (typeof v !== 'string') throw err(field, 'must be a policy name (a string)');
  return v;
}

function duration(field: string, v: unknown, fallback: number): number {
  if (v === undefined || v === null || v === '') return fallback;
  const ms = parseDuration(v);
  if (ms === undefined) throw err(field, `"${String(v)}" is not a duration (e.g. 500ms, 5s, 1m30s, PT5S)`);
  return ms;
}

function integer(field: string, v: unknown, fallback: number, min: number, problem: string): number {
  if (v === undefined || v === null) return fallback;
  const n = typeof v === 'string' && /^-?\d+$/.test(v.trim()) ? Number(v) : v;
  if (typeof n !== 'number' || !Number.isSafeInteger(n) || n < min) throw err(field, problem);
  return n;
}

interface TargetRefs {
  readonly field: string;
  readonly timeout: string | undefined;
  readonly retry: string | undefined;
  readonly breaker: string | undefined;
  readonly scope: BreakerScope | undefined;
  readonly cacheSize: number;
}

interface ParsedDocument {
  readonly name: string;
  readonly scopes: readonly string[];
  readonly timeouts: Map<string, number>;
  readonly retries: Map<string, RetryPolicy>;
  readonly breakers: Map<string, BreakerPolicy>;
  readonly apps: Map<string, TargetRefs>;
  readonly actors: Map<string, TargetRefs>;
  /** weft serves no components, but a reference to a missing policy is still a mistake. */
  readonly components: RefNames[];
}

interface RefNames {
  readonly field: string;
  readonly timeout: string | undefined;
  readonly retry: string | undefined;
  readonly breaker: string | undefined;
}

/** The parts of a document before its references are checked. */
function parseDocument(raw: unknown, where: string, warnings: string[]): ParsedDocument {
  const p = where;
  const top = mapping(p, raw, ['apiVersion', 'kind', 'metadata', 'scopes', 'spec', 'version']);
  const at = (f: string): string => (p ? `${p}.${f}` : f);
  if (top['kind'] !== 'Resiliency') throw err(at('kind'), `must be "Resiliency" (got ${JSON.stringify(top['kind'])})`);
  if (top['apiVersion'] !== 'dapr.io/v1alpha1') throw err(at('apiVersion'), `must be "dapr.io/v1alpha1" (got ${JSON.stringify(top['apiVersion'])})`);
  const metadata = mapping(at('metadata'), top['metadata']);
  const name = typeof metadata['name'] === 'string' && metadata['name'] !== '' ? metadata['name'] : where || 'resiliency';

  const scopesRaw = top['scopes'] ?? [];
  if (!Array.isArray(scopesRaw) || !scopesRaw.every((s) => typeof s === 'string' && s !== '')) throw err(at('scopes'), 'must be a list of app ids');
  const scopes = scopesRaw as string[];

  const spec = mapping(at('spec'), top['spec'], ['policies', 'targets']);
  const policies = mapping(at('spec.policies'), spec['policies'], ['timeouts', 'retries', 'circuitBreakers']);

  const timeouts = new Map<string, number>();
  const tPath = at('spec.policies.timeouts');
  for (const [n, v] of Object.entries(mapping(tPath, policies['timeouts']))) {
    const ms = duration(`${tPath}.${n}`, v, -1);
    if (ms <= 0) throw err(`${tPath}.${n}`, 'must be a duration greater than 0 (e.g. 5s)');
    timeouts.set(n, ms);
  }

  const retries = new Map<string, RetryPolicy>();
  const rPath = at('spec.policies.retries');
  for (const [n, v] of Object.entries(mapping(rPath, policies['retries']))) {
    const f = `${rPath}.${n}`;
    if (PROTECTED_POLICIES.has(n)) {
      warnings.push(`${f}: ${n} cannot be overridden; the definition is ignored`);
      continue;
    }
    const r = parseRetry(f, n, v);
    if ((n === BUILTIN_SERVICE_RETRIES || n === BUILTIN_ACTOR_RETRIES) && r.maxRetries >= 0 && r.maxRetries < 3) {
      warnings.push(`${f}.maxRetries: a built-in retry policy keeps at least 3 retries; using 3`);
      retries.set(n, Object.freeze({ ...r, maxRetries: 3 }));
    } else {
      retries.set(n, r);
    }
    if (OTHER_BUILTINS.has(n)) warnings.push(`${f}: weft has no use for ${n}; the definition is ignored`);
  }

  const breakers = new Map<string, BreakerPolicy>();
  const bPath = at('spec.policies.circuitBreakers');
  for (const [n, v] of Object.entries(mapping(bPath, policies['circuitBreakers']))) breakers.set(n, parseBreaker(`${bPath}.${n}`, n, v));

  const targets = mapping(at('spec.targets'), spec['targets'], ['apps', 'actors', 'components']);
  const apps = new Map<string, TargetRefs>();
  const aPath = at('spec.targets.apps');
  for (const [n, v] of Object.entries(mapping(aPath, targets['apps']))) {
    const f = `${aPath}.${n}`;
    const t = mapping(f, v, ['timeout', 'retry', 'circuitBreaker', 'circuitBreakerCacheSize']);
    apps.set(n, {
      field: f,
      timeout: optName(`${f}.timeout`, t['timeout']),
      retry: optName(`${f}.retry`, t['retry']),
      breaker: optName(`${f}.circuitBreaker`, t['circuitBreaker']),
      scope: 'instance',
      cacheSize: cacheSize(`${f}.circuitBreakerCacheSize`, t['circuitBreakerCacheSize'], DEFAULT_APP_BREAKER_CACHE_SIZE),
    });
  }
  const acPath = at('spec.targets.actors');
  const actors = new Map<string, TargetRefs>();
  for (const [n, v] of Object.entries(mapping(acPath, targets['actors']))) {
    const f = `${acPath}.${n}`;
    const t = mapping(f, v, ['timeout', 'retry', 'circuitBreaker', 'circuitBreakerScope', 'circuitBreakerCacheSize']);
    const breaker = optName(`${f}.circuitBreaker`, t['circuitBreaker']);
    const scopeRaw = t['circuitBreakerScope'];
    let scope: BreakerScope | undefined;
    if (scopeRaw !== undefined && scopeRaw !== null && scopeRaw !== '') {
      if (scopeRaw !== 'type' && scopeRaw !== 'id' && scopeRaw !== 'both') throw err(`${f}.circuitBreakerScope`, `must be one of type, id, both (got ${JSON.stringify(scopeRaw)})`);
      scope = scopeRaw;
    } else if (breaker !== undefined) {
      throw err(`${f}.circuitBreakerScope`, 'is required when circuitBreaker is set (type, id or both)');
    }
    actors.set(n, {
      field: f,
      timeout: optName(`${f}.timeout`, t['timeout']),
      retry: optName(`${f}.retry`, t['retry']),
      breaker,
      scope,
      cacheSize: cacheSize(`${f}.circuitBreakerCacheSize`, t['circuitBreakerCacheSize'], DEFAULT_ACTOR_BREAKER_CACHE_SIZE),
    });
  }

  const components: RefNames[] = [];
  const cPath = at('spec.targets.components');
  for (const [n, v] of Object.entries(mapping(cPath, targets['components']))) {
    const f = `${cPath}.${n}`;
    const c = mapping(f, v, ['inbound', 'outbound', 'input', 'output']);
    for (const dir of ['inbound', 'outbound', 'input', 'output'] as const) {
      const d = mapping(`${f}.${dir}`, c[dir], ['timeout', 'retry', 'circuitBreaker']);
      components.push({ field: `${f}.${dir}`, timeout: optName(`${f}.${dir}.timeout`, d['timeout']), retry: optName(`${f}.${dir}.retry`, d['retry']), breaker: optName(`${f}.${dir}.circuitBreaker`, d['circuitBreaker']) });
    }
  }
  return { name, scopes, timeouts, retries, breakers, apps, actors, components };
}

function cacheSize(field: string, v: unknown, fallback: number): number {
  const n = integer(field, v, 0, 0, 'must be an integer >= 0');
  return n === 0 ? fallback : n;
}

function parseRetry(f: string, name: string, v: unknown): RetryPolicy {
  const r = mapping(f, v, ['policy', 'duration', 'maxInterval', 'maxRetries', 'matching']);
  const kind = r['policy'] === undefined || r['policy'] === null || r['policy'] === '' ? 'constant' : typeof r['policy'] === 'string' ? r['policy'].toLowerCase() : r['policy'];
  if (kind !== 'constant' && kind !== 'exponential') throw err(`${f}.policy`, `must be constant or exponential (got ${JSON.stringify(r['policy'])})`);
  const durationMs = duration(`${f}.duration`, r['duration'], RETRY_DEFAULTS.durationMs);
  const maxIntervalMs = duration(`${f}.maxInterval`, r['maxInterval'], RETRY_DEFAULTS.maxIntervalMs);
  if (maxIntervalMs <= 0) throw err(`${f}.maxInterval`, 'must be a duration greater than 0 (e.g. 60s)');
  const maxRetries = integer(`${f}.maxRetries`, r['maxRetries'], RETRY_DEFAULTS.maxRetries, -1, 'must be an integer >= -1');
  let matching: StatusMatch | undefined;
  if (r['matching'] !== undefined && r['matching'] !== null) {
    const m = mapping(`${f}.matching`, r['matching'], ['httpStatusCodes', 'gRPCStatusCodes']);
    const httpText = codesText(`${f}.matching.httpStatusCodes`, m['httpStatusCodes']);
    const grpcText = codesText(`${f}.matching.gRPCStatusCodes`, m['gRPCStatusCodes']);
    const http = parseCodeRanges(httpText, 100, 599);
    if (typeof http === 'string') throw err(`${f}.matching.httpStatusCodes`, http);
    const grpc = parseCodeRanges(grpcText, 0, 16);
    if (typeof grpc === 'string') throw err(`${f}.matching.gRPCStatusCodes`, grpc);
    if (http.length > 0 || grpc.length > 0) matching = statusMatch(http, grpc, httpText, grpcText);
  }
  return Object.freeze({
    name,
    policy: kind,
    jitter: kind === 'constant' ? 'none' : 'dapr',
    durationMs,
    initialIntervalMs: DAPR_EXPONENTIAL.initialIntervalMs,
    multiplier: DAPR_EXPONENTIAL.multiplier,
    randomizationFactor: DAPR_EXPONENTIAL.randomizationFactor,
    maxIntervalMs,
    maxRetries,
    matching,
  });
}

function codesText(field: string, v: unknown): string {
  if (v === undefined || v === null) return '';
  if (typeof v === 'number' && Number.isInteger(v)) return String(v);
  if (typeof v !== 'string') throw err(field, 'must be a string of codes and ranges (e.g. "429,500-504")');
  return v;
}

function parseBreaker(f: string, name: string, v: unknown): BreakerPolicy {
  const b = mapping(f, v, ['maxRequests', 'interval', 'timeout', 'trip']);
  // gobreaker treats 0 as "use the default" for maxRequests and timeout; so does weft
  const maxRequests = integer(`${f}.maxRequests`, b['maxRequests'], BREAKER_DEFAULTS.maxRequests, 0, 'must be an integer >= 0') || BREAKER_DEFAULTS.maxRequests;
  const intervalMs = duration(`${f}.interval`, b['interval'], BREAKER_DEFAULTS.intervalMs);
  const timeoutMs = duration(`${f}.timeout`, b['timeout'], BREAKER_DEFAULTS.timeoutMs) || BREAKER_DEFAULTS.timeoutMs;
  const tripRaw = b['trip'];
  if (tripRaw !== undefined && tripRaw !== null && typeof tripRaw !== 'string') throw err(`${f}.trip`, 'must be an expression string (e.g. "consecutiveFailures > 5")');
  const source = tripRaw === undefined || tripRaw === null || tripRaw.trim() === '' ? BREAKER_DEFAULTS.trip : tripRaw;
  let trip;
  try {
    trip = compileTrip(source);
  } catch (e) {
    if (e instanceof TripSyntaxError) throw err(`${f}.trip`, e.message);
    throw e;
  }
  return Object.freeze({ name, maxRequests, intervalMs, timeoutMs, trip });
}

interface View {
  readonly apps: Map<string, TargetPolicy>;
  readonly actors: Map<string, TargetPolicy>;
  readonly defaultApp: TargetPolicy;
  readonly defaultActor: TargetPolicy;
}

/** The resolved policies of zero or more Resiliency documents. Immutable. */
export class ResiliencyPolicies {
  /** No documents: Dapr's behaviour with weft's DEFAULT_RETRY. */
  static readonly EMPTY: ResiliencyPolicies = new ResiliencyPolicies([], []);

  /** `metadata.name` of each document, in order. */
  readonly documents: readonly string[];
  /** Things accepted but changed or ignored (for the node's log). */
  readonly warnings: readonly string[];
  readonly #all: View;
  readonly #unscoped: View;
  readonly #byCaller: Map<string, View>;

  /** @internal use parseResiliency */
  constructor(docs: readonly ParsedDocument[], warnings: readonly string[]) {
    this.documents = Object.freeze(docs.map((d) => d.name));
    this.warnings = Object.freeze([...warnings]);
    this.#all = buildView(docs);
    this.#unscoped = buildView(docs.filter((d) => d.scopes.length === 0));
    this.#byCaller = new Map();
    for (const caller of new Set(docs.flatMap((d) => d.scopes))) {
      this.#byCaller.set(caller, buildView(docs.filter((d) => d.scopes.length === 0 || d.scopes.includes(caller))));
    }
    Object.freeze(this);
  }

  /**
   * Policies for calls to app `appId`. Pass the calling app's id to honour documents' `scopes`;
   * without it every document applies.
   */
  forApp(appId: string, callerAppId?: string): TargetPolicy {
    const v = this.#view(callerAppId);
    return v.apps.get(appId) ?? v.defaultApp;
  }

  /** Policies for calls to actors of `actorType` (see forApp for `callerAppId`). */
  forActor(actorType: string, callerAppId?: string): TargetPolicy {
    const v = this.#view(callerAppId);
    return v.actors.get(actorType) ?? v.defaultActor;
  }

  #view(caller: string | undefined): View {
    return caller === undefined ? this.#all : this.#byCaller.get(caller) ?? this.#unscoped;
  }
}

function buildView(docs: readonly ParsedDocument[]): View {
  const timeouts = new Map<string, number>();
  const retries = new Map<string, RetryPolicy>();
  const breakers = new Map<string, BreakerPolicy>();
  const appRefs = new Map<string, TargetRefs>();
  const actorRefs = new Map<string, TargetRefs>();
  for (const d of docs) {
    for (const [k, v] of d.timeouts) timeouts.set(k, v);
    for (const [k, v] of d.retries) retries.set(k, v);
    for (const [k, v] of d.breakers) breakers.set(k, v);
    for (const [k, v] of d.apps) appRefs.set(k, v);
    for (const [k, v] of d.actors) actorRefs.set(k, v);
  }
  const builtinApp = retries.get(BUILTIN_SERVICE_RETRIES) ?? DEFAULT_RETRY;
  const builtinActor = retries.get(BUILTIN_ACTOR_RETRIES) ?? DEFAULT_RETRY;

  const resolve = (refs: TargetRefs, builtin: RetryPolicy): TargetPolicy => {
    const timeoutMs = refs.timeout === undefined ? undefined : timeouts.get(refs.timeout);
    let retry = refs.retry === undefined ? undefined : retries.get(refs.retry);
    // Dapr: maxRetries 0 "behaves as if the retry policy were not set": the built-in still applies
    if (retry === undefined || retry.maxRetries === 0) retry = builtin;
    const breaker = refs.breaker === undefined ? undefined : breakers.get(refs.breaker);
    return freezeTarget(timeoutMs, retry, breaker, breaker === undefined ? undefined : refs.scope, refs.cacheSize);
  };
  const defaults = (level: 'App' | 'Actor', builtin: RetryPolicy, scope: BreakerScope, size: number): TargetPolicy => {
    const pick = <T>(m: Map<string, T>, kind: string): T | undefined => m.get(`Default${level}${kind}Policy`) ?? m.get(`Default${kind}Policy`);
    let retry = pick(retries, 'Retry');
    if (retry === undefined || retry.maxRetries === 0) retry = builtin;
    const breaker = pick(breakers, 'CircuitBreaker');
    return freezeTarget(pick(timeouts, 'Timeout'), retry, breaker, breaker === undefined ? undefined : scope, size);
  };

  const apps = new Map<string, TargetPolicy>();
  for (const [k, refs] of appRefs) apps.set(k, resolve(refs, builtinApp));
  const actors = new Map<string, TargetPolicy>();
  for (const [k, refs] of actorRefs) actors.set(k, resolve(refs, builtinActor));
  return {
    apps,
    actors,
    defaultApp: defaults('App', builtinApp, 'instance', DEFAULT_APP_BREAKER_CACHE_SIZE),
    // Dapr keys default actor breakers by actor type
    defaultActor: defaults('Actor', builtinActor, 'type', DEFAULT_ACTOR_BREAKER_CACHE_SIZE),
  };
}

function freezeTarget(timeoutMs: number | undefined, retry: RetryPolicy, breaker: BreakerPolicy | undefined, scope: BreakerScope | undefined, size: number): TargetPolicy {
  const t: { -readonly [K in keyof TargetPolicy]: TargetPolicy[K] } = { retry, breakerCacheSize: size };
  if (timeoutMs !== undefined) t.timeoutMs = timeoutMs;
  if (breaker !== undefined) {
    t.breaker = breaker;
    if (scope !== undefined) t.breakerScope = scope;
  }
  return Object.freeze(t);
}

/**
 * Parses Resiliency documents: YAML text (one or several documents separated by `---`), one
 * parsed document, or a list of parsed documents. Documents of another `kind` in the same YAML
 * stream are skipped (Dapr reads Resiliency files out of a folder shared with other resources).
 * Field paths in errors are prefixed with `[i]` when there are several documents.
 * Throws WeftError('WEFT_CONFIG', '<field path>: <problem>').
 */
export function parseResiliency(input: string | unknown): ResiliencyPolicies {
  let raws: unknown[];
  if (typeof input === 'string') {
    raws = [];
    const docs = parseAllDocuments(input);
    if (!Array.isArray(docs)) return ResiliencyPolicies.EMPTY; // an empty stream
    for (const [i, d] of docs.entries()) {
      const first = d.errors[0];
      if (first !== undefined) throw err(docs.length > 1 ? `[${i}]` : '(document)', `not valid YAML: ${first.message.split('\n')[0] ?? ''}`);
      const v: unknown = d.toJS();
      if (v === null || v === undefined) continue;
      if (isObj(v) && typeof v['kind'] === 'string' && v['kind'] !== 'Resiliency') continue;
      raws.push(v);
    }
  } else {
    raws = Array.isArray(input) ? input : [input];
  }
  const warnings: string[] = [];
  const docs = raws.map((raw, i) => parseDocument(raw, raws.length > 1 ? `[${i}]` : '', warnings));
  checkReferences(docs);
  return new ResiliencyPolicies(docs, warnings);
}

/**
 * A target may name a policy defined in its own document or in any document without scopes
 * (those apply wherever the target's document does). Anything else is an error naming the field.
 */
function checkReferences(docs: readonly ParsedDocument[]): void {
  const unscoped = docs.filter((d) => d.scopes.length === 0);
  const has = (doc: ParsedDocument, kind: 'timeouts' | 'retries' | 'breakers', name: string): boolean =>
    doc[kind].has(name) || unscoped.some((d) => d[kind].has(name)) ||
    (kind === 'retries' && (name === BUILTIN_SERVICE_RETRIES || name === BUILTIN_ACTOR_RETRIES));
  const check = (doc: ParsedDocument, field: string, refs: RefNames): void => {
    if (refs.timeout !== undefined && !has(doc, 'timeouts', refs.timeout)) throw err(`${field}.timeout`, `no timeout policy named "${refs.timeout}" in spec.policies.timeouts`);
    if (refs.retry !== undefined && !has(doc, 'retries', refs.retry)) throw err(`${field}.retry`, `no retry policy named "${refs.retry}" in spec.policies.retries`);
    if (refs.breaker !== undefined && !has(doc, 'breakers', refs.breaker)) throw err(`${field}.circuitBreaker`, `no circuit breaker policy named "${refs.breaker}" in spec.policies.circuitBreakers`);
  };
  for (const doc of docs) {
    for (const refs of doc.apps.values()) check(doc, refs.field, refs);
    for (const refs of doc.actors.values()) check(doc, refs.field, refs);
    for (const refs of doc.components) check(doc, refs.field, refs);
  }
}
