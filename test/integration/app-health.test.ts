/**
 * Unhealthy apps leave routing (issue 9, item 7), with real nodes on 127.0.0.1:
 * - a node whose app refuses connections answers WEFT_APP_REFUSED, which the caller retries on
 *   another instance: no call fails while another instance is up;
 * - with `enableAppHealthCheck`, an app failing its checks leaves the routing (the local
 *   registry's listing, or Consul's passing-only answer through a `warning` check), is not
 *   called meanwhile, and comes back once it passes again.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { request } from 'undici';
import type { WeftNode } from '../../src/node.ts';
import { configError } from '../../src/config.ts';
import { LocalResolver } from '../../src/routing/resolver-local.ts';
import { ConsulResolver } from '../../src/routing/resolver-consul.ts';
import type { Instance, Resolver } from '../../src/routing/resolver.ts';
import { Cluster, echoHandler, url } from '../support/cluster.ts';
import { FakeConsul } from '../support/consul-server.ts';
import { freePort } from '../support/ports.ts';

const clusters: Cluster[] = [];
const closers: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  await Promise.all(clusters.splice(0).map((c) => c.close()));
  for (const c of closers.splice(0).reverse()) await c();
});

function cluster(): Cluster {
  const c = new Cluster();
  clusters.push(c);
  return c;
}

async function eventually(fn: () => Promise<boolean> | boolean, what: string, timeoutMs = 8000): Promise<void> {
  const t0 = Date.now();
  while (!(await fn())) {
    if (Date.now() - t0 > timeoutMs) throw new Error(`${what}: not within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** An echo app whose /healthz answers 204, or 503 while `down`. */
async function checkedApp(c: Cluster, name: string): Promise<{ port: number; down: boolean; calls: () => number }> {
  const echo = echoHandler(name);
  const control = { port: 0, down: false, calls: () => 0 };
  const app = await c.app((req, res) => {
    if (req.url === '/healthz') {
      req.resume();
      return void res.writeHead(control.down ? 503 : 204).end();
    }
    echo(req, res);
  });
  control.port = app.port;
  control.calls = () => app.seen.filter((r) => r.url !== '/healthz').length;
  return control;
}

/** Who answers `n` calls from `caller` (by the echo app's name); every call must succeed. */
async function answers(caller: WeftNode, n: number): Promise<string[]> {
  const names: string[] = [];
  for (let i = 0; i < n; i++) {
    const res = await request(url(caller, `/v1.0/invoke/echo/method/echo/${i}`), { method: 'POST', body: `n${i}` });
    const text = await res.body.text();
    expect(res.statusCode, text).toBe(200);
    names.push(String(res.headers['x-echo-name']));
  }
  return names;
}

/** The instances of `echo` a resolver lists right now (what every caller routes by). */
async function listed(resolver: Resolver): Promise<string[]> {
  return new Promise((resolve) => {
    const stop = resolver.watch({ appId: 'echo', namespace: 'default' }, (list: readonly Instance[]) => {
      stop();
      resolve(list.map((i) => i.nodeId));
    });
  });
}

const HEALTH = { enableAppHealthCheck: true, appHealthProbeInterval: 1, appHealthProbeTimeout: 300, appHealthThreshold: 2 };

describe.each([{ workers: 0 }, { workers: 1 }])('a refused connection to the app (workers: $workers)', ({ workers }) => {
  it('is retried on another instance: no call fails while one is up', async () => {
    const c = cluster();
    const live = await c.app(echoHandler('live'));
    await c.node({ apps: [{ appId: 'echo', appPort: await freePort() }] }); // its app is down
    await c.node({ apps: [{ appId: 'echo', appPort: live.port }] });
    const caller = await c.node({ workers, apps: [{ appId: 'front' }] });
    await eventually(async () => (await listed(new LocalResolverFor(c).r)).length === 2, 'both instances listed');
    const names = await answers(caller, 30);
    expect(new Set(names)).toEqual(new Set(['live']));
  });
});

