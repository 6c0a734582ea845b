// @ts-check
/**
 * Settings shared by weft's k6 scripts, all from environment variables (`k6 run -e NAME=value`
 * or the process environment), each read and checked once here. Defaults follow Dapr's
 * service-invocation performance test: 1000 requests/s, 1 KiB bodies, 60 s measured after a
 * 10 s warm-up at 100 requests/s.
 */

/**
 * @param {string} name
 * @param {string} fallback
 * @returns {string} the variable, or `fallback` when it is unset or empty
 */
export function envString(name, fallback) {
  const value = __ENV[name];
  return value === undefined || value === '' ? fallback : value;
}

/**
 * @param {string} name
 * @param {number} fallback
 * @returns {number}
 */
export function envNumber(name, fallback) {
  const raw = envString(name, '');
  if (raw === '') return fallback;
  const value = Number(raw);
  if (!isFinite(value) || value < 0) throw new Error(name + ' must be a non-negative number (got "' + raw + '")');
  return value;
}

/** Seconds per unit of k6's (Go's) duration syntax, plus `d` as k6 accepts it. */
/** @type {Record<string, number>} */
const UNIT_SECONDS = { ms: 0.001, s: 1, m: 60, h: 3600, d: 86400 };

/**
 * A duration in seconds, from k6's own syntax (`500ms`, `30s`, `1m30s`, `1h`, `1.5s`) or a bare
 * number, which here means seconds (k6 itself reads a bare number as milliseconds: these
 * scripts never hand it one).
 * @param {string} text
 * @param {string} name what is being read, for the error message
 * @returns {number}
 */
export function parseDuration(text, name) {
  const t = text.trim();
  if (/^\d+(\.\d+)?$/.test(t)) return Number(t);
  const part = /(\d+(?:\.\d+)?)(ms|s|m|h|d)/g;
  let seconds = 0;
  let consumed = 0;
  /** @type {RegExpExecArray | null} */
  let m;
  while ((m = part.exec(t)) !== null) {
    if (m.index !== consumed) break;
    seconds += Number(m[1]) * /** @type {number} */ (UNIT_SECONDS[/** @type {string} */ (m[2])]);
    consumed = part.lastIndex;
  }
  if (consumed === 0 || consumed !== t.length) {
    throw new Error(name + ' must be a duration such as 30, 30s, 500ms or 1m30s (a bare number is seconds); got "' + text + '"');
  }
  return seconds;
}

/**
 * @param {string} name
 * @param {number} fallbackSeconds
 * @returns {number} seconds
 */
export function envDuration(name, fallbackSeconds) {
  const raw = envString(name, '');
  return raw === '' ? fallbackSeconds : parseDuration(raw, name);
}

/**
 * What k6 is given: whole milliseconds with their unit, which k6 cannot misread.
 * @param {number} seconds
 * @returns {string}
 */
export function k6Duration(seconds) {
  return String(Math.round(seconds * 1000)) + 'ms';
}

/**
 * For titles: `1m30s`, `10s`, `250ms`.
 * @param {number} seconds
 * @returns {string}
 */
export function formatDuration(seconds) {
  const ms = Math.round(seconds * 1000);
  if (ms < 1000) return String(ms) + 'ms';
  const h = Math.floor(ms / 3600000);
  const m = Math.floor((ms % 3600000) / 60000);
  const s = (ms % 60000) / 1000;
  return (h > 0 ? h + 'h' : '') + (m > 0 ? m + 'm' : '') + (s > 0 || ms % 60000 !== 0 ? String(s) + 's' : '');
}

/**
 * How many iterations in flight k6 must be able to hold without dropping any: arrivals per
 * second × how long each may take (Little's law).
 */
export const VU_HEADROOM = {
  /** Pre-allocated VUs cover answers up to 50 ms at the full rate: a healthy target answers in a few. */
  preAllocatedS: 0.05,
  /** k6 may add VUs up to 250 ms of answers at the full rate (a stall, k6's own GC pause). */
  maxS: 0.25,
  /** At least as many VUs as Dapr's method has connections. */
  min: 16,
};

