/**
 * Access control for service invocation, in Dapr's `Configuration.spec.accessControl` form,
 * evaluated on the receiving node against the caller's verified SPIFFE id (never a header).
 *
 * The rules, as Dapr documents them, and the choices weft made where Dapr is silent:
 *   1. No `accessControl` at all (or an empty one): every call is allowed.
 *   2. `policies` given but no global `defaultAction`: the global default is deny.
 *   3. A policy applies to a caller when its `appId`, `namespace` and `trustDomain` (default
 *      "public") all equal the caller's. Otherwise the global default decides.
 *   4. Within the caller's policy, the most specific operation matching the method (and, for HTTP,
 *      the verb) decides; with none, the policy's `defaultAction`, and without one the global
 *      default.
 *   5. A caller without a verified SPIFFE id gets the global default.
 *
 * Operation names are paths. A segment `*` matches exactly one segment, `**` any number (zero
 * included, so `/orders/**` also matches `/orders`); `*` inside a segment (`/v1*`) matches any
 * characters within it. Matching ignores case (Dapr matches HTTP paths case-insensitively) and is
 * done on the method normalized by src/method-path.ts, the same text the app is sent: percent-
 * escapes decoded once, empty and `.` segments dropped, `..` resolved, so `/a//b`, `/a/./b`,
 * `/x/../a/b` and `/%61/b` all match `/a/b`; a method that cannot be normalized unambiguously
 * (`%2F`, `%00`, `%252F`, `..` above the root) is denied here (and refused with WEFT_BAD_PATH
 * before it gets here). When several operations match, the one with fewer `**`, then more literal
 * segments, then fewer `*` wins; on a tie the first listed. `httpVerb` lists verbs or `*`; an
 * operation without `httpVerb` matches every verb; gRPC calls (no verb) match on the path alone.
 */
import { WeftError } from '../errors.ts';
import { normalizeMethod } from '../method-path.ts';
import { APP_ID, DEFAULT_TRUST_DOMAIN, NAMESPACE, TRUST_DOMAIN, formatWorkloadId, type WorkloadId } from './spiffe.ts';

export type Action = 'allow' | 'deny';

export interface AclOperation {
  /** The name as written. */
  readonly name: string;
  readonly segments: readonly string[];
  /** Upper-case verbs, or `*`. */
  readonly httpVerbs: readonly string[];
  readonly action: Action;
}

export interface AclAppPolicy {
  readonly appId: string;
  readonly namespace: string;
  readonly trustDomain: string;
  readonly defaultAction: Action | undefined;
  readonly operations: readonly AclOperation[];
}

export interface AccessControl {
  /** False when the document configures no access control: everything is allowed. */
  readonly enabled: boolean;
  readonly defaultAction: Action;
  /** The trust domain of the app this policy protects. */
  readonly trustDomain: string;
  readonly policies: readonly AclAppPolicy[];
}

export interface AclRequest {
  /** The method path as the caller named it (`neworder`, `/orders/42`). */
  readonly method: string;
  /** The HTTP verb; undefined for gRPC calls. */
  readonly verb?: string | undefined;
}

export interface AclDecision {
  readonly allowed: boolean;
  /** Which level decided. */
  readonly policy: 'none' | 'global' | 'app' | 'operation';
  /** Where in the document, e.g. `policies[1].operations[0]`; undefined for the built-in default. */
  readonly where: string | undefined;
  /** One sentence naming the rule that decided, for logs and for the denial message. */
  readonly reason: string;
}

export const ALLOW_ALL: AccessControl = Object.freeze({ enabled: false, defaultAction: 'allow', trustDomain: DEFAULT_TRUST_DOMAIN, policies: Object.freeze([]) });

