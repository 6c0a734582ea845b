import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { WeftError } from '../../src/errors.ts';
import { DEFAULT_RETRY, ResiliencyPolicies, parseResiliency } from '../../src/resiliency/policy.ts';

const FIXTURE = new URL('../fixtures/resiliency/resiliency.yaml', import.meta.url);

type Obj = Record<string, unknown>;

/** A valid document with `spec` replaced. */
function doc(spec: Obj, extra: Obj = {}): Obj {
  return { apiVersion: 'dapr.io/v1alpha1', kind: 'Resiliency', metadata: { name: 'r' }, spec, ...extra };
}
const retries = (r: Obj): Obj => doc({ policies: { retries: r } });
const breakers = (b: Obj): Obj => doc({ policies: { circuitBreakers: b } });

function configError(input: unknown): WeftError {
  try {
    parseResiliency(input);
  } catch (err) {
    expect(err).toBeInstanceOf(WeftError);
    expect((err as WeftError).code).toBe('WEFT_CONFIG');
    return err as WeftError;
  }
  throw new Error('expected a WEFT_CONFIG error');
}

describe('parseResiliency: the fixture', () => {
  const policies = parseResiliency(readFileSync(FIXTURE, 'utf8'));

  it('reads every Resiliency document and skips other kinds', () => {
    expect(policies.documents).toEqual(['shop-resiliency', 'frontend-only']);
    expect(policies.warnings).toEqual([]);
  });

  it('resolves an app target with an exponential retry, matching codes and a breaker', () => {
    const p = policies.forApp('payments');
    expect(p.timeoutMs).toBe(3000);
    expect(p.retry).toMatchObject({ name: 'onlyGatewayErrors', policy: 'exponential', jitter: 'dapr', initialIntervalMs: 500, multiplier: 1.5, randomizationFactor: 0.5, maxIntervalMs: 2000, maxRetries: 4 });
    expect(p.retry.matching?.httpText).toBe('429,502-504');
    expect(p.retry.matching?.http[503]).toBe(1);
    expect(p.retry.matching?.http[500]).toBe(0);
    expect(p.retry.matching?.grpc).toBe((1 << 8) | (1 << 14));
    expect(p.breaker).toMatchObject({ name: 'payments', maxRequests: 2, intervalMs: 30_000, timeoutMs: 15_000 });
    expect(p.breakerScope).toBe('instance');
    expect(p.breakerCacheSize).toBe(100);
  });

  it('fills Dapr defaults: constant 5s forever; breaker 1 request, no interval, 60s, consecutiveFailures > 5', () => {
    const r = parseResiliency(retries({ d: {} }));
    const raw = parseResiliency(doc({ policies: { retries: { d: {} }, circuitBreakers: { b: {} } }, targets: { apps: { a: { retry: 'd', circuitBreaker: 'b' } } } }));
    expect(r.documents).toEqual(['r']);
    const p = raw.forApp('a');
    expect(p.retry).toMatchObject({ policy: 'constant', jitter: 'none', durationMs: 5000, maxIntervalMs: 60_000, maxRetries: -1, matching: undefined });
    expect(p.breaker).toMatchObject({ maxRequests: 1, intervalMs: 0, timeoutMs: 60_000 });
    expect(p.breaker?.trip.source).toBe('consecutiveFailures > 5');
  });

  it('reads durations in Go and ISO 8601 forms', () => {
    expect(policies.forApp('catalog', 'backend').timeoutMs).toBe(800);
    expect(policies.forApp('reports').timeoutMs).toBe(90_000);
  });

  it('gives an app with no target the built-in retry and no timeout or breaker', () => {
    const p = policies.forApp('nobody');
    expect(p.retry).toBe(DEFAULT_RETRY);
    expect(p.timeoutMs).toBeUndefined();
    expect(p.breaker).toBeUndefined();
  });

  it('uses DefaultActorRetryPolicy for actor types with no target', () => {
    expect(policies.forActor('Unknown').retry).toMatchObject({ name: 'DefaultActorRetryPolicy', durationMs: 1000, maxRetries: 5 });
  });

  it('keeps the actor breaker scope and cache size', () => {
    expect(policies.forActor('Cart')).toMatchObject({ breakerScope: 'id', breakerCacheSize: 5000, timeoutMs: 800 });
    expect(policies.forActor('Inventory').breakerScope).toBe('both');
    expect(policies.forApp('reports').breakerCacheSize).toBe(10);
  });

  it('applies a scoped document only to calls from the apps it lists', () => {
    expect(policies.forApp('catalog', 'frontend').timeoutMs).toBe(300);
    expect(policies.forApp('catalog', 'backend').timeoutMs).toBe(800);
    // no caller given: every document applies, later ones win
    expect(policies.forApp('catalog').timeoutMs).toBe(300);
  });

  it('returns the same frozen object on every lookup (no allocation per call)', () => {
    const a = policies.forApp('payments');
    expect(policies.forApp('payments')).toBe(a);
    expect(Object.isFrozen(a)).toBe(true);
    expect(Object.isFrozen(a.retry)).toBe(true);
    expect(Object.isFrozen(policies)).toBe(true);
  });
});

