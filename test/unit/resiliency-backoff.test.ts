import { describe, expect, it } from 'vitest';
import { nextDelay, parseCodeRanges, shouldRetry, statusMatch } from '../../src/resiliency/backoff.ts';
import type { Failure, RetryPolicy } from '../../src/resiliency/backoff.ts';
import { DEFAULT_RETRY } from '../../src/resiliency/policy.ts';

const constant: RetryPolicy = {
  name: 'c', policy: 'constant', jitter: 'none', durationMs: 5000, initialIntervalMs: 500, multiplier: 1.5,
  randomizationFactor: 0.5, maxIntervalMs: 60_000, maxRetries: 3, matching: undefined,
};
const exponential: RetryPolicy = { ...constant, name: 'e', policy: 'exponential', jitter: 'dapr', maxIntervalMs: 2000 };

const fixed = (v: number) => () => v;

function failure(over: Partial<Failure> = {}): Failure {
  return { kind: 'transport', status: 14, neverReachedApp: true, bodyReplayable: true, ...over };
}

describe('nextDelay', () => {
  it('constant: the duration every time', () => {
    expect([1, 2, 10].map((n) => nextDelay(constant, n))).toEqual([5000, 5000, 5000]);
  });

  it("Dapr's exponential: 500 ms × 1.5^(n-1), ±50% randomization, capped at maxInterval", () => {
    const mid = fixed(0.5); // randomization at its centre
    expect([1, 2, 3, 4].map((n) => nextDelay(exponential, n, mid))).toEqual([500, 750, 1125, 1687.5]);
    expect(nextDelay(exponential, 5, mid)).toBe(2000); // 2531 capped
    expect(nextDelay(exponential, 1, fixed(0))).toBe(250);
    expect(nextDelay(exponential, 1, fixed(0.999999))).toBeCloseTo(750, 2);
    expect(nextDelay(exponential, 4, fixed(0.999999))).toBe(2000); // randomized above the cap, capped
  });

  it('full jitter: uniform in [0, min(max, initial × multiplier^(n-1))]', () => {
    expect(nextDelay(DEFAULT_RETRY, 1, fixed(0))).toBe(0);
    expect(nextDelay(DEFAULT_RETRY, 1, fixed(0.5))).toBe(125);
    expect(nextDelay(DEFAULT_RETRY, 2, fixed(0.5))).toBe(250);
    expect(nextDelay(DEFAULT_RETRY, 3, fixed(0.5))).toBe(500);
    expect(nextDelay(DEFAULT_RETRY, 9, fixed(0.5))).toBe(500); // cap 1 s
  });

  it('decorrelated jitter: uniform in [initial, 3 × previous], capped', () => {
    const p: RetryPolicy = { ...exponential, jitter: 'decorrelated', initialIntervalMs: 100, maxIntervalMs: 1000 };
    expect(nextDelay(p, 1, fixed(0))).toBe(100);
    expect(nextDelay(p, 1, fixed(0.5))).toBe(200); // [100, 300]
    expect(nextDelay(p, 2, fixed(0.5), 200)).toBe(350); // [100, 600]
    expect(nextDelay(p, 3, fixed(1), 900)).toBe(1000);
  });

  it('no jitter on an exponential policy grows deterministically', () => {
    expect(nextDelay({ ...exponential, jitter: 'none' }, 3)).toBe(1125);
  });
});

describe('shouldRetry', () => {
  it('retries a failure that never reached the app, up to maxRetries', () => {
    const f = failure();
    expect(shouldRetry(constant, 1, f)).toBe(true);
    expect(shouldRetry(constant, 3, f)).toBe(true);
    expect(shouldRetry(constant, 4, f)).toBe(false);
  });

  it('retries forever with maxRetries -1 and never with 0', () => {
    expect(shouldRetry({ ...constant, maxRetries: -1 }, 10_000, failure())).toBe(true);
    expect(shouldRetry({ ...constant, maxRetries: 0 }, 1, failure())).toBe(false);
  });

  it('never retries a body that cannot be replayed', () => {
    expect(shouldRetry(constant, 1, failure({ bodyReplayable: false }))).toBe(false);
  });

  it('never retries a local circuit-breaker refusal', () => {
    expect(shouldRetry(constant, 1, failure({ kind: 'circuit-open' }))).toBe(false);
  });

  it('without matching, never retries an answer from the app or a transport failure after sending', () => {
    expect(shouldRetry(constant, 1, failure({ kind: 'http', status: 503, neverReachedApp: false }))).toBe(false);
    expect(shouldRetry(constant, 1, failure({ kind: 'grpc', status: 14, neverReachedApp: false }))).toBe(false);
    expect(shouldRetry(constant, 1, failure({ kind: 'transport', status: 2, neverReachedApp: false }))).toBe(false);
  });

  it('with matching, also retries the listed HTTP and gRPC statuses, and only those', () => {
    const http = parseCodeRanges('429,502-504', 100, 599);
    const grpc = parseCodeRanges('8,14', 0, 16);
    if (typeof http === 'string' || typeof grpc === 'string') throw new Error(String(http) + String(grpc));
    const p: RetryPolicy = { ...constant, matching: statusMatch(http, grpc, '429,502-504', '8,14') };
    const reached = (kind: 'http' | 'grpc' | 'transport', status: number) => shouldRetry(p, 1, failure({ kind, status, neverReachedApp: false }));
    expect([429, 502, 503, 504].map((s) => reached('http', s))).toEqual([true, true, true, true]);
    expect([500, 501, 505, 200, 99, 700].map((s) => reached('http', s))).toEqual([false, false, false, false, false, false]);
    expect([8, 14].map((s) => reached('grpc', s))).toEqual([true, true]);
    expect([2, 4, 13, 17, -1].map((s) => reached('grpc', s))).toEqual([false, false, false, false, false]);
    expect(reached('transport', 14)).toBe(false);
    expect(shouldRetry(p, 1, failure({ kind: 'http', status: 503, neverReachedApp: false, bodyReplayable: false }))).toBe(false);
  });
});

describe('parseCodeRanges', () => {
  it("reads Dapr's codes and ranges", () => {
    expect(parseCodeRanges('429, 500-504,,', 100, 599)).toEqual([[429, 429], [500, 504]]);
    expect(parseCodeRanges('', 0, 16)).toEqual([]);
  });
});
