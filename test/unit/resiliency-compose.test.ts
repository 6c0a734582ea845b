import { describe, expect, it } from 'vitest';
import { WeftError } from '../../src/errors.ts';
import type { Failure, RetryPolicy } from '../../src/resiliency/backoff.ts';
import { BreakerRegistry, appBreakerKey } from '../../src/resiliency/breaker.ts';
import type { BreakerPolicy } from '../../src/resiliency/breaker.ts';
import { RetryBudget } from '../../src/resiliency/budget.ts';
import { compose, isHealthFailure, runWithRetries, withBreaker, withOutlier, withTimeout } from '../../src/resiliency/compose.ts';
import type { Attempt, AttemptResult, RetryOptions, Timers } from '../../src/resiliency/compose.ts';
import { OutlierDetector } from '../../src/resiliency/outlier.ts';
import { DEFAULT_RETRY } from '../../src/resiliency/policy.ts';
import { compileTrip } from '../../src/resiliency/trip.ts';

interface Inst { readonly nodeId: string }
const A: Inst = { nodeId: 'a' };
const B: Inst = { nodeId: 'b' };

function clock(start = 0) {
  let t = start;
  return { now: () => t, advance: (ms: number) => void (t += ms) };
}

const unavailable: Failure = { kind: 'transport', status: 14, neverReachedApp: true, bodyReplayable: true };
const appError: Failure = { kind: 'http', status: 500, neverReachedApp: false, bodyReplayable: true };
const ok = (value: string): AttemptResult<string> => ({ value, failure: undefined });
const failed = (failure: Failure, value?: string): AttemptResult<string> => ({ value, failure });

/** An attempt that answers from a script and records who it was sent to. */
function scripted(results: Array<AttemptResult<string>>) {
  const sent: Array<[string, number]> = [];
  const attempt: Attempt<Inst, string> = async (inst, n) => {
    sent.push([inst.nodeId, n]);
    return results.shift() ?? ok('default');
  };
  return { attempt, sent };
}

/** Retry options with a fake clock: sleeping advances it. */
function options(over: Partial<RetryOptions<Inst>> = {}) {
  const c = clock();
  const sleeps: number[] = [];
  const controller = new AbortController();
  const opts: RetryOptions<Inst> = {
    policy: DEFAULT_RETRY,
    pick: (_n, previous) => (previous === A ? B : A),
    signal: controller.signal,
    now: c.now,
    random: () => 0.5,
    sleep: async (ms) => { sleeps.push(ms); c.advance(ms); },
    ...over,
  };
  return { opts, sleeps, c, controller };
}