/**
 * VUs for an arrival rate: `vus` pre-allocated (each keeps a connection of its own) and up to
 * `maxVus` when answers are slow.
 * @param {number} rate requests per second
 * @returns {{ vus: number, maxVus: number }}
 */
export function vusFor(rate) {
  const vus = Math.max(VU_HEADROOM.min, Math.ceil(rate * VU_HEADROOM.preAllocatedS));
  return { vus, maxVus: Math.max(vus * 2, Math.ceil(rate * VU_HEADROOM.maxS)) };
}

/**
 * MAX_DROPPED: a count of iterations ("25") or a share of the measured phase's planned
 * iterations ("0.1%", rounded up); the threshold's bound as a count.
 * @param {string} raw
 * @param {number} planned
 * @returns {number}
 */
export function droppedBound(raw, planned) {
  const t = raw.trim();
  const pct = /^(\d+(?:\.\d+)?)%$/.exec(t);
  if (pct !== null) return Math.ceil((planned * Number(pct[1])) / 100);
  if (/^\d+$/.test(t)) return Number(t);
  throw new Error('MAX_DROPPED must be a count (25) or a share of the planned iterations (0.1%); got "' + raw + '"');
}

/** @typedef {import('k6/options').Options} Options */

/**
 * The common part of both scripts' settings.
 * @typedef {object} Common
 * @property {string} url         WEFT_URL: the node's HTTP API, no trailing slash
 * @property {number} rate        RATE: requests per second in the measured phase
 * @property {number} durationS   DURATION: length of the measured phase, s
 * @property {number} vus         VUS: pre-allocated VUs, one connection each
 * @property {number} maxVus      MAX_VUS: ceiling when answers are slow (more connections)
 * @property {number} bodySize    BODY_SIZE: request body bytes
 * @property {number} warmupRate  WARMUP_RATE: requests per second while warming up
 * @property {number} warmupS     WARMUP: warm-up length, s; 0 skips it
 * @property {number} p90Ms       P90_MS: threshold on http_req_duration p(90)
 * @property {number} p99Ms       P99_MS: threshold on http_req_duration p(99)
 * @property {number} maxFailed   MAX_FAILED: threshold on the http_req_failed rate
 * @property {number} planned     iterations the measured phase is to start (rate × duration)
 * @property {number} maxDropped  MAX_DROPPED as a count: most iterations k6 may fail to start on time
 * @property {string} summaryJson SUMMARY_JSON: where handleSummary writes the JSON ("" for none)
 * @property {Record<string, string>} headers extra request headers (DAPR_API_TOKEN)
 */

/**
 * @param {string} script name used for the default summary file
 * @returns {Common}
 */
export function commonSettings(script) {
  const rate = envNumber('RATE', 1000);
  if (rate <= 0) throw new Error('RATE must be above 0');
  const durationS = envDuration('DURATION', 60);
  if (durationS <= 0) throw new Error('DURATION must be above 0');
  const sized = vusFor(rate);
  const vus = Math.max(1, Math.floor(envNumber('VUS', sized.vus)));
  const maxVus = Math.floor(envNumber('MAX_VUS', Math.max(vus, sized.maxVus)));
  if (maxVus < vus) throw new Error('MAX_VUS (' + maxVus + ') must be at least VUS (' + vus + ')');
  const planned = Math.floor(rate * durationS);
  /** @type {Record<string, string>} */
  const headers = {};
  const token = envString('DAPR_API_TOKEN', '');
  if (token !== '') headers['dapr-api-token'] = token;
  const summary = __ENV['SUMMARY_JSON'];
  return {
    url: envString('WEFT_URL', 'http://127.0.0.1:3500').replace(/\/+$/, ''),
    rate,
    durationS,
    vus,
    maxVus,
    bodySize: envNumber('BODY_SIZE', 1024),
    warmupRate: envNumber('WARMUP_RATE', 100),
    warmupS: envDuration('WARMUP', 10),
    p90Ms: envNumber('P90_MS', 5),
    p99Ms: envNumber('P99_MS', 10),
    maxFailed: envNumber('MAX_FAILED', 0),
    planned,
    maxDropped: droppedBound(envString('MAX_DROPPED', '0.1%'), planned),
    // Unset: the default file; set but empty: no JSON at all.
    summaryJson: summary === undefined ? 'summary-' + script + '.json' : summary,
    headers,
  };
}

