// @ts-check
/**
 * handleSummary helpers that need only k6 itself (no remote jslib import, so the scripts run
 * on machines without internet access): a short text report of the measured phase for stdout
 * and the raw summary as JSON for later comparison.
 *
 * A script that exports handleSummary replaces k6's own end-of-test summary with what it
 * returns: this text is what a run prints at the end.
 */
import { formatDuration, TREND_STATS } from './config.js';

/**
 * The parts of k6's end-of-test summary data these helpers read.
 * @typedef {{ type: string, contains: string, values: Record<string, number>, thresholds?: Record<string, { ok: boolean }> }} SummaryMetric
 * @typedef {{ metrics: Record<string, SummaryMetric>, options?: { summaryTrendStats?: string[] }, state?: { testRunDurationMs?: number } }} SummaryData
 */

/**
 * What the text summary says about the run besides the metrics.
 * @typedef {object} SummaryContext
 * @property {string} title
 * @property {string} scenario    the measured scenario's name
 * @property {number} durationS   the measured phase's length, s
 * @property {number} rate        the rate asked for in the measured phase
 * @property {string} jsonPath    where the JSON goes ("" for none)
 */

/**
 * @param {number | undefined} v
 * @param {number} digits
 * @returns {string}
 */
function num(v, digits) {
  return v === undefined || !isFinite(v) ? '-' : v.toFixed(digits);
}

/**
 * One line per trend, in ms, with the statistics k6 was asked for: the script's list, or the one
 * given with `--summary-trend-stats` (k6 passes the one in effect in `data.options`).
 * @param {string} label
 * @param {SummaryMetric} m
 * @param {string[]} stats
 * @returns {string}
 */
export function trendLine(label, m, stats) {
  const parts = stats.map((stat) => {
    const v = m.values[stat];
    // A count is a number of samples, not a time.
    return stat + ' ' + (stat === 'count' ? num(v, 0) : num(v, 3));
  });
  return '  ' + label + ' (ms): ' + parts.join('  ');
}

/**
 * @param {SummaryData} data
 * @returns {string[]}
 */
function trendStats(data) {
  const asked = data.options && data.options.summaryTrendStats;
  return asked !== undefined && asked.length > 0 ? asked : TREND_STATS;
}

/**
 * A plain-text summary of the measured scenario, with each threshold. Counts and rates are the
 * measured phase's own (sub-metrics tagged with its scenario); the warm-up shows only as the
 * requests it sent.
 * @param {SummaryData} data
 * @param {SummaryContext} c
 * @returns {string}
 */
export function textSummary(data, c) {
  const lines = [c.title];
  const tag = '{scenario:' + c.scenario + '}';
  const metrics = data.metrics;
  /** @param {string} name */
  const measured = (name) => metrics[name + tag];
  lines.push('measured phase (' + c.scenario + ', ' + formatDuration(c.durationS) + ' at ' + c.rate + '/s):');
  const duration = measured('http_req_duration');
  if (duration !== undefined) lines.push(trendLine('http_req_duration', duration, trendStats(data)));
  const reqs = measured('http_reqs');
  const count = reqs === undefined ? undefined : reqs.values['count'];
  if (count !== undefined) {
    // k6's own rate for a sub-metric divides by the whole test's duration, warm-up included.
    lines.push('  requests: ' + num(count, 0) + ' in ' + formatDuration(c.durationS) + ': ' + num(count / c.durationS, 1) + '/s (asked ' + c.rate + '/s)');
  }
  const failed = measured('http_req_failed');
  if (failed !== undefined) {
    const bad = failed.values['passes'] || 0;
    const all = bad + (failed.values['fails'] || 0);
    lines.push('  failed: ' + num(bad, 0) + ' of ' + num(all, 0) + ' (' + num((failed.values['rate'] || 0) * 100, 3) + '%)');
  }
  const dropped = measured('dropped_iterations');
  lines.push('  dropped iterations: ' + (dropped === undefined ? '0' : num(dropped.values['count'], 0)));
  const total = metrics['http_reqs'];
  if (total !== undefined && count !== undefined) lines.push('warm-up and other scenarios: ' + num((total.values['count'] || 0) - count, 0) + ' requests');
  const run = data.state && data.state.testRunDurationMs;
  if (run !== undefined) lines.push('test run: ' + num(run / 1000, 1) + ' s');
  lines.push('JSON summary: ' + (c.jsonPath === '' ? 'off (SUMMARY_JSON is empty)' : c.jsonPath));

  const verdicts = [];
  let allOk = true;
  for (const name of Object.keys(metrics).sort()) {
    const thresholds = metrics[name] && metrics[name].thresholds;
    if (thresholds === undefined) continue;
    for (const expr of Object.keys(thresholds)) {
      const t = thresholds[expr];
      const ok = t !== undefined && t.ok;
      if (!ok) allOk = false;
      verdicts.push('  ' + (ok ? 'ok    ' : 'FAILED') + ' ' + name + ' ' + expr);
    }
  }
  if (verdicts.length > 0) {
    lines.push('thresholds: ' + (allOk ? 'all met' : 'some NOT met'));
    for (const v of verdicts) lines.push(v);
  }
  return lines.join('\n') + '\n';
}

/**
 * What handleSummary returns: the text on stdout, the JSON in `c.jsonPath` unless it is ''.
 * @param {SummaryData} data
 * @param {SummaryContext} c
 * @returns {Record<string, string>}
 */
export function summaryOutputs(data, c) {
  /** @type {Record<string, string>} */
  const out = { stdout: textSummary(data, c) };
  if (c.jsonPath !== '') out[c.jsonPath] = JSON.stringify(data, null, 2);
  return out;
}
