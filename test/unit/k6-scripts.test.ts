/**
 * The pure parts of the k6 scripts' library (k6/lib), run under Node: k6 runs them as they
 * are, and they need nothing of k6 but the `__ENV` global, set here per case. What k6 itself
 * makes of the options is checked by running the scripts with a real k6 (k6/README.md).
 */
import { readdirSync, readFileSync } from 'node:fs';
import { afterEach, describe, expect, it } from 'vitest';

interface Common {
  url: string;
  rate: number;
  durationS: number;
  vus: number;
  maxVus: number;
  warmupS: number;
  warmupRate: number;
  planned: number;
  maxDropped: number;
  summaryJson: string;
}
interface Scenario {
  executor: string;
  rate: number;
  duration: string;
  startTime?: string;
  gracefulStop: string;
  preAllocatedVUs: number;
  maxVUs: number;
}
interface ConfigLib {
  parseDuration(text: string, name: string): number;
  k6Duration(seconds: number): string;
  formatDuration(seconds: number): string;
  vusFor(rate: number): { vus: number; maxVus: number };
  droppedBound(raw: string, planned: number): number;
  commonSettings(script: string): Common;
  arrivalRateOptions(s: Common, scenario: string): { scenarios: Record<string, Scenario>; thresholds: Record<string, string[]>; summaryTrendStats: string[] };
}
interface SummaryLib {
  textSummary(data: unknown, c: { title: string; scenario: string; durationS: number; rate: number; jsonPath: string }): string;
  summaryOutputs(data: unknown, c: { title: string; scenario: string; durationS: number; rate: number; jsonPath: string }): Record<string, string>;
}

// Imported by URL: plain JavaScript outside the TypeScript project (k6/tsconfig.json checks it).
const config = (await import(new URL('../../k6/lib/config.js', import.meta.url).href)) as ConfigLib;
const summary = (await import(new URL('../../k6/lib/summary.js', import.meta.url).href)) as SummaryLib;

const g = globalThis as { __ENV?: Record<string, string> };
function withEnv(env: Record<string, string>): Common {
  g.__ENV = env;
  return config.commonSettings('invoke-http');
}
afterEach(() => {
  delete g.__ENV;
});

describe('k6 scripts: durations', () => {
  it('reads k6 duration syntax, and a bare number as seconds', () => {
    expect(config.parseDuration('10', 'WARMUP')).toBe(10);
    expect(config.parseDuration('2.5', 'WARMUP')).toBe(2.5);
    expect(config.parseDuration('30s', 'DURATION')).toBe(30);
    expect(config.parseDuration('1m30s', 'WARMUP')).toBe(90);
    expect(config.parseDuration('500ms', 'WARMUP')).toBe(0.5);
    expect(config.parseDuration('1h2m3s', 'DURATION')).toBe(3723);
    expect(config.parseDuration('1.5m', 'DURATION')).toBe(90);
    expect(config.parseDuration('0s', 'WARMUP')).toBe(0);
    for (const bad of ['', 'ten', '10x', '1m30', '-5s', 's', '10 s', '1m-30s']) {
      expect(() => config.parseDuration(bad, 'WARMUP'), bad).toThrow(/WARMUP must be a duration/);
    }
  });

  it('hands k6 milliseconds with their unit, which it cannot misread', () => {
    expect(config.k6Duration(10)).toBe('10000ms');
    expect(config.k6Duration(0.5)).toBe('500ms');
    expect(config.k6Duration(90)).toBe('90000ms');
    expect(config.formatDuration(90)).toBe('1m30s');
    expect(config.formatDuration(10)).toBe('10s');
    expect(config.formatDuration(0.25)).toBe('250ms');
    expect(config.formatDuration(3600)).toBe('1h');
  });

  it('gives WARMUP=10, DURATION=30 and WARMUP=1m30s the meaning a reader expects', () => {
    const s = withEnv({ WARMUP: '10', DURATION: '30' });
    expect([s.warmupS, s.durationS]).toEqual([10, 30]);
    const o = config.arrivalRateOptions(s, 'invoke');
    expect(o.scenarios['warmup']).toMatchObject({ duration: '10000ms', gracefulStop: '1000ms' });
    // The measured phase starts when the warm-up's graceful stop is over, not 10 ms in.
    expect(o.scenarios['invoke']).toMatchObject({ duration: '30000ms', startTime: '11000ms' });

    const long = withEnv({ WARMUP: '1m30s', DURATION: '2m' });
    expect([long.warmupS, long.durationS]).toEqual([90, 120]);
    expect(config.arrivalRateOptions(long, 'invoke').scenarios['invoke']?.startTime).toBe('91000ms');

    for (const none of ['0', '0s']) {
      const o2 = config.arrivalRateOptions(withEnv({ WARMUP: none }), 'invoke');
      expect(Object.keys(o2.scenarios)).toEqual(['invoke']);
      expect(o2.scenarios['invoke']?.startTime).toBe('0ms');
    }
    expect(() => withEnv({ DURATION: '30 seconds' })).toThrow(/DURATION must be a duration/);
    expect(() => withEnv({ DURATION: '0' })).toThrow(/DURATION must be above 0/);
  });
});

