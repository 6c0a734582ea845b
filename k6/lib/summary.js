// @ts-check
/**
 * handleSummary helpers that need only k6 itself (no remote jslib import, so the scripts run
 * on machines without internet access): a short text report for stdout and the raw summary
 * as JSON for later comparison.
 */

/**
 * The parts of k6's end-of-test summary data these helpers read.
 * @typedef {{ type: string, contains: string, values: Record<string, number>, thresholds?: Record<string, { ok: boolean }> }} SummaryMetric
 * @typedef {{ metrics: Record<string, SummaryMetric>, state?: { testRunDurationMs?: number } }} SummaryData
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
 * One line per trend: avg, med, p(90), p(99), p(99.9), max in ms.
 * @param {string} name
 * @param {SummaryMetric} m
 * @returns {string}
 */
function trendLine(name, m) {
  const v = m.values;
  return (
    '  ' + name + ' ms: avg ' + num(v['avg'], 3) + '  med ' + num(v['med'], 3) + '  p(90) ' + num(v['p(90)'], 3) +
    '  p(99) ' + num(v['p(99)'], 3) + '  p(99.9) ' + num(v['p(99.9)'], 3) + '  max ' + num(v['max'], 3)
  );
}

/**
 * A plain-text summary of the measured scenario (and the totals), with each threshold.
 * @param {SummaryData} data
 * @param {string} title
 * @param {string} scenario
 * @returns {string}
 */
export function textSummary(data, title, scenario) {
  const lines = [title];
  const tag = '{scenario:' + scenario + '}';
  const metrics = data.metrics;
  const duration = metrics['http_req_duration' + tag] || metrics['http_req_duration'];
  if (duration !== undefined) lines.push(trendLine('http_req_duration' + (metrics['http_req_duration' + tag] ? tag : ''), duration));
  const waiting = metrics['http_req_waiting'];
  if (waiting !== undefined) lines.push(trendLine('http_req_waiting (all scenarios)', waiting));
  const reqs = metrics['http_reqs'];
  if (reqs !== undefined) lines.push('  http_reqs (all scenarios): ' + num(reqs.values['count'], 0) + ' at ' + num(reqs.values['rate'], 1) + '/s');
  const failed = metrics['http_req_failed' + tag] || metrics['http_req_failed'];
  if (failed !== undefined) {
    lines.push('  http_req_failed: ' + num((failed.values['rate'] || 0) * 100, 3) + '% (' + num(failed.values['passes'], 0) + ' failed of ' + num((failed.values['passes'] || 0) + (failed.values['fails'] || 0), 0) + ')');
  }
  const dropped = metrics['dropped_iterations'];
  lines.push('  dropped_iterations (all scenarios): ' + (dropped === undefined ? '0' : num(dropped.values['count'], 0)));
  const run = data.state && data.state.testRunDurationMs;
  if (run !== undefined) lines.push('  test run: ' + num(run / 1000, 1) + ' s');

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
 * What handleSummary returns: the text on stdout, the JSON in `jsonPath` unless it is ''.
 * @param {SummaryData} data
 * @param {string} title
 * @param {string} scenario
 * @param {string} jsonPath
 * @returns {Record<string, string>}
 */
export function summaryOutputs(data, title, scenario, jsonPath) {
  /** @type {Record<string, string>} */
  const out = { stdout: textSummary(data, title, scenario) };
  if (jsonPath !== '') out[jsonPath] = JSON.stringify(data, null, 2);
  return out;
}