describe('parseResiliency: Dapr resolution rules', () => {
  it('EMPTY and an empty YAML stream give the built-in default everywhere', () => {
    expect(ResiliencyPolicies.EMPTY.forApp('x').retry).toBe(DEFAULT_RETRY);
    expect(parseResiliency('').forActor('T').retry).toBe(DEFAULT_RETRY);
    expect(parseResiliency('# nothing\n').documents).toEqual([]);
  });

  it('DEFAULT_RETRY retries 3 times with full-jitter exponential backoff capped at 1 s and no matching', () => {
    expect(DEFAULT_RETRY).toMatchObject({ maxRetries: 3, jitter: 'full', maxIntervalMs: 1000, matching: undefined });
  });

  it('prefers Default{App}RetryPolicy over DefaultRetryPolicy, for apps without a target only', () => {
    const p = parseResiliency(doc({
      policies: { retries: { DefaultRetryPolicy: { maxRetries: 7 }, DefaultAppRetryPolicy: { maxRetries: 8 }, own: { maxRetries: 9 } }, timeouts: { DefaultTimeoutPolicy: '2s' } },
      targets: { apps: { a: { retry: 'own' } } },
    }));
    expect(p.forApp('other').retry.maxRetries).toBe(8);
    expect(p.forApp('other').timeoutMs).toBe(2000);
    expect(p.forActor('T').retry.maxRetries).toBe(7);
    expect(p.forApp('a').retry.maxRetries).toBe(9);
    expect(p.forApp('a').timeoutMs).toBeUndefined();
  });

  it('a default circuit breaker for actors is keyed by type, for apps by instance', () => {
    const p = parseResiliency(breakers({ DefaultCircuitBreakerPolicy: {} }));
    expect(p.forActor('T').breakerScope).toBe('type');
    expect(p.forApp('a').breakerScope).toBe('instance');
  });

  it('a retry policy with maxRetries 0 behaves as if not set: the built-in still applies', () => {
    const p = parseResiliency(doc({ policies: { retries: { none: { maxRetries: 0 } } }, targets: { apps: { a: { retry: 'none' } } } }));
    expect(p.forApp('a').retry).toBe(DEFAULT_RETRY);
  });

  it('DaprBuiltInServiceRetries overrides the built-in, kept at 3 retries at least (with a warning)', () => {
    const p = parseResiliency(retries({ DaprBuiltInServiceRetries: { policy: 'constant', duration: '2s', maxRetries: 1 } }));
    expect(p.forApp('x').retry).toMatchObject({ name: 'DaprBuiltInServiceRetries', durationMs: 2000, maxRetries: 3 });
    expect(p.forActor('T').retry).toBe(DEFAULT_RETRY);
    expect(p.warnings).toEqual(['spec.policies.retries.DaprBuiltInServiceRetries.maxRetries: a built-in retry policy keeps at least 3 retries; using 3']);
  });

  it('ignores an override of the protected DaprBuiltInActorNotFoundRetries, with a warning', () => {
    const p = parseResiliency(retries({ DaprBuiltInActorNotFoundRetries: { maxRetries: 0 } }));
    expect(p.warnings).toEqual(['spec.policies.retries.DaprBuiltInActorNotFoundRetries: DaprBuiltInActorNotFoundRetries cannot be overridden; the definition is ignored']);
  });

  it('a later document replaces a policy of the same name', () => {
    const first = doc({ policies: { timeouts: { t: '1s' } }, targets: { apps: { a: { timeout: 't' } } } });
    const second = doc({ policies: { timeouts: { t: '4s' } } });
    expect(parseResiliency([first, second]).forApp('a').timeoutMs).toBe(4000);
  });

  it('a scoped document may use policies of an unscoped one', () => {
    const base = doc({ policies: { timeouts: { t: '1s' } } });
    const scoped = doc({ targets: { apps: { a: { timeout: 't' } } } }, { scopes: ['web'] });
    const p = parseResiliency([base, scoped]);
    expect(p.forApp('a', 'web').timeoutMs).toBe(1000);
    expect(p.forApp('a', 'api').timeoutMs).toBeUndefined();
  });

  it('accepts the policy name in any case, and codes as a number', () => {
    const p = parseResiliency(doc({ policies: { retries: { r: { policy: 'Exponential', matching: { httpStatusCodes: 503 } } } }, targets: { apps: { a: { retry: 'r' } } } }));
    expect(p.forApp('a').retry.policy).toBe('exponential');
    expect(p.forApp('a').retry.matching?.http[503]).toBe(1);
  });

  it('treats empty matching strings as no matching, and ignores empty items', () => {
    const p = parseResiliency(doc({ policies: { retries: { r: { matching: { httpStatusCodes: '', gRPCStatusCodes: '' } }, s: { matching: { httpStatusCodes: '500,,502,' } } } }, targets: { apps: { a: { retry: 'r' }, b: { retry: 's' } } } }));
    expect(p.forApp('a').retry.matching).toBeUndefined();
    expect(p.forApp('b').retry.matching?.http[502]).toBe(1);
  });

  it('maxRequests 0 and timeout 0 mean the defaults, as in gobreaker', () => {
    const p = parseResiliency(doc({ policies: { circuitBreakers: { b: { maxRequests: 0, timeout: '0s' } } }, targets: { apps: { a: { circuitBreaker: 'b' } } } }));
    expect(p.forApp('a').breaker).toMatchObject({ maxRequests: 1, timeoutMs: 60_000 });
  });
});