describe('k6 scripts: VUs and the dropped-iterations threshold', () => {
  it('sizes VUs for 50 ms of answers at the rate, and lets k6 add more up to 250 ms', () => {
    expect(config.vusFor(1000)).toEqual({ vus: 50, maxVus: 250 });
    expect(config.vusFor(100)).toEqual({ vus: 16, maxVus: 32 }); // never under Dapr's 16 connections
    expect(config.vusFor(20_000)).toEqual({ vus: 1000, maxVus: 5000 });
    const s = withEnv({});
    expect([s.rate, s.vus, s.maxVus]).toEqual([1000, 50, 250]);
    const o = config.arrivalRateOptions(s, 'invoke');
    expect(o.scenarios['invoke']).toMatchObject({ preAllocatedVUs: 50, maxVUs: 250 });
    // The warm-up runs on the same VUs, which k6 then hands to the measured phase.
    expect(o.scenarios['warmup']).toMatchObject({ preAllocatedVUs: 50, maxVUs: 250 });
    expect(withEnv({ VUS: '16', MAX_VUS: '16' })).toMatchObject({ vus: 16, maxVus: 16 });
    expect(withEnv({ VUS: '300' })).toMatchObject({ vus: 300, maxVus: 300 });
    expect(() => withEnv({ VUS: '64', MAX_VUS: '32' })).toThrow(/MAX_VUS \(32\) must be at least VUS \(64\)/);
  });

  it('bounds dropped iterations by a share of the planned ones, or a count', () => {
    expect(config.droppedBound('0.1%', 60_000)).toBe(60);
    expect(config.droppedBound('0.1%', 500)).toBe(1); // rounded up: one short stall is not a failure
    expect(config.droppedBound('0%', 60_000)).toBe(0);
    expect(config.droppedBound('25', 60_000)).toBe(25);
    expect(() => config.droppedBound('lots', 10)).toThrow(/MAX_DROPPED/);
    const s = withEnv({ RATE: '1000', DURATION: '60s' });
    expect([s.planned, s.maxDropped]).toEqual([60_000, 60]);
    const t = config.arrivalRateOptions(s, 'invoke').thresholds;
    expect(t['dropped_iterations{scenario:invoke}']).toEqual(['count<=60']);
    expect(t['http_reqs{scenario:invoke}']).toEqual(['count>=59940']);
    expect(t['http_req_duration{scenario:invoke}']).toEqual(['p(90)<5', 'p(99)<10']);
    expect(Object.keys(t).every((k) => k.endsWith('{scenario:invoke}'))).toBe(true); // the warm-up is never judged
    expect(withEnv({ MAX_DROPPED: '0' }).maxDropped).toBe(0);
  });
});