describe('runWithRetries', () => {
  it('returns the first success without retrying', async () => {
    const { attempt, sent } = scripted([ok('hi')]);
    const r = await runWithRetries(attempt, options().opts);
    expect(r).toMatchObject({ value: 'hi', failure: undefined, attempts: 1, stop: 'success' });
    expect(sent).toEqual([['a', 1]]);
  });

  it('retries a failure that never reached the app on another instance, with the policy delays', async () => {
    const { attempt, sent } = scripted([failed(unavailable), failed(unavailable), ok('hi')]);
    const { opts, sleeps } = options();
    const r = await runWithRetries(attempt, opts);
    expect(r).toMatchObject({ value: 'hi', attempts: 3, stop: 'success' });
    expect(sent).toEqual([['a', 1], ['b', 2], ['a', 3]]);
    expect(sleeps).toEqual([125, 250]); // full jitter at 0.5 of 250 ms, 500 ms
  });

  it('stops after maxRetries and returns the last result', async () => {
    const { attempt, sent } = scripted([failed(unavailable), failed(unavailable), failed(unavailable), failed(unavailable, 'last'), ok('late')]);
    const r = await runWithRetries(attempt, options().opts);
    expect(r).toMatchObject({ value: 'last', attempts: 4, stop: 'not-retryable' });
    expect(sent).toHaveLength(4);
  });

  it('never retries an answer from the app by default', async () => {
    const { attempt, sent } = scripted([failed(appError, '500 body')]);
    const r = await runWithRetries(attempt, options().opts);
    expect(r).toMatchObject({ value: '500 body', stop: 'not-retryable', attempts: 1 });
    expect(sent).toHaveLength(1);
  });

  it('stops when the budget is spent', async () => {
    const c = clock();
    const budget = new RetryBudget({ now: c.now, ratio: 0, minPerSecond: 0.1 }); // 1 retry per 10 s window
    const { attempt } = scripted([failed(unavailable), failed(unavailable), ok('never')]);
    const r = await runWithRetries(attempt, options({ budget }).opts);
    expect(r).toMatchObject({ stop: 'budget', attempts: 2 });
    expect(budget.window).toEqual({ requests: 1, retries: 1 });
    expect(budget.denied).toBe(1);
  });

  it('does not start a retry whose delay would pass the deadline', async () => {
    const constant: RetryPolicy = { ...DEFAULT_RETRY, policy: 'constant', jitter: 'none', durationMs: 1000, maxRetries: -1 };
    const { attempt, sent } = scripted([failed(unavailable), failed(unavailable), failed(unavailable)]);
    const { opts } = options({ policy: constant, deadline: 1500 });
    const r = await runWithRetries(attempt, opts);
    expect(r).toMatchObject({ stop: 'deadline', attempts: 2 });
    expect(sent).toHaveLength(2);
  });

  it('stops when the caller aborts during the backoff', async () => {
    const { attempt, sent } = scripted([failed(unavailable), ok('never')]);
    const ctx = options();
    const r = await runWithRetries(attempt, { ...ctx.opts, sleep: async () => { ctx.controller.abort(); } });
    expect(r).toMatchObject({ stop: 'aborted', attempts: 1 });
    expect(sent).toHaveLength(1);
  });

  it('reports no instance as WEFT_APP_NOT_FOUND', async () => {
    const { attempt } = scripted([]);
    const r = await runWithRetries(attempt, options({ pick: () => undefined }).opts);
    expect(r.stop).toBe('no-instance');
    expect(r.error?.code).toBe('WEFT_APP_NOT_FOUND');
  });

  it('treats a rejected attempt as a failure that may have reached the app (not retried)', async () => {
    const attempt: Attempt<Inst, string> = async () => { throw new Error('boom'); };
    const r = await runWithRetries(attempt, options().opts);
    expect(r).toMatchObject({ stop: 'not-retryable', attempts: 1 });
    expect(r.error?.code).toBe('WEFT_INTERNAL');
  });

  it('calls onRetry before each retry', async () => {
    const seen: Array<[number, number]> = [];
    const { attempt } = scripted([failed(unavailable), ok('x')]);
    await runWithRetries(attempt, options({ onRetry: (n, d) => seen.push([n, d]) }).opts);
    expect(seen).toEqual([[1, 125]]);
  });
});