describe('parseResiliency: one test per error message', () => {
  const P = 'spec.policies';

  it('a document that is not a mapping', () => {
    expect(configError('- a\n- b\n').message).toBe('(document): must be a mapping');
  });

  it('YAML that does not parse', () => {
    expect(configError('kind: [unclosed\n').message).toMatch(/^\(document\): not valid YAML: /);
  });

  it('the wrong kind', () => {
    expect(configError({ ...doc({}), kind: 'Resilience' }).message).toBe('kind: must be "Resiliency" (got "Resilience")');
  });

  it('the wrong apiVersion', () => {
    expect(configError({ ...doc({}), apiVersion: 'dapr.io/v2' }).message).toBe('apiVersion: must be "dapr.io/v1alpha1" (got "dapr.io/v2")');
  });

  it('an unknown top-level field', () => {
    expect(configError({ ...doc({}), spek: {} }).message).toBe('spek: unknown field (known: apiVersion, kind, metadata, scopes, spec, version)');
  });

  it('scopes that are not a list of app ids', () => {
    expect(configError(doc({}, { scopes: 'web' })).message).toBe('scopes: must be a list of app ids');
  });

  it('a section that is not a mapping', () => {
    expect(configError(doc({ policies: { timeouts: ['5s'] } })).message).toBe(`${P}.timeouts: must be a mapping`);
  });

  it('an unknown field in a retry policy names it', () => {
    expect(configError(retries({ r: { maxRetry: 3 } })).message).toBe(`${P}.retries.r.maxRetry: unknown field (known: policy, duration, maxInterval, maxRetries, matching)`);
  });

  it('a timeout that is not a duration', () => {
    expect(configError(doc({ policies: { timeouts: { general: '5 seconds' } } })).message).toBe(`${P}.timeouts.general: "5 seconds" is not a duration (e.g. 500ms, 5s, 1m30s, PT5S)`);
  });

  it('a timeout of zero', () => {
    expect(configError(doc({ policies: { timeouts: { general: '0s' } } })).message).toBe(`${P}.timeouts.general: must be a duration greater than 0 (e.g. 5s)`);
  });

  it('an unknown retry policy kind', () => {
    expect(configError(retries({ r: { policy: 'linear' } })).message).toBe(`${P}.retries.r.policy: must be constant or exponential (got "linear")`);
  });

  it('a retry duration that is not a duration', () => {
    expect(configError(retries({ r: { duration: 'soon' } })).message).toBe(`${P}.retries.r.duration: "soon" is not a duration (e.g. 500ms, 5s, 1m30s, PT5S)`);
  });

  it('a maxInterval of zero', () => {
    expect(configError(retries({ r: { maxInterval: '0s' } })).message).toBe(`${P}.retries.r.maxInterval: must be a duration greater than 0 (e.g. 60s)`);
  });

  it('maxRetries below -1', () => {
    expect(configError(retries({ retryForever: { maxRetries: -2 } })).message).toBe(`${P}.retries.retryForever.maxRetries: must be an integer >= -1`);
  });

  it('maxRetries that is not an integer', () => {
    expect(configError(retries({ retryForever: { maxRetries: 1.5 } })).message).toBe(`${P}.retries.retryForever.maxRetries: must be an integer >= -1`);
  });

  it('matching codes that are not a string', () => {
    expect(configError(retries({ r: { matching: { httpStatusCodes: [500] } } })).message).toBe(`${P}.retries.r.matching.httpStatusCodes: must be a string of codes and ranges (e.g. "429,500-504")`);
  });

  it('a code range with two dashes', () => {
    expect(configError(retries({ r: { matching: { httpStatusCodes: '500-502-504' } } })).message).toBe(`${P}.retries.r.matching.httpStatusCodes: "500-502-504" has more than one "-"`);
  });

  it('a code that is not a number', () => {
    expect(configError(retries({ r: { matching: { httpStatusCodes: '5xx' } } })).message).toBe(`${P}.retries.r.matching.httpStatusCodes: "5xx" is not a code or a range of codes (e.g. 429 or 500-504)`);
  });

  it('an HTTP code outside 100-599', () => {
    expect(configError(retries({ r: { matching: { httpStatusCodes: '500-600' } } })).message).toBe(`${P}.retries.r.matching.httpStatusCodes: "500-600" is outside 100-599`);
  });

  it('a gRPC code outside 0-16', () => {
    expect(configError(retries({ r: { matching: { gRPCStatusCodes: '14,17' } } })).message).toBe(`${P}.retries.r.matching.gRPCStatusCodes: "17" is outside 0-16`);
  });

  it('a range that starts after it ends', () => {
    expect(configError(retries({ r: { matching: { gRPCStatusCodes: '14-2' } } })).message).toBe(`${P}.retries.r.matching.gRPCStatusCodes: "14-2" starts after it ends`);
  });

  it('maxRequests that is negative', () => {
    expect(configError(breakers({ b: { maxRequests: -1 } })).message).toBe(`${P}.circuitBreakers.b.maxRequests: must be an integer >= 0`);
  });

  it('a breaker interval that is not a duration', () => {
    expect(configError(breakers({ b: { interval: 'often' } })).message).toBe(`${P}.circuitBreakers.b.interval: "often" is not a duration (e.g. 500ms, 5s, 1m30s, PT5S)`);
  });

  it('a breaker timeout that is not a duration', () => {
    expect(configError(breakers({ b: { timeout: '-5s' } })).message).toBe(`${P}.circuitBreakers.b.timeout: "-5s" is not a duration (e.g. 500ms, 5s, 1m30s, PT5S)`);
  });

  it('a trip that is not a string', () => {
    expect(configError(breakers({ b: { trip: 5 } })).message).toBe(`${P}.circuitBreakers.b.trip: must be an expression string (e.g. "consecutiveFailures > 5")`);
  });

  it('a trip with a syntax error names the field and the problem', () => {
    expect(configError(breakers({ b: { trip: 'consecutiveFailures >' } })).message).toBe(`${P}.circuitBreakers.b.trip: unexpected end in trip expression "consecutiveFailures >"`);
  });

  it('a trip naming an unknown counter', () => {
    expect(configError(breakers({ b: { trip: 'failures > 5' } })).message).toBe(`${P}.circuitBreakers.b.trip: unknown name "failures" (known: requests, totalSuccesses, totalFailures, consecutiveSuccesses, consecutiveFailures) in trip expression "failures > 5"`);
  });

  it('a target policy name that is not a string', () => {
    expect(configError(doc({ targets: { apps: { a: { retry: 3 } } } })).message).toBe('spec.targets.apps.a.retry: must be a policy name (a string)');
  });

  it('a target naming an unknown timeout', () => {
    expect(configError(doc({ targets: { apps: { orders: { timeout: 'general' } } } })).message).toBe('spec.targets.apps.orders.timeout: no timeout policy named "general" in spec.policies.timeouts');
  });

  it('a target naming an unknown retry policy', () => {
    expect(configError(doc({ targets: { actors: { Cart: { retry: 'fast' } } } })).message).toBe('spec.targets.actors.Cart.retry: no retry policy named "fast" in spec.policies.retries');
  });

  it('a target naming an unknown circuit breaker', () => {
    expect(configError(doc({ targets: { apps: { orders: { circuitBreaker: 'cb' } } } })).message).toBe('spec.targets.apps.orders.circuitBreaker: no circuit breaker policy named "cb" in spec.policies.circuitBreakers');
  });

  it('a component naming an unknown policy', () => {
    expect(configError(doc({ targets: { components: { statestore: { outbound: { retry: 'nope' } } } } })).message).toBe('spec.targets.components.statestore.outbound.retry: no retry policy named "nope" in spec.policies.retries');
  });

  it('a scoped document cannot use a policy of another scoped document', () => {
    const a = doc({ policies: { timeouts: { t: '1s' } } }, { scopes: ['web'] });
    const b = doc({ targets: { apps: { x: { timeout: 't' } } } }, { scopes: ['web'] });
    expect(configError([a, b]).message).toBe('[1].spec.targets.apps.x.timeout: no timeout policy named "t" in spec.policies.timeouts');
  });

  it('an actor breaker without a scope', () => {
    expect(configError(doc({ policies: { circuitBreakers: { b: {} } }, targets: { actors: { Cart: { circuitBreaker: 'b' } } } })).message).toBe('spec.targets.actors.Cart.circuitBreakerScope: is required when circuitBreaker is set (type, id or both)');
  });

  it('an unknown actor breaker scope', () => {
    expect(configError(doc({ targets: { actors: { Cart: { circuitBreakerScope: 'instance' } } } })).message).toBe('spec.targets.actors.Cart.circuitBreakerScope: must be one of type, id, both (got "instance")');
  });

  it('a negative circuitBreakerCacheSize', () => {
    expect(configError(doc({ targets: { apps: { a: { circuitBreakerCacheSize: -1 } } } })).message).toBe('spec.targets.apps.a.circuitBreakerCacheSize: must be an integer >= 0');
  });

  it('errors in a multi-document YAML stream name the document', () => {
    const text = 'apiVersion: dapr.io/v1alpha1\nkind: Resiliency\nspec: {}\n---\napiVersion: dapr.io/v1alpha1\nkind: Resiliency\nspec:\n  policies:\n    retries:\n      r: {maxRetries: -5}\n';
    expect(configError(text).message).toBe('[1].spec.policies.retries.r.maxRetries: must be an integer >= -1');
  });
});