describe('k6 scripts: the summary', () => {
  it('writes the JSON to the default file, to SUMMARY_JSON, or nowhere when it is empty', () => {
    expect(withEnv({}).summaryJson).toBe('summary-invoke-http.json');
    expect(withEnv({ SUMMARY_JSON: 'out/run.json' }).summaryJson).toBe('out/run.json');
    expect(withEnv({ SUMMARY_JSON: '' }).summaryJson).toBe('');
    const c = { title: 't', scenario: 'invoke', durationS: 10, rate: 100, jsonPath: '' };
    expect(Object.keys(summary.summaryOutputs({ metrics: {} }, c))).toEqual(['stdout']);
    expect(Object.keys(summary.summaryOutputs({ metrics: {} }, { ...c, jsonPath: 'x.json' }))).toEqual(['stdout', 'x.json']);
  });

  const data = (stats?: string[]) => ({
    options: stats ? { summaryTrendStats: stats } : undefined,
    state: { testRunDurationMs: 21_500 },
    metrics: {
      http_reqs: { type: 'counter', contains: 'default', values: { count: 2100, rate: 97.7 } },
      'http_reqs{scenario:invoke}': { type: 'counter', contains: 'default', values: { count: 1999, rate: 93 }, thresholds: { 'count>=1999': { ok: true } } },
      'http_req_duration{scenario:invoke}': {
        type: 'trend',
        contains: 'time',
        values: { avg: 1.2, min: 0.3, med: 0.9, 'p(90)': 1.8, 'p(95)': 2.4, 'p(99)': 4.1, 'p(99.9)': 9, max: 12, count: 1999 },
        thresholds: { 'p(90)<5': { ok: true }, 'p(99)<10': { ok: true } },
      },
      'http_req_failed{scenario:invoke}': { type: 'rate', contains: 'default', values: { rate: 0.0005, passes: 1, fails: 1998 }, thresholds: { 'rate<=0': { ok: false } } },
      'dropped_iterations{scenario:invoke}': { type: 'counter', contains: 'default', values: { count: 1 }, thresholds: { 'count<=2': { ok: true } } },
    },
  });
  const c = { title: 'weft invoke', scenario: 'invoke', durationS: 20, rate: 100, jsonPath: 'summary-invoke-http.json' };

  it("prints the measured phase's own count and rate, not the warm-up's", () => {
    const text = summary.textSummary(data(), c);
    // 1999 requests in the 20 s measured phase: 99.95/s, not k6's 93/s over the whole 21.5 s run.
    expect(text).toContain('measured phase (invoke, 20s at 100/s):');
    expect(text).toContain('  requests: 1999 in 20s: 100.0/s (asked 100/s)');
    expect(text).toContain('  failed: 1 of 1999 (0.050%)');
    expect(text).toContain('  dropped iterations: 1');
    expect(text).toContain('warm-up and other scenarios: 101 requests');
    expect(text).toContain('JSON summary: summary-invoke-http.json');
    expect(text).toContain('thresholds: some NOT met');
    expect(text).toContain('  FAILED http_req_failed{scenario:invoke} rate<=0');
  });

  it('prints the trend statistics k6 was given, p(95) among the defaults', () => {
    const defaults = summary.textSummary(data(), c);
    expect(defaults).toContain('  http_req_duration (ms): avg 1.200  min 0.300  med 0.900  p(90) 1.800  p(95) 2.400  p(99) 4.100  p(99.9) 9.000  max 12.000');
    // As `k6 run --summary-trend-stats "med,p(95),count"` leaves it in data.options.
    const asked = summary.textSummary(data(['med', 'p(95)', 'count']), c);
    expect(asked).toContain('  http_req_duration (ms): med 0.900  p(95) 2.400  count 1999');
    expect(asked).not.toContain('p(99) '); // only the threshold's own expression, p(99)<10, names it
    expect(summary.textSummary(data(), { ...c, jsonPath: '' })).toContain('JSON summary: off (SUMMARY_JSON is empty)');
  });
});

describe('k6 scripts: syntax k6 v0.48 reads', () => {
  it('has no numeric separators (k6 v0.48 fails to parse 3_600_000; tsc -p k6 lets it through)', () => {
    const dir = new URL('../../k6/', import.meta.url);
    const files = [...readdirSync(dir).filter((f) => f.endsWith('.js')), ...readdirSync(new URL('lib/', dir)).map((f) => `lib/${f}`)];
    expect(files).toContain('lib/config.js');
    for (const f of files) {
      const code = readFileSync(new URL(f, dir), 'utf8').replace(/\/\/.*$|\/\*[\s\S]*?\*\//gm, '');
      expect(/\b\d+(_\d+)+\b/.exec(code)?.[0], f).toBeUndefined();
    }
  });
});