const VERBS = new Set(['GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'PATCH', 'OPTIONS', 'CONNECT', 'TRACE', '*']);

// ---------------------------------------------------------------- parsing

type Obj = Record<string, unknown>;
const isObj = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);

function aclError(field: string, problem: string): WeftError {
  return new WeftError('WEFT_CONFIG', `${field}: ${problem}`);
}

function checkKnown(obj: Obj, field: string, known: readonly string[]): void {
  for (const key of Object.keys(obj)) {
    if (!known.includes(key)) throw aclError(`${field}.${key}`, `unknown field (known: ${known.join(', ')})`);
  }
}

function optString(obj: Obj, key: string, field: string): string | undefined {
  const v = obj[key];
  if (v === undefined || v === null || v === '') return undefined;
  if (typeof v !== 'string') throw aclError(`${field}.${key}`, 'must be a string');
  return v;
}

function action(obj: Obj, key: string, field: string): Action | undefined {
  const v = optString(obj, key, field);
  if (v === undefined) return undefined;
  const lower = v.toLowerCase();
  if (lower !== 'allow' && lower !== 'deny') throw aclError(`${field}.${key}`, `must be allow or deny (got ${JSON.stringify(v)})`);
  return lower;
}

function pattern(obj: Obj, key: string, field: string, re: RegExp, what: string, fallback?: string): string {
  const v = optString(obj, key, field) ?? fallback;
  if (v === undefined) throw aclError(`${field}.${key}`, 'is required');
  if (!re.test(v)) throw aclError(`${field}.${key}`, `"${v}" is not ${what}`);
  return v;
}

function list(obj: Obj, key: string, field: string): unknown[] {
  const v = obj[key];
  if (v === undefined || v === null) return [];
  if (!Array.isArray(v)) throw aclError(`${field}.${key}`, 'must be a list');
  return v;
}

/**
 * Validates access control given as a whole Configuration document (`kind: Configuration`, the
 * policy under `spec.accessControl`) or as the `accessControl` mapping alone. `field` names what
 * was passed (a file name, `accessControl`), and every error names the offending field under it:
 * `config.yaml.spec.accessControl.policies[0].operations[1].httpVerb[0]: ...`.
 * Absent access control yields ALLOW_ALL. The result is frozen.
 */
export function parseAccessControl(doc: unknown, field = 'accessControl'): AccessControl {
  if (doc === undefined || doc === null) return ALLOW_ALL;
  if (!isObj(doc)) throw aclError(field, 'must be a mapping');
  let ac: unknown = doc;
  let base = field;
  if ('kind' in doc || 'spec' in doc || 'apiVersion' in doc) {
    if (doc['kind'] !== undefined && doc['kind'] !== 'Configuration') throw aclError(`${field}.kind`, `must be Configuration (got ${JSON.stringify(doc['kind'])})`);
    const spec = doc['spec'];
    if (spec === undefined || spec === null) return ALLOW_ALL;
    if (!isObj(spec)) throw aclError(`${field}.spec`, 'must be a mapping');
    ac = spec['accessControl'];
    base = `${field}.spec.accessControl`;
    if (ac === undefined || ac === null) return ALLOW_ALL;
  }
  if (!isObj(ac)) throw aclError(base, 'must be a mapping');
  checkKnown(ac, base, ['defaultAction', 'trustDomain', 'policies']);

  const defaultAction = action(ac, 'defaultAction', base);
  const trustDomain = pattern(ac, 'trustDomain', base, TRUST_DOMAIN, 'a valid trust domain (lowercase letters, digits, . - _)', DEFAULT_TRUST_DOMAIN);
  const rawPolicies = list(ac, 'policies', base);
  if (defaultAction === undefined && rawPolicies.length === 0 && optString(ac, 'trustDomain', base) === undefined) return ALLOW_ALL;

  const seen = new Map<string, number>();
  const policies = rawPolicies.map((raw, i): AclAppPolicy => {
    const pf = `${base}.policies[${i}]`;
    if (!isObj(raw)) throw aclError(pf, 'must be a mapping');
    checkKnown(raw, pf, ['appId', 'defaultAction', 'trustDomain', 'namespace', 'operations']);
    const appId = pattern(raw, 'appId', pf, APP_ID, 'a valid app id');
    const namespace = pattern(raw, 'namespace', pf, NAMESPACE, 'a valid namespace');
    const td = pattern(raw, 'trustDomain', pf, TRUST_DOMAIN, 'a valid trust domain', DEFAULT_TRUST_DOMAIN);
    const key = `${td}/${namespace}/${appId}`;
    const earlier = seen.get(key);
    if (earlier !== undefined) throw aclError(`${pf}.appId`, `"${appId}" in namespace ${namespace} (trust domain ${td}) already has a policy at policies[${earlier}]`);
    seen.set(key, i);
    const operations = list(raw, 'operations', pf).map((op, j) => parseOperation(op, `${pf}.operations[${j}]`));
    return Object.freeze({ appId, namespace, trustDomain: td, defaultAction: action(raw, 'defaultAction', pf), operations: Object.freeze(operations) });
  });

  return Object.freeze({
    enabled: true,
    // Dapr: with app policies but no global default, take the safer side.
    defaultAction: defaultAction ?? (policies.length > 0 ? 'deny' : 'allow'),
    trustDomain,
    policies: Object.freeze(policies),
  });
}

function parseOperation(raw: unknown, field: string): AclOperation {
  if (!isObj(raw)) throw aclError(field, 'must be a mapping');
  checkKnown(raw, field, ['name', 'httpVerb', 'action']);
  const name = optString(raw, 'name', field);
  if (name === undefined) throw aclError(`${field}.name`, 'is required (a path such as /orders/*)');
  if (/[?#]/.test(name)) throw aclError(`${field}.name`, `"${name}" must be a path without query or fragment`);
  const segments = splitPath(name);
  if (segments === null) throw aclError(`${field}.name`, `"${name}" is not a path that can be normalized (${(normalizeMethod(name) as WeftError).message})`);
  const verbsRaw = raw['httpVerb'];
  let httpVerbs: string[];
  if (verbsRaw === undefined || verbsRaw === null) httpVerbs = ['*'];
  else {
    const items = typeof verbsRaw === 'string' ? [verbsRaw] : verbsRaw;
    if (!Array.isArray(items) || items.length === 0) throw aclError(`${field}.httpVerb`, 'must be a non-empty list of HTTP verbs or "*"');
    httpVerbs = items.map((v, k) => {
      if (typeof v !== 'string' || !VERBS.has(v.toUpperCase())) throw aclError(`${field}.httpVerb[${k}]`, `${JSON.stringify(v)} is not an HTTP verb or "*"`);
      return v.toUpperCase();
    });
  }
  return Object.freeze({ name, segments: Object.freeze(segments), httpVerbs: Object.freeze(httpVerbs), action: action(raw, 'action', field) ?? 'allow' });
}

// ---------------------------------------------------------------- matching

/** A path as decoded, lower-case segments (see the top of this file); null when it cannot be normalized. */
export function splitPath(path: string): string[] | null {
  const m = normalizeMethod(path);
  return m instanceof WeftError ? null : m.segments.map((s) => s.toLowerCase());
}

function segmentMatches(pat: string, seg: string): boolean {
  if (pat === '*') return true;
  if (!pat.includes('*')) return pat === seg;
  const re = new RegExp(`^${pat.split('*').map((s) => s.replace(/[.+?^${}()|[\]\\]/g, '\\$&')).join('[^/]*')}$`);
  return re.test(seg);
}

export function pathMatches(pat: readonly string[], path: readonly string[], i = 0, j = 0): boolean {
  if (i === pat.length) return j === path.length;
  const p = pat[i] as string;
  if (p === '**') {
    for (let k = j; k <= path.length; k++) if (pathMatches(pat, path, i + 1, k)) return true;
    return false;
  }
  return j < path.length && segmentMatches(p, path[j] as string) && pathMatches(pat, path, i + 1, j + 1);
}

/** Larger is more specific: fewer `**`, then more literal segments, then fewer `*`. */
function specificity(op: AclOperation): [number, number, number] {
  let globstars = 0;
  let literals = 0;
  let stars = 0;
  for (const s of op.segments) {
    if (s === '**') globstars++;
    else if (s.includes('*')) stars++;
    else literals++;
  }
  return [-globstars, literals, -stars];
}

function moreSpecific(a: AclOperation, b: AclOperation): boolean {
  const x = specificity(a);
  const y = specificity(b);
  for (let k = 0; k < 3; k++) if ((x[k] as number) !== (y[k] as number)) return (x[k] as number) > (y[k] as number);
  return false;
}

/**
 * Decides one call. Pure and synchronous: the caller is the identity from the verified client
 * certificate (undefined when there is none), the request the method path and HTTP verb.
 */
export function evaluate(acl: AccessControl, caller: WorkloadId | undefined, request: AclRequest): AclDecision {
  if (!acl.enabled) return { allowed: true, policy: 'none', where: undefined, reason: 'no access control is configured' };
  const global = (why: string): AclDecision => ({
    allowed: acl.defaultAction === 'allow',
    policy: 'global',
    where: 'defaultAction',
    reason: `${why}; global defaultAction is ${acl.defaultAction}`,
  });
  if (caller === undefined) return global('the caller has no verified SPIFFE id');

  const id = formatWorkloadId(caller);
  let index = -1;
  let near = -1;
  acl.policies.forEach((p, i) => {
    if (p.appId !== caller.appId || p.namespace !== caller.namespace) return;
    if (p.trustDomain === caller.trustDomain) index = i;
    else near = i;
  });
  if (index < 0) {
    const hint = near >= 0 ? ` (policies[${near}] names this app in trust domain ${acl.policies[near]?.trustDomain})` : '';
    return global(`no policy for ${id}${hint}`);
  }
  const policy = acl.policies[index] as AclAppPolicy;

  const path = splitPath(request.method);
  if (path === null) {
    return { allowed: false, policy: 'global', where: undefined, reason: `the method path ${JSON.stringify(request.method.slice(0, 64))} cannot be normalized unambiguously` };
  }
  const verb = request.verb?.toUpperCase();
  let best = -1;
  policy.operations.forEach((op, j) => {
    if (!pathMatches(op.segments, path)) return;
    if (verb !== undefined && !op.httpVerbs.includes('*') && !op.httpVerbs.includes(verb)) return;
    if (best < 0 || moreSpecific(op, policy.operations[best] as AclOperation)) best = j;
  });
  const shown = `${verb ?? 'gRPC'} /${path.join('/')}`;
  if (best >= 0) {
    const op = policy.operations[best] as AclOperation;
    const where = `policies[${index}].operations[${best}]`;
    return { allowed: op.action === 'allow', policy: 'operation', where, reason: `${where} (${op.name} [${op.httpVerbs.join(',')}]) ${op.action === 'allow' ? 'allows' : 'denies'} ${shown} for ${id}` };
  }
  if (policy.defaultAction !== undefined) {
    const where = `policies[${index}].defaultAction`;
    return { allowed: policy.defaultAction === 'allow', policy: 'app', where, reason: `no operation of policies[${index}] matches ${shown}; ${where} is ${policy.defaultAction} for ${id}` };
  }
  return global(`no operation of policies[${index}] matches ${shown} and it sets no defaultAction`);
}

/** The error a receiving node returns for a denied call. */
export function accessDenied(decision: AclDecision, targetAppId?: string): WeftError {
  return new WeftError('WEFT_ACCESS_DENIED', `access control policy denied the call: ${decision.reason}`, { appId: targetAppId });
}
