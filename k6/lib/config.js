// @ts-check
/**
 * Settings shared by weft's k6 scripts, all from environment variables (`k6 run -e NAME=value`
 * or the process environment). Defaults follow Dapr's service-invocation performance test:
 * 1000 requests/s, 16 connections (VUs), 1 KiB bodies, a 10 s warm-up at 100 requests/s.
 */

/**
 * @param {string} name
 * @param {string} fallback
 * @returns {string}
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

/** @typedef {import('k6/options').Options} Options */

/**
 * The common part of both scripts' settings.
 * @typedef {object} Common
 * @property {string} url         WEFT_URL: the node's HTTP API, no trailing slash
 * @property {number} rate        RATE: requests per second in the measured phase
 * @property {string} duration    DURATION: length of the measured phase (k6 duration)
 * @property {number} vus         VUS: pre-allocated VUs, one connection each
 * @property {number} maxVus      MAX_VUS: ceiling when answers are slow (default VUS: a fixed connection count)
 * @property {number} bodySize    BODY_SIZE: request body bytes
 * @property {number} warmupRate  WARMUP_RATE: requests per second while warming up
 * @property {string} warmup      WARMUP: warm-up length; "0s" skips it
 * @property {number} p90Ms       P90_MS: threshold on http_req_duration p(90)
 * @property {number} p99Ms       P99_MS: threshold on http_req_duration p(99)
 * @property {number} maxFailed   MAX_FAILED: threshold on the http_req_failed rate
 * @property {number} maxDropped  MAX_DROPPED: threshold on iterations k6 could not start on time
 * @property {string} summaryJson SUMMARY_JSON: where handleSummary writes the JSON ("" for none)
 * @property {Record<string, string>} headers extra request headers (DAPR_API_TOKEN)
 */

/**
 * @param {string} script name used for the default summary file
 * @returns {Common}
 */
export function commonSettings(script) {
  const vus = envNumber('VUS', 16);
  /** @type {Record<string, string>} */
  const headers = {};
  const token = envString('DAPR_API_TOKEN', '');
  if (token !== '') headers['dapr-api-token'] = token;
  return {
    url: envString('WEFT_URL', 'http://127.0.0.1:3500').replace(/\/+$/, ''),
    rate: envNumber('RATE', 1000),
    duration: envString('DURATION', '60s'),
    vus,
    maxVus: envNumber('MAX_VUS', vus),
    bodySize: envNumber('BODY_SIZE', 1024),
    warmupRate: envNumber('WARMUP_RATE', 100),
    warmup: envString('WARMUP', '10s'),
    p90Ms: envNumber('P90_MS', 5),
    p99Ms: envNumber('P99_MS', 10),
    maxFailed: envNumber('MAX_FAILED', 0),
    maxDropped: envNumber('MAX_DROPPED', 0),
    summaryJson: envString('SUMMARY_JSON', 'summary-' + script + '.json'),
    headers,
  };
}

/**
 * k6 options for a constant-arrival-rate run with an optional warm-up scenario before it.
 * Thresholds apply to the measured scenario only (tagged `scenario:<name>`).
 *
 * @param {Common} s
 * @param {string} scenario name of the measured scenario
 * @returns {Options}
 */
export function arrivalRateOptions(s, scenario) {
  const warm = s.warmup !== '0s' && s.warmup !== '0' && s.warmupRate > 0;
  /** @type {NonNullable<Options['scenarios']>} */
  const scenarios = {};
  if (warm) {
    scenarios['warmup'] = {
      executor: 'constant-arrival-rate',
      rate: s.warmupRate,
      timeUnit: '1s',
      duration: s.warmup,
      preAllocatedVUs: s.vus,
      maxVUs: s.maxVus,
      gracefulStop: '5s',
    };
  }
  scenarios[scenario] = {
    executor: 'constant-arrival-rate',
    rate: s.rate,
    timeUnit: '1s',
    duration: s.duration,
    preAllocatedVUs: s.vus,
    maxVUs: s.maxVus,
    // Starts once the warm-up (and its graceful stop) is over.
    startTime: warm ? addDurations(s.warmup, '5s') : '0s',
    gracefulStop: '10s',
  };
  const tag = '{scenario:' + scenario + '}';
  /** @type {NonNullable<Options['thresholds']>} */
  const thresholds = {};
  thresholds['http_req_duration' + tag] = ['p(90)<' + s.p90Ms, 'p(99)<' + s.p99Ms];
  thresholds['http_req_failed' + tag] = ['rate<=' + s.maxFailed];
  thresholds['checks' + tag] = ['rate>=' + (1 - s.maxFailed)];
  // k6 had no free VU when an iteration was due (every connection was waiting on a slow
  // answer): the rate was not what was asked for, and those requests have no latency.
  thresholds['dropped_iterations' + tag] = ['count<=' + s.maxDropped];
  return {
    scenarios,
    thresholds,
    summaryTrendStats: ['avg', 'min', 'med', 'p(90)', 'p(99)', 'p(99.9)', 'max'],
    discardResponseBodies: true,
  };
}

/**
 * Adds two k6 durations written in whole seconds, minutes or hours ("10s" + "5s" = "15s").
 * @param {string} a
 * @param {string} b
 * @returns {string}
 */
export function addDurations(a, b) {
  return String(seconds(a) + seconds(b)) + 's';
}

/**
 * @param {string} d
 * @returns {number}
 */
function seconds(d) {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h)?$/.exec(d.trim());
  if (m === null) throw new Error('unsupported duration "' + d + '": use a number with ms, s, m or h');
  const n = Number(m[1]);
  const unit = m[2] === undefined ? 's' : m[2];
  return unit === 'ms' ? n / 1000 : unit === 'm' ? n * 60 : unit === 'h' ? n * 3600 : n;
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
