// @ts-check
/**
 * Actor method calls through weft's Dapr-compatible HTTP API:
 * PUT <WEFT_URL>/v1.0/actors/<ACTOR_TYPE>/<id>/method/<METHOD> at a constant arrival rate,
 * spreading the calls round robin over ACTOR_IDS actor ids (`<ACTOR_ID_PREFIX>0` ...), so
 * that turn-based locking and placement are exercised without one hot actor.
 * The defaults make the same calls as the harness's `actors` path (bench/run.ts):
 * PUT /v1.0/actors/Counter/bench-{0..999}/method/get. Needs an app that hosts ACTOR_TYPE behind
 * the node (it answers GET /dapr/config with the type and PUT /actors/<type>/<id>/method/<m>):
 * examples/actor-app.ts hosts `Counter`; one written with a Dapr SDK works too.
 * With ACTOR_APP_URL the calls go to that actor app directly, PUT /actors/<type>/<id>/method/<m>
 * (the call a node makes on the owner's side): the baseline, as the harness's `actors-baseline`.
 *
 *   k6 run k6/actors.js -e WEFT_URL=http://127.0.0.1:3500 -e ACTOR_IDS=100
 *   k6 run k6/actors.js -e ACTOR_APP_URL=http://127.0.0.1:3002
 *
 * Every setting is an environment variable: see k6/README.md.
 */
import http from 'k6/http';
import { check } from 'k6';
import exec from 'k6/execution';
import { arrivalRateOptions, commonSettings, envNumber, envString, formatDuration, makeBody } from './lib/config.js';
import { summaryOutputs } from './lib/summary.js';

const SCENARIO = 'actors';
const settings = commonSettings('actors');
const actorType = envString('ACTOR_TYPE', 'Counter');
const method = envString('METHOD', 'get');
const idCount = Math.max(1, Math.floor(envNumber('ACTOR_IDS', 1000)));
const idPrefix = envString('ACTOR_ID_PREFIX', 'bench-');
const appUrl = envString('ACTOR_APP_URL', '').replace(/\/+$/, '');
const direct = appUrl !== '';
const routePrefix = direct ? '/actors/' : '/v1.0/actors/';
const base = (direct ? appUrl : settings.url) + routePrefix + encodeURIComponent(actorType) + '/';
const suffix = '/method/' + method;
const body = makeBody(settings.bodySize, true);

/** @type {import('k6/http').Params} */
const params = {
  headers: Object.assign({ 'content-type': 'application/json' }, settings.headers),
  // One name for every id, so that k6 does not keep a time series per actor.
  tags: { name: routePrefix + actorType + '/{id}' + suffix },
};

export const options = arrivalRateOptions(settings, SCENARIO);

export default function () {
  // iterationInTest is unique across VUs within a scenario: an even spread over the ids.
  const id = idPrefix + String(exec.scenario.iterationInTest % idCount);
  const res = http.put(base + encodeURIComponent(id) + suffix, body, params);
  check(res, { 'status is 2xx': (r) => r.status >= 200 && r.status < 300 });
}

/**
 * Replaces k6's standard end-of-test summary (see k6/README.md).
 * @param {import('./lib/summary.js').SummaryData} data
 * @returns {Record<string, string>}
 */
export function handleSummary(data) {
  const title =
    (direct ? 'baseline, the actor app directly: PUT ' : 'weft actor calls: PUT ') + base + '{' + idPrefix + '0..' + (idCount - 1) + '}' + suffix + ', ' +
    settings.rate + '/s for ' + formatDuration(settings.durationS) + ', ' + settings.vus + '-' + settings.maxVus + ' VUs, ' + settings.bodySize + ' B';
  return summaryOutputs(data, { title, scenario: SCENARIO, durationS: settings.durationS, rate: settings.rate, jsonPath: settings.summaryJson });
}
