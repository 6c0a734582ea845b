import { describe, expect, it } from 'vitest';
import { BreakerRegistry, CircuitBreaker, REFUSED_OPEN, REFUSED_TOO_MANY, actorBreakerKey, appBreakerKey } from '../../src/resiliency/breaker.ts';
import type { BreakerPolicy, BreakerState } from '../../src/resiliency/breaker.ts';
import { compileTrip, TripSyntaxError } from '../../src/resiliency/trip.ts';
import type { BreakerCounts } from '../../src/resiliency/trip.ts';

function clock(start = 1_000) {
  let t = start;
  return { now: () => t, advance: (ms: number) => void (t += ms) };
}

function policy(over: Partial<BreakerPolicy> = {}, trip = 'consecutiveFailures > 5'): BreakerPolicy {
  return { name: 'p', maxRequests: 1, intervalMs: 0, timeoutMs: 60_000, trip: compileTrip(trip), ...over };
}

function counts(c: Partial<BreakerCounts>): BreakerCounts {
  return { requests: 0, totalSuccesses: 0, totalFailures: 0, consecutiveSuccesses: 0, consecutiveFailures: 0, ...c };
}

/** One call through the breaker; returns the permit. */
function call(b: CircuitBreaker, success: boolean): number {
  const permit = b.tryAcquire();
  if (permit >= 0) b.onResult(permit, success);
  return permit;
}

describe('trip expressions', () => {
  it('evaluate comparisons over the counters', () => {
    const t = compileTrip('consecutiveFailures > 5');
    expect(t.evaluate(counts({ consecutiveFailures: 5 }))).toBe(false);
    expect(t.evaluate(counts({ consecutiveFailures: 6 }))).toBe(true);
  });

  it('support every comparison, && and || with CEL precedence, and parentheses', () => {
    const c = counts({ requests: 10, totalFailures: 4, consecutiveFailures: 2, totalSuccesses: 6, consecutiveSuccesses: 0 });
    expect(compileTrip('requests >= 10 && totalFailures <= 4').evaluate(c)).toBe(true);
    expect(compileTrip('requests < 10 || consecutiveFailures == 2').evaluate(c)).toBe(true);
    expect(compileTrip('totalSuccesses != 6').evaluate(c)).toBe(false);
    // && binds tighter than ||
    expect(compileTrip('requests == 1 && totalFailures == 4 || consecutiveSuccesses == 0').evaluate(c)).toBe(true);
    expect(compileTrip('requests == 1 && (totalFailures == 4 || consecutiveSuccesses == 0)').evaluate(c)).toBe(false);
  });

  it('support integer arithmetic for failure ratios, truncating division', () => {
    const t = compileTrip('requests > 9 && totalFailures * 100 / requests > 50');
    expect(t.evaluate(counts({ requests: 10, totalFailures: 5 }))).toBe(false);
    expect(t.evaluate(counts({ requests: 10, totalFailures: 6 }))).toBe(true);
    expect(compileTrip('7 / 2 == 3 && 1 + 2 - 3 == 0').evaluate(counts({}))).toBe(true);
  });

  it('are false (never trip) when dividing by zero, as Dapr does on an evaluation error', () => {
    expect(compileTrip('totalFailures * 100 / requests > 50').evaluate(counts({ requests: 0, totalFailures: 3 }))).toBe(false);
  });

  it('compare booleans with == and !=', () => {
    expect(compileTrip('(requests > 1) == (totalFailures > 1)').evaluate(counts({}))).toBe(true);
  });

  const bad: Array<[string, string]> = [
    ['', 'empty expression in trip expression ""'],
    ['consecutiveFailures >', 'unexpected end in trip expression "consecutiveFailures >"'],
    ['(requests > 1', 'missing ")" in trip expression "(requests > 1"'],
    ['requests > 1 )', 'unexpected ")" in trip expression "requests > 1 )"'],
    ['requests > 1 2', 'unexpected "2" in trip expression "requests > 1 2"'],
    ['requests > 5 ; true', 'unexpected character ";" in trip expression "requests > 5 ; true"'],
    ['failures > 5', 'unknown name "failures" (known: requests, totalSuccesses, totalFailures, consecutiveSuccesses, consecutiveFailures) in trip expression "failures > 5"'],
    ['requests', 'the expression must be a comparison (true or false), not a number in trip expression "requests"'],
    ['requests && totalFailures > 1', '"&&" needs true/false operands (a comparison), not a number in trip expression "requests && totalFailures > 1"'],
    ['(requests > 1) > 2', '">" needs integer operands, not a comparison in trip expression "(requests > 1) > 2"'],
    ['requests > 99999999999999999999', 'integer 99999999999999999999 is too large in trip expression "requests > 99999999999999999999"'],
  ];
  for (const [source, message] of bad) {
    it(`reject ${JSON.stringify(source)}`, () => {
      expect(() => compileTrip(source)).toThrow(TripSyntaxError);
      expect(() => compileTrip(source)).toThrow(message);
    });
  }

  it('cannot reach anything but the counters (no eval)', () => {
    expect(() => compileTrip('constructor > 1')).toThrow(/unknown name "constructor"/);
    expect(() => compileTrip('process.exit(1)')).toThrow(TripSyntaxError);
  });
});

