/**
 * Resiliency with real nodes and real failures: a target node killed under load, deadlines
 * that reach the next hop, outlier ejection, circuit breakers from a Dapr Resiliency
 * document, the retry budget in a full outage, and a slow peer beside a fast one.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { request } from 'undici';
import type { WeftNode } from '../../src/node.ts';
import { Cluster, echoHandler, url } from '../support/cluster.ts';
import { freePort as deadPort } from '../support/ports.ts';
import { ProcessGroup } from '../support/processes.ts';


async function metric(node: WeftNode, pattern: RegExp): Promise<number> {
  const text = await (await request(`http://127.0.0.1:${node.ports.metrics}/metrics`)).body.text();
  let sum = 0;
  for (const line of text.split('\n')) {
    const m = pattern.exec(line);
    if (m !== null) sum += Number(line.slice(line.lastIndexOf(' ') + 1));
  }
  return sum;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

describe('a target node killed under load', () => {
  const cluster = new Cluster();
  const procs = new ProcessGroup();
  afterAll(async () => {
    await procs.close();
    await cluster.close();
  });

  it('every call that can be retried succeeds on the other instance; the rest fail with a clear code', async () => {
    const one = await cluster.app(echoHandler('one'));
    const two = await cluster.app(echoHandler('two'));
    const common = ['--http-port', '0', '--grpc-port', '0', '--peer-port', '0', '--metrics-port', '0', '--registry', cluster.registry, '--log-level', 'error'];
    const b1 = await procs.node(['run', '--app-id', 'target', '--app-port', String(one.port), ...common]);
    await procs.node(['run', '--app-id', 'target', '--app-port', String(two.port), ...common]);
    const a = await cluster.node({ workers: 1, apps: [{ appId: 'front' }] });

    const total = 600;
    const concurrency = 8;
    const outcomes: Array<{ status: number; code?: string }> = [];
    let next = 0;
    let killed = false;
    const worker = async (): Promise<void> => {
      while (next < total) {
        const i = next++;
        if (i === 150 && !killed) {
          killed = true;
          b1.child.kill('SIGKILL');
        }
        const res = await request(url(a, `/v1.0/invoke/target/method/echo/${i}`), { method: 'POST', body: String(i) });
        const text = await res.body.text();
        if (res.statusCode === 200) {
          expect(text).toBe(String(i));
          outcomes.push({ status: 200 });
        } else {
          outcomes.push({ status: res.statusCode, code: (JSON.parse(text) as { weftCode: string }).weftCode });
        }
      }
    };
    await Promise.all(Array.from({ length: concurrency }, worker));
    const failed = outcomes.filter((o) => o.status !== 200);
    const byCode: Record<string, number> = {};
    for (const f of failed) byCode[f.code ?? 'none'] = (byCode[f.code ?? 'none'] ?? 0) + 1;
    console.log(`fault run: sent ${total}, succeeded ${total - failed.length}, failed ${failed.length} ${JSON.stringify(byCode)}`);
    expect(outcomes).toHaveLength(total);
    // Only calls already sent to the killed node when it died may fail (at most one per connection in flight).
    expect(failed.length).toBeLessThanOrEqual(concurrency);
    for (const f of failed) expect(['WEFT_PEER_UNAVAILABLE', 'WEFT_PEER_FAILED']).toContain(f.code);
    // after the kill, the calls went to the live instance
    expect(two.seen.length).toBeGreaterThan(total / 2);
    await sleep(1100); // workers send their counts once a second
    // the dead instance was passed over: by retries on the other one, or by ejecting it
    // (the calls that failed in flight are exactly the consecutive failures that eject it)
    const retries = await metric(a, /^weft_invoke_retries_total\{.*app_id="target"/);
    const ejections = await metric(a, /^weft_outlier_events_total\{.*app_id="target",event="ejected"/);
    console.log(`after the kill: ${retries} retries, ${ejections} ejections`);
    expect(retries + ejections).toBeGreaterThan(0);
  });
});

describe('deadlines, ejection, breakers, budget', () => {
  const cluster = new Cluster();
  afterAll(() => cluster.close());

  it('a per-call deadline ends the call and reaches the next hop, which abandons the app call', async () => {
    let appSawClose = false;
    const app = await cluster.app((req) => {
      req.resume();
      req.socket.once('close', () => (appSawClose = true));
    });
    await cluster.node({ apps: [{ appId: 'slow', appPort: app.port }] });
    const a = await cluster.node({ apps: [{ appId: 'front' }] });
    const res = await request(url(a, '/v1.0/invoke/slow/method/x'), { headers: { 'weft-timeout': '400ms' } });
    const body = (await res.body.json()) as { weftCode: string; message: string };
    expect(res.statusCode).toBe(504);
    expect(body.weftCode).toBe('WEFT_DEADLINE_EXCEEDED');
    for (let i = 0; i < 20 && !appSawClose; i++) await sleep(50);
    expect(appSawClose).toBe(true);
    const bad = await request(url(a, '/v1.0/invoke/slow/method/x'), { headers: { 'weft-timeout': 'soon' } });
    expect(bad.statusCode).toBe(400);
    await bad.body.text();
  });

  it('ejects an instance that keeps failing and lets it back after the ejection time', async () => {
    let flapping = true;
    const flappy = await cluster.app((req, res) => {
      req.resume();
      res.writeHead(flapping ? 503 : 200, { 'x-echo-name': 'flappy' });
      res.end();
    });
    const steady = await cluster.app(echoHandler('steady'));
    await cluster.node({ apps: [{ appId: 'flap', appPort: flappy.port }] });
    await cluster.node({ apps: [{ appId: 'flap', appPort: steady.port }] });
    const a = await cluster.node({ apps: [{ appId: 'front' }], extra: { outlierDetection: { consecutiveFailures: 3, baseEjectionTime: '1s' } } });
    const names: string[] = [];
    for (let i = 0; i < 30; i++) {
      const res = await request(url(a, '/v1.0/invoke/flap/method/echo/x'), { method: 'POST', body: 'x' });
      await res.body.text();
      names.push(res.headers['x-echo-name'] as string);
    }
    // the 503s come back as they are until the instance is ejected; then only steady answers
    expect(names.filter((n) => n === 'flappy')).toHaveLength(3);
    expect(names.slice(-20).every((n) => n === 'steady')).toBe(true);
    flapping = false;
    await sleep(1200);
    const after = new Set<string>();
    for (let i = 0; i < 6; i++) {
      const res = await request(url(a, '/v1.0/invoke/flap/method/echo/x'), { method: 'POST', body: 'x' });
      await res.body.text();
      after.add(res.headers['x-echo-name'] as string);
    }
    expect(after).toEqual(new Set(['flappy', 'steady']));
    await sleep(1100);
    expect(await metric(a, /^weft_outlier_events_total\{.*event="ejected"/)).toBe(1);
  });

  it('opens a circuit breaker on its trip condition and half-opens after its timeout', async () => {
    let failing = true;
    const app = await cluster.app((req, res) => {
      req.resume();
      res.writeHead(failing ? 500 : 200);
      res.end(failing ? 'down' : 'up');
    });
    await cluster.node({ apps: [{ appId: 'brittle', appPort: app.port }] });
    const doc = join(cluster.dir, 'resiliency.yaml');
    writeFileSync(doc, `apiVersion: dapr.io/v1alpha1
kind: Resiliency
metadata:
  name: brittle-policy
spec:
  policies:
    circuitBreakers:
      quick:
        maxRequests: 1
        timeout: 1s
        trip: consecutiveFailures > 2
  targets:
    apps:
      brittle:
        circuitBreaker: quick
`);
    const a = await cluster.node({ apps: [{ appId: 'front' }], extra: { resiliency: doc } });
    const statuses: Array<number | string> = [];
    for (let i = 0; i < 6; i++) {
      const res = await request(url(a, '/v1.0/invoke/brittle/method/x'));
      const text = await res.body.text();
      statuses.push(res.statusCode === 500 && text.includes('WEFT_CIRCUIT_OPEN') ? 'open' : res.statusCode);
    }
    expect(statuses).toEqual([500, 500, 500, 'open', 'open', 'open']);
    // the breaker kept the last three calls from the app (the node's own /dapr/config read aside)
    expect(app.seen.filter((r) => !r.url.startsWith('/dapr/'))).toHaveLength(3);
    failing = false;
    await sleep(1100);
    const probe = await request(url(a, '/v1.0/invoke/brittle/method/x'));
    expect(probe.statusCode).toBe(200);
    expect(await probe.body.text()).toBe('up');
    const again = await request(url(a, '/v1.0/invoke/brittle/method/x'));
    expect(again.statusCode).toBe(200);
    await again.body.text();
    await sleep(1100);
    expect(await metric(a, /^weft_circuit_breaker_transitions_total\{.*to="open"/)).toBe(1);
    expect(await metric(a, /^weft_circuit_breaker_transitions_total\{.*to="closed"/)).toBe(1);
  });

  it('caps retries with the retry budget in a full outage (counted)', async () => {
    const dead = await deadPort();
    const instances = [
      { appId: 'gone', address: '127.0.0.1', port: dead, nodeId: 'gone-1' },
      { appId: 'gone', address: '127.0.0.1', port: dead, nodeId: 'gone-2' },
    ];
    const a = await cluster.node({
      apps: [{ appId: 'front' }],
      resolver: { type: 'static', static: { instances } },
      extra: { retryBudget: { ratio: 0.1, minPerSecond: 1 }, outlierDetection: { consecutiveFailures: 1000 } },
    });
    const calls = 100;
    await Promise.all(Array.from({ length: calls }, async () => {
      const res = await request(url(a, '/v1.0/invoke/gone/method/x'));
      const body = (await res.body.json()) as { weftCode: string };
      expect(body.weftCode).toBe('WEFT_PEER_UNAVAILABLE');
    }));
    await sleep(1100);
    const retries = await metric(a, /^weft_invoke_retries_total\{.*app_id="gone"/);
    const exhausted = await metric(a, /^weft_retry_budget_exhausted_total\{.*app_id="gone"/);
    console.log(`budget: ${calls} calls in a full outage made ${retries} retries (without a budget: ${calls * 3}); ${exhausted} calls found the budget spent`);
    // 10% of 100 calls plus a floor of 1/s over the 10 s window
    expect(retries).toBeLessThanOrEqual(calls * 0.1 + 10);
    expect(retries).toBeGreaterThan(0);
    expect(exhausted).toBeGreaterThan(calls / 2);
  });

  it('one slow peer does not delay calls to another', async () => {
    const release: Array<() => void> = [];
    const slowApp = await cluster.app((req, res) => {
      req.resume();
      release.push(() => res.end('slow'));
    });
    const fastApp = await cluster.app(echoHandler('fast'));
    await cluster.node({ apps: [{ appId: 'tortoise', appPort: slowApp.port }] });
    await cluster.node({ apps: [{ appId: 'hare', appPort: fastApp.port }] });
    const a = await cluster.node({ workers: 1, apps: [{ appId: 'front' }] });
    const order: string[] = [];
    const slow = Array.from({ length: 20 }, async () => {
      const res = await request(url(a, '/v1.0/invoke/tortoise/method/x'));
      await res.body.text();
      order.push('slow');
    });
    while (release.length < 20) await sleep(20);
    const fast = await Promise.all(Array.from({ length: 20 }, async (_, i) => {
      const res = await request(url(a, `/v1.0/invoke/hare/method/echo/${i}`), { method: 'POST', body: 'f' });
      await res.body.text();
      order.push('fast');
      return res.statusCode;
    }));
    expect(fast.every((s) => s === 200)).toBe(true);
    for (const r of release) r();
    await Promise.all(slow);
    // all 20 fast calls finished while the 20 slow ones were still held
    expect(order.slice(0, 20).every((o) => o === 'fast')).toBe(true);
  });
});