/** The trend statistics printed when the command line does not choose (`--summary-trend-stats`). */
export const TREND_STATS = ['avg', 'min', 'med', 'p(90)', 'p(95)', 'p(99)', 'p(99.9)', 'max'];

/** The warm-up's graceful stop: its last requests finish before the measured phase starts. */
const WARMUP_GRACE_S = 1;

/**
 * k6 options for a constant-arrival-rate run with an optional warm-up scenario before it.
 * Thresholds apply to the measured scenario only (sub-metrics tagged `scenario:<name>`), which
 * also puts the measured phase's own figures in the summary data.
 *
 * @param {Common} s
 * @param {string} scenario name of the measured scenario
 * @returns {Options}
 */
export function arrivalRateOptions(s, scenario) {
  const warm = s.warmupS > 0 && s.warmupRate > 0;
  /** @type {NonNullable<Options['scenarios']>} */
  const scenarios = {};
  if (warm) {
    // The same VUs as the measured phase: k6 hands them on when the scenarios do not overlap,
    // so the measured phase starts on connections the warm-up opened.
    scenarios['warmup'] = {
      executor: 'constant-arrival-rate',
      rate: s.warmupRate,
      timeUnit: '1s',
      duration: k6Duration(s.warmupS),
      preAllocatedVUs: s.vus,
      maxVUs: s.maxVus,
      gracefulStop: k6Duration(WARMUP_GRACE_S),
    };
  }
  scenarios[scenario] = {
    executor: 'constant-arrival-rate',
    rate: s.rate,
    timeUnit: '1s',
    duration: k6Duration(s.durationS),
    preAllocatedVUs: s.vus,
    maxVUs: s.maxVus,
    startTime: k6Duration(warm ? s.warmupS + WARMUP_GRACE_S : 0),
    gracefulStop: '10s',
  };
  const tag = '{scenario:' + scenario + '}';
  /** @type {NonNullable<Options['thresholds']>} */
  const thresholds = {};
  thresholds['http_req_duration' + tag] = ['p(90)<' + s.p90Ms, 'p(99)<' + s.p99Ms];
  thresholds['http_req_failed' + tag] = ['rate<=' + s.maxFailed];
  thresholds['checks' + tag] = ['rate>=' + (1 - s.maxFailed)];
  // k6 had no free VU when an iteration was due: the rate was not what was asked for, and those
  // requests have no latency. With VUs for 50 ms (up to 250 ms) of answers at the full rate a
  // healthy target drops none; the bound (0.1% of the planned iterations by default) fails a
  // target that falls behind without failing a run for one short stall of k6 itself.
  thresholds['dropped_iterations' + tag] = ['count<=' + s.maxDropped];
  // The same bound seen from the requests that were sent; it also puts the measured phase's
  // own count in the summary (k6 keeps a sub-metric only when a threshold names it).
  thresholds['http_reqs' + tag] = ['count>=' + Math.max(0, s.planned - s.maxDropped)];
  return {
    scenarios,
    thresholds,
    summaryTrendStats: TREND_STATS,
    discardResponseBodies: true,
  };
}

/**
 * A body of exactly `size` bytes. As JSON it is a string literal, so apps that parse JSON
 * bodies (actor SDKs do) accept it.
 * @param {number} size
 * @param {boolean} json
 * @returns {string}
 */
export function makeBody(size, json) {
  if (size <= 0) return '';
  if (json && size >= 2) return '"' + 'x'.repeat(size - 2) + '"';
  return 'x'.repeat(size);
}