describe('CircuitBreaker', () => {
  it('stays closed below the trip and opens when it evaluates true on a failure', () => {
    const c = clock();
    const b = new CircuitBreaker('k', policy(), c);
    for (let i = 0; i < 5; i++) call(b, false);
    expect(b.state).toBe('closed');
    expect(b.counts).toMatchObject({ requests: 5, totalFailures: 5, consecutiveFailures: 5 });
    call(b, false);
    expect(b.state).toBe('open');
    expect(b.tryAcquire()).toBe(REFUSED_OPEN);
  });

  it('a success resets consecutive failures', () => {
    const b = new CircuitBreaker('k', policy(), clock());
    for (let i = 0; i < 5; i++) call(b, false);
    call(b, true);
    for (let i = 0; i < 5; i++) call(b, false);
    expect(b.state).toBe('closed');
    expect(b.counts).toMatchObject({ totalFailures: 10, consecutiveFailures: 5, totalSuccesses: 1 });
  });

  it('goes half-open after timeout and lets maxRequests calls through', () => {
    const c = clock();
    const b = new CircuitBreaker('k', policy({ maxRequests: 2, timeoutMs: 15_000 }, 'consecutiveFailures >= 1'), c);
    call(b, false);
    expect(b.state).toBe('open');
    c.advance(14_999);
    expect(b.state).toBe('open');
    c.advance(1);
    expect(b.state).toBe('half-open');
    const p1 = b.tryAcquire();
    const p2 = b.tryAcquire();
    expect(p1).toBeGreaterThanOrEqual(0);
    expect(p2).toBeGreaterThanOrEqual(0);
    expect(b.tryAcquire()).toBe(REFUSED_TOO_MANY);
    expect(b.wouldAllow()).toBe(false);
    b.onResult(p1, true);
    expect(b.state).toBe('half-open');
    b.onResult(p2, true);
    expect(b.state).toBe('closed');
  });

  it('one failure in half-open opens it again', () => {
    const c = clock();
    const b = new CircuitBreaker('k', policy({ maxRequests: 3 }, 'consecutiveFailures >= 1'), c);
    call(b, false);
    c.advance(60_000);
    call(b, true);
    call(b, false);
    expect(b.state).toBe('open');
  });

  it('clears counts every interval while closed, and never with interval 0', () => {
    const c = clock();
    const b = new CircuitBreaker('k', policy({ intervalMs: 10_000 }), c);
    for (let i = 0; i < 5; i++) call(b, false);
    c.advance(10_000);
    expect(b.counts.consecutiveFailures).toBe(0);
    call(b, false);
    expect(b.state).toBe('closed');

    const never = new CircuitBreaker('k', policy({ intervalMs: 0 }), c);
    for (let i = 0; i < 5; i++) call(never, false);
    c.advance(1e9);
    call(never, false);
    expect(never.state).toBe('open');
  });

  it('ignores a result from a call that started before a state change', () => {
    const c = clock();
    const b = new CircuitBreaker('k', policy({}, 'consecutiveFailures >= 1'), c);
    const slow = b.tryAcquire();
    call(b, false); // opens
    c.advance(60_000); // half-open
    b.onResult(slow, true); // stale generation: must not close it
    expect(b.state).toBe('half-open');
    expect(b.counts.totalSuccesses).toBe(0);
  });

  it('reports every state change with its key', () => {
    const c = clock();
    const changes: Array<[string, BreakerState, BreakerState]> = [];
    const b = new CircuitBreaker('app/orders/n1', policy({}, 'consecutiveFailures >= 1'), { now: c.now, onStateChange: (k, f, t) => changes.push([k, f, t]) });
    call(b, false);
    c.advance(60_000);
    call(b, true);
    expect(changes).toEqual([
      ['app/orders/n1', 'closed', 'open'],
      ['app/orders/n1', 'open', 'half-open'],
      ['app/orders/n1', 'half-open', 'closed'],
    ]);
  });
});

describe('BreakerRegistry', () => {
  it('keeps one breaker per key and drops the least recently used past maxSize', () => {
    const c = clock();
    const reg = new BreakerRegistry({ now: c.now, maxSize: 2 });
    const p = policy();
    const a = reg.get('a', p);
    reg.get('b', p);
    expect(reg.get('a', p)).toBe(a); // a is now the most recent
    reg.get('c', p); // evicts b
    expect(reg.size).toBe(2);
    expect(reg.peek('b')).toBeUndefined();
    expect(reg.peek('a')).toBe(a);
  });

  it('replaces a breaker when the policy object changes (documents reloaded)', () => {
    const reg = new BreakerRegistry({ now: clock().now });
    const first = reg.get('a', policy());
    expect(reg.get('a', policy())).not.toBe(first);
  });

  it('names keys by app instance and by actor scope', () => {
    expect(appBreakerKey('orders', 'node-1')).toBe('app/orders/node-1');
    expect(actorBreakerKey('type', 'Cart', '42')).toBe('actor/Cart');
    expect(actorBreakerKey('id', 'Cart', '42')).toBe('actor/Cart/42');
  });
});