describe('steps', () => {
  const breakerPolicy: BreakerPolicy = { name: 'b', maxRequests: 1, intervalMs: 0, timeoutMs: 10_000, trip: compileTrip('consecutiveFailures >= 2') };

  it('compose applies steps outside-in', async () => {
    const order: string[] = [];
    const tag = (name: string) => (next: Attempt<Inst, string>): Attempt<Inst, string> => async (i, n, s) => { order.push(name); return next(i, n, s); };
    await compose(tag('outer'), tag('inner'))(async () => { order.push('send'); return ok('x'); })(A, 1, new AbortController().signal);
    expect(order).toEqual(['outer', 'inner', 'send']);
  });

  it('withBreaker opens on failures and then refuses without sending', async () => {
    const c = clock();
    const reg = new BreakerRegistry({ now: c.now });
    const { attempt, sent } = scripted([failed(appError), failed(appError)]);
    const guarded = withBreaker<Inst, string>((i) => reg.get(appBreakerKey('orders', i.nodeId), breakerPolicy))(attempt);
    const signal = new AbortController().signal;
    await guarded(A, 1, signal);
    await guarded(A, 1, signal);
    const r = await guarded(A, 1, signal);
    expect(sent).toHaveLength(2);
    expect(r.failure?.kind).toBe('circuit-open');
    expect(r.error).toBeInstanceOf(WeftError);
    expect(r.error?.code).toBe('WEFT_CIRCUIT_OPEN');
    expect(r.error?.message).toBe('circuit breaker app/orders/a is open');
  });

  it('a refusal from an open breaker is not retried (Dapr treats it as permanent)', async () => {
    const c = clock();
    const reg = new BreakerRegistry({ now: c.now });
    const breaker = reg.get('k', breakerPolicy);
    for (let i = 0; i < 2; i++) breaker.onResult(breaker.tryAcquire(), false);
    const { attempt, sent } = scripted([]);
    const r = await runWithRetries(withBreaker<Inst, string>(() => breaker)(attempt), options().opts);
    expect(r).toMatchObject({ stop: 'not-retryable', attempts: 1 });
    expect(sent).toHaveLength(0);
  });

  it('withOutlier feeds successes and health failures to the detector', async () => {
    const c = clock();
    const detector = new OutlierDetector({ now: c.now, consecutiveFailures: 2 });
    detector.filter([A, B]);
    const { attempt } = scripted([failed(appError), failed(appError)]);
    const watched = withOutlier<Inst, string>(detector)(attempt);
    const signal = new AbortController().signal;
    await watched(A, 1, signal);
    await watched(A, 1, signal);
    expect(detector.isEjected('a')).toBe(true);
    await watched(B, 1, signal);
    expect(detector.isEjected('b')).toBe(false);
  });

  it('isHealthFailure: transport, 5xx and server-side gRPC codes count; 4xx and client codes do not', () => {
    expect(isHealthFailure(undefined)).toBe(false);
    expect(isHealthFailure(unavailable)).toBe(true);
    expect(isHealthFailure(appError)).toBe(true);
    expect(isHealthFailure({ ...appError, status: 404 })).toBe(false);
    expect(isHealthFailure({ ...appError, kind: 'grpc', status: 13 })).toBe(true);
    expect(isHealthFailure({ ...appError, kind: 'grpc', status: 5 })).toBe(false);
    expect(isHealthFailure({ ...appError, kind: 'circuit-open' })).toBe(false);
  });

  it('withTimeout aborts the attempt with WEFT_DEADLINE_EXCEEDED and clears its timer', async () => {
    const timers: Array<{ fn: () => void; ms: number; cleared: boolean }> = [];
    const fake: Timers = {
      setTimeout: (fn, ms) => { const t = { fn, ms, cleared: false }; timers.push(t); return t; },
      clearTimeout: (h) => { (h as { cleared: boolean }).cleared = true; },
    };
    let seen: AbortSignal | undefined;
    const slow: Attempt<Inst, string> = (_i, _n, signal) => new Promise((resolve) => {
      seen = signal;
      signal.addEventListener('abort', () => resolve(failed({ kind: 'grpc', status: 4, neverReachedApp: false, bodyReplayable: true })));
    });
    const p = withTimeout<Inst, string>(800, fake)(slow)(A, 1, new AbortController().signal);
    expect(timers[0]?.ms).toBe(800);
    timers[0]?.fn();
    const r = await p;
    expect(r.failure?.status).toBe(4);
    expect((seen?.reason as WeftError).code).toBe('WEFT_DEADLINE_EXCEEDED');
    expect(timers[0]?.cleared).toBe(true);
  });

  it('withTimeout passes the caller abort through, and is a no-op without a timeout', async () => {
    const caller = new AbortController();
    let seen: AbortSignal | undefined;
    const send: Attempt<Inst, string> = async (_i, _n, s) => { seen = s; return ok('x'); };
    caller.abort('gone');
    await withTimeout<Inst, string>(100)(send)(A, 1, caller.signal);
    expect(seen?.aborted).toBe(true);
    expect(seen?.reason).toBe('gone');
    expect(withTimeout<Inst, string>(undefined)(send)).toBe(send);
  });
});