/** A resolver reading the cluster's registry, as any caller does. */
class LocalResolverFor {
  readonly r: LocalResolver;
  constructor(c: Cluster) {
    this.r = new LocalResolver({ nodeId: 'observer', options: { path: c.registry, ttl: '2s', refresh: '100ms' }, log: () => {}, configError });
    void this.r.start();
    closers.push(() => this.r.close());
  }
}

describe('app health checks', () => {
  it('local registry: an unhealthy app leaves routing and is not called; it comes back when healthy', async () => {
    const c = cluster();
    const sick = await checkedApp(c, 'sick');
    const fine = await checkedApp(c, 'fine');
    const b = await c.node({ apps: [{ appId: 'echo', appPort: sick.port, ...HEALTH }] });
    const d = await c.node({ apps: [{ appId: 'echo', appPort: fine.port, ...HEALTH }] });
    const caller = await c.node({ workers: 1, apps: [{ appId: 'front' }] });
    const observer = new LocalResolverFor(c).r;
    await eventually(async () => (await listed(observer)).length === 2, 'both listed');
    expect(new Set(await answers(caller, 10))).toEqual(new Set(['sick', 'fine']));

    sick.down = true;
    await eventually(async () => (await listed(observer)).join() === d.nodeId, 'the sick instance out of the listing');
    expect((await request(url(b, '/v1.0/healthz?appid=echo'))).statusCode).toBe(500);
    const meta = (await (await request(url(b, '/v1.0/metadata'))).body.json()) as { extended: { appHealth: Record<string, { state: string }> }; appConnectionProperties: Record<string, unknown> };
    expect(meta.extended.appHealth['echo']?.state).toBe('unhealthy');
    expect(meta.appConnectionProperties['health']).toEqual({ healthCheckPath: '/healthz', healthProbeInterval: '1s', healthProbeTimeout: '300ms', healthThreshold: 2 });
    const before = sick.calls();
    expect(new Set(await answers(caller, 20))).toEqual(new Set(['fine']));
    expect(sick.calls()).toBe(before);

    sick.down = false;
    await eventually(async () => (await listed(observer)).length === 2, 'the instance back in the listing');
    expect((await request(url(b, '/v1.0/healthz?appid=echo'))).statusCode).toBe(204);
    await eventually(async () => (await answers(caller, 4)).includes('sick'), 'calls reaching it again');
  });

  it('consul: the check turns warning (out of passing-only answers, never reaped) and passing again', async () => {
    const fake = new FakeConsul({ reapInterval: 100, deregisterMin: 0 });
    await fake.start();
    closers.push(() => fake.stop());
    const c = cluster();
    const sick = await checkedApp(c, 'sick');
    const resolver = { type: 'consul', consul: { address: fake.address, checkTtl: '2s', deregisterCriticalServiceAfter: '1s' } };
    const b = await c.node({ resolver, apps: [{ appId: 'echo', appPort: sick.port, ...HEALTH }] });
    const observer = new ConsulResolver({ nodeId: 'observer', options: { address: fake.address }, log: () => {}, configError }, {});
    closers.push(() => observer.close());
    const check = `service:weft:${b.nodeId}:default:echo`;
    const status = (): string | undefined => fake.catalog().flatMap((s) => s.Checks).find((k) => k.CheckID === check)?.Status;
    await eventually(async () => (await listed(observer)).join() === b.nodeId, 'listed');
    expect(status()).toBe('passing');

    sick.down = true;
    await eventually(() => status() === 'warning', 'the check in warning');
    await eventually(async () => (await listed(observer)).length === 0, 'out of the passing-only answer');
    // Warning is not critical: well past deregisterCriticalServiceAfter, the entry is still there.
    await new Promise((r) => setTimeout(r, 2500));
    expect(status()).toBe('warning');

    sick.down = false;
    await eventually(() => status() === 'passing', 'passing again');
    await eventually(async () => (await listed(observer)).join() === b.nodeId, 'listed again');
  });
});
