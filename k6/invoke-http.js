// @ts-check
/**
 * Service invocation over weft's Dapr-compatible HTTP API, with Dapr's performance-test
 * parameters: POST <WEFT_URL>/v1.0/invoke/<APP_ID>/method/<METHOD> at a constant arrival
 * rate (1000/s), 1 KiB body, after a 10 s warm-up at 100/s. Latency comes from k6's timings;
 * k6's arrival-rate executors start iterations on schedule, and iterations it could not start
 * are counted in dropped_iterations.
 *
 *   k6 run k6/invoke-http.js -e WEFT_URL=http://127.0.0.1:3500 -e APP_ID=testapp
 *   k6 run k6/invoke-http.js -e APP_URL=http://127.0.0.1:3000    # the baseline: the app directly
 *
 * Every setting is an environment variable: see k6/README.md.
 */
import http from 'k6/http';
import { check } from 'k6';
import { arrivalRateOptions, commonSettings, envString, formatDuration, makeBody } from './lib/config.js';
import { summaryOutputs } from './lib/summary.js';

const SCENARIO = 'invoke';
const settings = commonSettings('invoke-http');
const appId = envString('APP_ID', 'testapp');
const method = envString('METHOD', 'test');
const verb = envString('VERB', 'POST').toUpperCase();
const contentType = envString('CONTENT_TYPE', 'application/octet-stream');
// APP_URL: call the app's own route, /<METHOD>, without a node: what a node adds is the difference.
const appUrl = envString('APP_URL', '').replace(/\/+$/, '');
const url = appUrl !== '' ? appUrl + '/' + method : settings.url + '/v1.0/invoke/' + encodeURIComponent(appId) + '/method/' + method;
const body = verb === 'GET' || verb === 'HEAD' ? null : makeBody(settings.bodySize, contentType.indexOf('json') !== -1);

/** @type {import('k6/http').Params} */
const params = {
  headers: Object.assign({ 'content-type': contentType }, settings.headers),
  tags: { name: appUrl !== '' ? '/' + method : '/v1.0/invoke/' + appId + '/method/' + method },
};

export const options = arrivalRateOptions(settings, SCENARIO);

export default function () {
  const res = http.request(verb, url, body, params);
  check(res, { 'status is 2xx': (r) => r.status >= 200 && r.status < 300 });
}

/**
 * Replaces k6's standard end-of-test summary (see k6/README.md).
 * @param {import('./lib/summary.js').SummaryData} data
 * @returns {Record<string, string>}
 */
export function handleSummary(data) {
  const title =
    (appUrl !== '' ? 'baseline, the app directly: ' : 'weft invoke over HTTP: ') + verb + ' ' + url + ', ' + settings.rate + '/s for ' +
    formatDuration(settings.durationS) + ', ' + settings.vus + '-' + settings.maxVus + ' VUs, ' + settings.bodySize + ' B';
  return summaryOutputs(data, { title, scenario: SCENARIO, durationS: settings.durationS, rate: settings.rate, jsonPath: settings.summaryJson });
}
