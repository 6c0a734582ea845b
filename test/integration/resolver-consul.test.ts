/**
 * The `consul` resolver against a Consul agent: the test server in test/support by default, or
 * a real agent when CONSUL_HTTP_ADDR is set (`CONSUL_HTTP_ADDR=127.0.0.1:8500 npx vitest run
 * test/integration/resolver-consul.test.ts`; CONSUL_HTTP_TOKEN is used if the agent has ACLs).
 * Assertions read the agent's state over its HTTP API, so they hold for both; what only the
 * test server can do (stop and restart the agent, force a short reap, ACL setups) is skipped
 * on a real agent, each with the reason.
 */
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeEach, describe, expect, it } from 'vitest';
import { configError } from '../../src/config.ts';
import { ConsulResolver, parseConsulOptions, serviceId } from '../../src/routing/resolver-consul.ts';
import { createResolver, type Instance, type Registration } from '../../src/routing/resolver.ts';
import { initCa, issueNodeCert } from '../../src/security/ca.ts';
import { FakeConsul } from '../support/consul-server.ts';
import { realConsul } from '../support/real-consul.ts';

// A real agent when there is one (CONSUL_HTTP_ADDR, or a dev agent from CONSUL_BIN), else the test server.
const real = await realConsul();
afterAll(() => real?.stop());
const REAL_ADDR = real?.address;
const onReal = REAL_ADDR !== undefined;
/** Tests that need to stop, restart or reconfigure the agent: the test server only (skipped against a real agent, CONSUL_HTTP_ADDR: a test cannot stop or reconfigure someone else's Consul). */
const fakeOnly = onReal ? it.skip : it;

const TTL_MS = 1000;

interface LogLine {
  level: string;
  msg: string;
  fields: Record<string, unknown> | undefined;
}

let fake: FakeConsul | undefined;
let address: string;
const open: ConsulResolver[] = [];

beforeEach(async () => {
  if (onReal) {
    address = REAL_ADDR as string;
    return;
  }
  // Consul reaps every 30s and never sooner than 1m; the test server is told to be quicker.
  fake = new FakeConsul({ reapInterval: 100, deregisterMin: 0 });
  await fake.start();
  address = fake.address;
});

afterEach(async () => {
  await Promise.all(open.splice(0).map((r) => r.close()));
  await fake?.stop();
  fake = undefined;
});

function makeResolver(nodeId: string, options: Record<string, unknown> = {}): { r: ConsulResolver; logs: LogLine[] } {
  const logs: LogLine[] = [];
  const r = new ConsulResolver({
    nodeId,
    options: {
      address,
      checkTtl: `${TTL_MS}ms`,
      deregisterCriticalServiceAfter: '2s',
      wait: '10s',
      backoff: { initial: '50ms', max: '300ms' },
      ...options,
    },
    log: (level, msg, fields) => logs.push({ level, msg, fields }),
    configError,
  }, onReal ? process.env : {});
  open.push(r);
  return { r, logs };
}

function registration(nodeId: string, appId: string, port: number, extra: Partial<Registration> = {}): Registration {
  return { appId, namespace: 'default', nodeId, address: '127.0.0.1', port, meta: { weft_version: 'test', http_port: '3500' }, ...extra };
}

/** Records what a watch delivers, with when. */
class Recorder {
  readonly lists: Array<readonly Instance[]> = [];
  readonly at: number[] = [];
  private waiters: Array<() => void> = [];

  readonly listener = (list: readonly Instance[]): void => {
    this.lists.push(list);
    this.at.push(performance.now());
    for (const w of this.waiters.splice(0)) w();
  };

  get last(): readonly Instance[] | undefined {
    return this.lists[this.lists.length - 1];
  }

  /** Resolves with the first delivery (already seen or coming) that satisfies `ok`, and when it came. */
  async until(ok: (list: readonly Instance[]) => boolean, timeoutMs = 5000, from = 0): Promise<{ list: readonly Instance[]; at: number }> {
    const deadline = performance.now() + timeoutMs;
    for (;;) {
      for (let i = from; i < this.lists.length; i++) {
        const list = this.lists[i] as readonly Instance[];
        if (ok(list)) return { list, at: this.at[i] as number };
      }
      from = this.lists.length;
      const left = deadline - performance.now();
      if (left <= 0) throw new Error(`no matching delivery in ${timeoutMs}ms; last: ${JSON.stringify(this.last)}`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
  }
}

const nodes = (list: readonly Instance[]): string[] => list.map((i) => i.nodeId);

/** GET on the agent's HTTP API over a fresh connection (the agent may have restarted). */
function agentGet<T>(path: string): Promise<T> {
  const url = new URL(/^https?:\/\//.test(address) ? address : `http://${address}`);
  const token = onReal ? process.env['CONSUL_HTTP_TOKEN'] : undefined;
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: url.hostname, port: url.port, path, agent: false, headers: token ? { 'X-Consul-Token': token } : {} }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        if (res.statusCode !== 200) reject(new Error(`GET ${path}: ${res.statusCode} ${text}`));
        else resolve(JSON.parse(text) as T);
      });
    });
    req.on('error', reject);
    req.end();
  });
}

interface AgentService { ID: string; Service: string; Address: string; Port: number; Meta: Record<string, string>; Tags: string[] }
interface AgentCheck { CheckID: string; ServiceID: string; Status: string }

async function servicesOf(appId: string): Promise<AgentService[]> {
  const all = await agentGet<Record<string, AgentService>>('/v1/agent/services');
  return Object.values(all).filter((s) => s.Service === appId).sort((a, b) => (a.ID < b.ID ? -1 : 1));
}

async function eventually(fn: () => Promise<boolean> | boolean, timeoutMs = 5000, what = 'condition'): Promise<number> {
  const t0 = performance.now();
  for (;;) {
    if (await fn()) return performance.now() - t0;
    if (performance.now() - t0 > timeoutMs) throw new Error(`${what} not met in ${timeoutMs}ms`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

const uniqueApp = (): string => `echo-${randomUUID().slice(0, 8)}`;

describe('consul resolver: registration', () => {
  it('registers one service instance per (node, app) with a stable ID, meta, tags, address and the peer port', async () => {
    const app = uniqueApp();
    const { r } = makeResolver('node-a', { tags: ['weft', 'blue'], meta: { zone: 'z1' } });
    await r.start();
    await r.register(registration('node-a', app, 50002, { tags: ['v1'] }));
    const [svc, ...more] = await servicesOf(app);
    expect(more).toEqual([]);
    expect(svc).toMatchObject({
      ID: serviceId('node-a', 'default', app),
      Service: app,
      Address: '127.0.0.1',
      Port: 50002,
      Meta: { weft_namespace: 'default', weft_node_id: 'node-a', weft_version: 'test', http_port: '3500', zone: 'z1' },
    });
    expect([...(svc?.Tags ?? [])].sort()).toEqual(['blue', 'v1', 'weft']);
    const checks = await agentGet<Record<string, AgentCheck>>('/v1/agent/checks');
    expect(checks[`service:${serviceId('node-a', 'default', app)}`]).toMatchObject({ Status: 'passing', ServiceID: serviceId('node-a', 'default', app) });
    expect(r.status()).toMatchObject({ scheme: 'consul', healthy: true });
    expect(r.status().lastSuccessAt).toBeGreaterThan(0);
  });

  it('registers another address when told: a host name, or none (Consul answers with the agent node\'s address)', async () => {
    const app = uniqueApp();
    const named = makeResolver('node-a', { serviceAddress: 'weft-1.internal' }).r;
    await named.register(registration('node-a', app, 50002));
    expect((await servicesOf(app)).map((s) => s.Address)).toEqual(['weft-1.internal']);
    const agent = makeResolver('node-b', { serviceAddress: 'agent' }).r;
    await agent.register(registration('node-b', app, 50003));
    const byNode = Object.fromEntries((await servicesOf(app)).map((s) => [s.Meta['weft_node_id'], s.Address]));
    expect(byNode['node-b']).toBe('');
    const rec = new Recorder();
    named.watch({ appId: app, namespace: 'default' }, rec.listener);
    const { list } = await rec.until((l) => l.length === 2);
    const nodeAddress = onReal ? expect.any(String) : '127.0.0.1';
    expect(list.map((i) => [i.nodeId, i.address])).toEqual([['node-a', 'weft-1.internal'], ['node-b', nodeAddress]]);
  });

  it('re-registering the same node (again, or after a restart) replaces its entry instead of adding one', async () => {
    const app = uniqueApp();
    const first = makeResolver('node-a').r;
    await first.register(registration('node-a', app, 50002));
    await first.register(registration('node-a', app, 50003)); // same node, new port
    first.halt(); // the node dies without deregistering...
    const second = makeResolver('node-a').r; // ...and comes back
    await second.register(registration('node-a', app, 50004));
    const list = await servicesOf(app);
    expect(list.map((s) => [s.ID, s.Port])).toEqual([[serviceId('node-a', 'default', app), 50004]]);
  });

  it('a restarted node whose old check lapsed is passing as soon as register() returns (the agent keeps a re-registered check critical)', async () => {
    const app = uniqueApp();
    const check = `service:${serviceId('node-a', 'default', app)}`;
    const first = makeResolver('node-a').r;
    await first.register(registration('node-a', app, 50002));
    first.halt(); // killed: its check lapses to critical one TTL later
    await eventually(async () => (await agentGet<Record<string, AgentCheck>>('/v1/agent/checks'))[check]?.Status === 'critical', 5000, 'the check to lapse');
    const second = makeResolver('node-a').r;
    await second.register(registration('node-a', app, 50002));
    expect((await agentGet<Record<string, AgentCheck>>('/v1/agent/checks'))[check]?.Status).toBe('passing');
    expect(second.status().renewedAt).toBeGreaterThan(0);
  });

  it('keeps the TTL check passing while the node lives (well past one TTL)', async () => {
    const app = uniqueApp();
    const { r } = makeResolver('node-a');
    await r.register(registration('node-a', app, 50002));
    await new Promise((res) => setTimeout(res, TTL_MS * 2.5));
    const checks = await agentGet<Record<string, AgentCheck>>('/v1/agent/checks');
    expect(checks[`service:${serviceId('node-a', 'default', app)}`]?.Status).toBe('passing');
  });

  it('deregisters on deregister() and on close()', async () => {
    const app = uniqueApp();
    const { r } = makeResolver('node-a');
    const other = makeResolver('node-b').r;
    await r.register(registration('node-a', app, 50002));
    await other.register(registration('node-b', app, 50003));
    expect((await servicesOf(app)).length).toBe(2);
    await r.deregister(registration('node-a', app, 50002));
    expect((await servicesOf(app)).map((s) => s.Meta['weft_node_id'])).toEqual(['node-b']);
    await other.close();
    expect(await servicesOf(app)).toEqual([]);
  });

  fakeOnly('register() does not fail when Consul is down at boot; the registration lands once it is up', async () => {
    const app = uniqueApp();
    const server = fake as FakeConsul;
    await server.stop();
    const { r, logs } = makeResolver('node-a');
    await r.start();
    const t0 = performance.now();
    await r.register(registration('node-a', app, 50002));
    expect(performance.now() - t0).toBeLessThan(2000);
    expect(r.status().healthy).toBe(false);
    expect(r.status().lastError).toMatch(/cannot reach http:\/\/127\.0\.0\.1:\d+.*ECONNREFUSED/);
    await new Promise((res) => setTimeout(res, 400)); // a few retries
    expect(logs.filter((l) => l.level === 'warn').length).toBe(1); // once per outage, not per retry
    await server.start();
    await eventually(async () => (await servicesOf(app)).length === 1, 5000, 'registration after boot outage');
    await eventually(() => r.status().healthy, 2000, 'healthy');
    expect(logs.some((l) => l.msg === 'consul is reachable again')).toBe(true);
  });

  fakeOnly('a node that registers and watches nothing still sees its status recover when Consul comes up', async () => {
    const server = fake as FakeConsul;
    await server.stop();
    const { r } = makeResolver('caller-only');
    await r.start();
    expect(r.status()).toMatchObject({ healthy: false, lastError: expect.stringMatching(/^consul GET \/v1\/status\/leader: cannot reach/) });
    await server.start();
    await eventually(() => r.status().healthy, 3000, 'healthy after Consul came up');
  });
});

describe('consul resolver: watches', () => {
  it('delivers asynchronously, health-passing weft instances of the namespace only, without its internal meta', async () => {
    const app = uniqueApp();
    const a = makeResolver('node-a').r;
    const b = makeResolver('node-b').r;
    await a.register(registration('node-a', app, 50002));
    await b.register(registration('node-b', app, 50003, { address: '127.0.0.2' }));
    await b.register(registration('node-b', app, 50003, { namespace: 'prod' })); // another namespace, same name
    const rec = new Recorder();
    let sync = true;
    const stop = a.watch({ appId: app, namespace: 'default' }, (l) => {
      expect(sync).toBe(false);
      rec.listener(l);
    });
    sync = false;
    const { list } = await rec.until((l) => l.length === 2);
    expect(list).toEqual([
      { appId: app, namespace: 'default', nodeId: 'node-a', address: '127.0.0.1', port: 50002, meta: { weft_version: 'test', http_port: '3500' } },
      { appId: app, namespace: 'default', nodeId: 'node-b', address: '127.0.0.2', port: 50003, meta: { weft_version: 'test', http_port: '3500' } },
    ]);
    // A second listener of the same app gets the known list at once (still asynchronously).
    const rec2 = new Recorder();
    const stop2 = a.watch({ appId: app, namespace: 'default' }, rec2.listener);
    expect(rec2.lists.length).toBe(0);
    await rec2.until((l) => l.length === 2, 1000);
    const prod = new Recorder();
    const stop3 = a.watch({ appId: app, namespace: 'prod' }, prod.listener);
    expect(nodes((await prod.until((l) => l.length > 0)).list)).toEqual(['node-b']);
    stop();
    stop2();
    stop3();
    if (fake !== undefined) {
      // the client's own requests: passing only, filtered by namespace, blocking with index and wait
      const q = fake.requests.filter((x) => x.path === `/v1/health/service/${app}`);
      expect(q.every((x) => x.query['passing'] === 'true')).toBe(true);
      expect(q[0]?.query['filter']).toBe('Service.Meta.weft_namespace == "default"');
      expect(q.some((x) => x.query['index'] !== undefined && x.query['wait'] === '10000ms')).toBe(true);
    }
  });

  it('follows a change in Consul within a second (register, deregister)', async () => {
    const app = uniqueApp();
    const watcher = makeResolver('node-w').r;
    const rec = new Recorder();
    const stop = watcher.watch({ appId: app, namespace: 'default' }, rec.listener);
    await rec.until((l) => l.length === 0);
    await new Promise((res) => setTimeout(res, 100)); // let the blocking query be in flight

    const b = makeResolver('node-b').r;
    let t0 = performance.now();
    await b.register(registration('node-b', app, 50003));
    const added = await rec.until((l) => nodes(l).includes('node-b'));
    const addMs = added.at - t0;

    await new Promise((res) => setTimeout(res, 100));
    t0 = performance.now();
    await b.deregister(registration('node-b', app, 50003));
    const removed = await rec.until((l) => l.length === 0, 5000, rec.lists.indexOf(added.list) + 1);
    const removeMs = removed.at - t0;
    console.log(`consul watch follow delay (${onReal ? 'real agent' : 'test server'}): register ${addMs.toFixed(1)} ms, deregister ${removeMs.toFixed(1)} ms`);
    expect(addMs).toBeLessThan(5000);
    expect(removeMs).toBeLessThan(5000);
    stop();
  });

  it('drops a node that stopped refreshing its TTL (crashed) from watches, and Consul reaps it', async () => {
    const app = uniqueApp();
    const a = makeResolver('node-a').r;
    const crashing = makeResolver('node-b').r;
    await a.register(registration('node-a', app, 50002));
    await crashing.register(registration('node-b', app, 50003));
    const rec = new Recorder();
    const stop = a.watch({ appId: app, namespace: 'default' }, rec.listener);
    await rec.until((l) => l.length === 2);
    const t0 = performance.now();
    crashing.halt(); // no deregistration, no more heartbeats
    const { at } = await rec.until((l) => nodes(l).join() === 'node-a', TTL_MS * 5);
    console.log(`consul: crashed node dropped from the watch ${(at - t0).toFixed(0)} ms after its last heartbeat stopped (TTL ${TTL_MS} ms)`);
    expect(at - t0).toBeGreaterThanOrEqual(TTL_MS * 0.5);
    if (onReal) {
      // A real agent reaps no sooner than 1m and checks every 30s: too slow for a test.
      stop();
      return;
    }
    await eventually(async () => (await servicesOf(app)).length === 1, 5000, 'reaped');
    expect((await servicesOf(app)).map((s) => s.Meta['weft_node_id'])).toEqual(['node-a']);
    stop();
  });

  fakeOnly('keeps the last known good list while Consul is down, reports it, and resumes when it is back (agent restarted empty)', async () => {
    const server = fake as FakeConsul;
    const app = uniqueApp();
    const { r: a, logs } = makeResolver('node-a');
    const b = makeResolver('node-b').r;
    await a.start();
    await a.register(registration('node-a', app, 50002));
    await b.register(registration('node-b', app, 50003));
    const rec = new Recorder();
    const stop = a.watch({ appId: app, namespace: 'default' }, rec.listener);
    await rec.until((l) => l.length === 2);
    const delivered = rec.lists.length;

    await server.stop();
    await eventually(() => !a.status().healthy, 3000, 'unhealthy');
    await new Promise((res) => setTimeout(res, 800)); // several retries of every loop
    expect(rec.lists.length).toBe(delivered); // nothing new: the last known good list stays
    expect(nodes(rec.last ?? [])).toEqual(['node-a', 'node-b']);
    const st = a.status();
    expect(st.healthy).toBe(false);
    expect(st.lastError).toMatch(/^consul .*cannot reach http:\/\/127\.0\.0\.1:\d+/);
    expect(logs.filter((l) => l.level === 'warn')).toHaveLength(1); // once per outage

    await server.restart(); // forgets everything, index starts over
    // Both nodes register again; meanwhile the watch never routes with fewer instances
    // (a restarted agent's empty answer is not news for one TTL).
    await eventually(async () => (await servicesOf(app)).length === 2, 5000, 'registrations back');
    await eventually(() => a.status().healthy && b.status().healthy, 3000, 'healthy again');
    expect(logs.filter((l) => l.msg === 'consul is reachable again')).toHaveLength(1);
    expect(rec.lists.slice(delivered).filter((l) => l.length < 2)).toEqual([]);
    // and the watch follows Consul again
    const c = makeResolver('node-c').r;
    await c.register(registration('node-c', app, 50004));
    expect(nodes((await rec.until((l) => l.length === 3, 3000, delivered)).list)).toEqual(['node-a', 'node-b', 'node-c']);
    stop();
  });

  fakeOnly('after an agent restart, an instance that does not come back is dropped once the grace (one TTL) ends', async () => {
    const server = fake as FakeConsul;
    const app = uniqueApp();
    const a = makeResolver('node-a').r;
    const gone = makeResolver('node-b').r;
    await a.register(registration('node-a', app, 50002));
    await gone.register(registration('node-b', app, 50003));
    const rec = new Recorder();
    const stop = a.watch({ appId: app, namespace: 'default' }, rec.listener);
    await rec.until((l) => l.length === 2);
    gone.halt(); // node-b dies while the agent is down
    await server.restart({ downFor: 200 });
    const t0 = performance.now();
    const { at } = await rec.until((l) => nodes(l).join() === 'node-a', TTL_MS * 5);
    expect(at - t0).toBeGreaterThanOrEqual(TTL_MS * 0.5);
    stop();
  });

  fakeOnly('re-registers when the agent forgot its services without being unreachable (404 on check pass)', async () => {
    const server = fake as FakeConsul;
    const app = uniqueApp();
    const { r, logs } = makeResolver('node-a');
    await r.register(registration('node-a', app, 50002));
    server.forget();
    expect(await servicesOf(app)).toEqual([]);
    await eventually(async () => (await servicesOf(app)).length === 1, TTL_MS * 3, 're-registered');
    expect(logs.some((l) => /no longer knows this registration/.test(l.msg))).toBe(true);
    expect(r.status().healthy).toBe(true);
  });
});

describe('consul resolver: ACL, namespaces, datacenter', () => {
  fakeOnly('a refused token surfaces as a clear status error, without failing register()', async () => {
    await fake?.stop();
    fake = new FakeConsul({ token: 'right-token', reapInterval: 100, deregisterMin: 0 });
    await fake.start();
    address = fake.address;
    const app = uniqueApp();

    const { r: wrong, logs } = makeResolver('node-a', { token: 'wrong-token' });
    await wrong.register(registration('node-a', app, 50002));
    const rec = new Recorder();
    wrong.watch({ appId: app, namespace: 'default' }, rec.listener);
    await eventually(() => /403/.test(wrong.status().lastError ?? ''), 2000, 'status error');
    const st = wrong.status();
    expect(st.healthy).toBe(false);
    expect(st.lastError).toMatch(/HTTP 403 ACL not found \(ACL: check resolver\.consul\.token or CONSUL_HTTP_TOKEN\)/);
    expect(logs.filter((l) => l.level === 'warn')).toHaveLength(1);
    expect(await fake.catalog()).toEqual([]);

    const { r: anonymous } = makeResolver('node-b');
    await anonymous.register(registration('node-b', app, 50003));
    expect(anonymous.status().lastError).toMatch(/HTTP 403 Permission denied/);

    const { r: right } = makeResolver('node-c', { token: 'right-token' });
    await right.register(registration('node-c', app, 50004));
    const ok = new Recorder();
    right.watch({ appId: app, namespace: 'default' }, ok.listener);
    expect(nodes((await ok.until((l) => l.length === 1)).list)).toEqual(['node-c']);
    expect(right.status().healthy).toBe(true);
    expect(fake.requests.filter((x) => x.token === 'right-token').length).toBeGreaterThan(0);
  });

  fakeOnly('registers and watches in a Consul namespace when configured (Enterprise)', async () => {
    await fake?.stop();
    fake = new FakeConsul({ enterprise: true });
    await fake.start();
    address = fake.address;
    const app = uniqueApp();
    const { r } = makeResolver('node-a', { consulNamespace: 'team-a' });
    await r.register(registration('node-a', app, 50002));
    expect(fake.catalog().map((s) => s.Namespace)).toEqual(['team-a']);
    const rec = new Recorder();
    r.watch({ appId: app, namespace: 'default' }, rec.listener);
    expect(nodes((await rec.until((l) => l.length === 1)).list)).toEqual(['node-a']);
    expect(fake.requests.every((x) => x.namespace === 'team-a' || x.path.startsWith('/v1/status/'))).toBe(true);
  });

  fakeOnly('a namespace on Consul OSS is reported as such', async () => {
    const { r } = makeResolver('node-a', { consulNamespace: 'team-a' });
    await r.register(registration('node-a', uniqueApp(), 50002));
    expect(r.status().lastError).toMatch(/HTTP 400 .*Enterprise.*resolver\.consul\.consulNamespace needs Consul Enterprise/);
  });

  fakeOnly('asks the configured datacenter and reports an unknown one', async () => {
    const { r } = makeResolver('node-a', { datacenter: 'nowhere' });
    const rec = new Recorder();
    r.watch({ appId: uniqueApp(), namespace: 'default' }, rec.listener);
    await eventually(() => /No path to datacenter/.test(r.status().lastError ?? ''), 2000, 'datacenter error');
    expect(r.status()).toMatchObject({ healthy: false, lastError: expect.stringMatching(/^consul GET \/v1\/health\/service\/echo-\w+: HTTP 500 No path to datacenter$/) });
    expect(rec.lists).toEqual([]);
  });
});

describe('consul resolver: TLS', () => {
  fakeOnly('talks HTTPS with the CA, client certificate and key it is given, and reports a TLS failure clearly', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'weft-consul-tls-'));
    try {
      const ca = initCa(join(dir, 'ca'), { trustDomain: 'consul.test' });
      const server = issueNodeCert(ca, { nodeId: 'consul-server', ipAddresses: ['127.0.0.1'], dnsNames: ['localhost'] });
      const client = issueNodeCert(ca, { nodeId: 'weft-node' });
      const files = { ca: join(dir, 'ca.pem'), cert: join(dir, 'client.pem'), key: join(dir, 'client-key.pem') };
      writeFileSync(files.ca, ca.rootCertPem);
      writeFileSync(files.cert, client.chainPem);
      writeFileSync(files.key, client.keyPem);
      await fake?.stop();
      fake = new FakeConsul({ tls: { key: server.keyPem, cert: server.chainPem, ca: ca.rootCertPem } });
      await fake.start();
      address = fake.address; // host:port: the tls option makes it https

      const app = uniqueApp();
      const { r } = makeResolver('node-a', { tls: files });
      expect(r.options.baseUrl).toBe(fake.url);
      await r.register(registration('node-a', app, 50002));
      expect(fake.catalog().map((x) => x.Service)).toEqual([app]);
      const rec = new Recorder();
      r.watch({ appId: app, namespace: 'default' }, rec.listener);
      expect(nodes((await rec.until((l) => l.length === 1)).list)).toEqual(['node-a']);

      // no client certificate: the server (verify_incoming) refuses the handshake
      const { r: noCert } = makeResolver('node-b', { tls: { ca: files.ca } });
      await noCert.register(registration('node-b', app, 50003));
      expect(noCert.status()).toMatchObject({ healthy: false, lastError: expect.stringMatching(/^consul PUT \/v1\/agent\/service\/register: TLS with https:\/\/127\.0\.0\.1:\d+ failed: the server ended the TLS handshake: certificate required \(check resolver\.consul\.tls/) });
      // a CA that did not sign the server's certificate
      const other = initCa(join(dir, 'other'), { trustDomain: 'other.test' });
      writeFileSync(join(dir, 'other.pem'), other.rootCertPem);
      const { r: wrongCa } = makeResolver('node-c', { tls: { ...files, ca: join(dir, 'other.pem') } });
      await wrongCa.register(registration('node-c', app, 50004));
      expect(wrongCa.status().lastError).toMatch(/certificate/i);
      console.log(`consul TLS errors as reported: ${noCert.status().lastError} / ${wrongCa.status().lastError}`);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('consul resolver: configuration', () => {
  const parse = (options: Record<string, unknown>, env: NodeJS.ProcessEnv = {}): ReturnType<typeof parseConsulOptions> => parseConsulOptions(options, env, configError);
  const fails = (options: Record<string, unknown>, field: string, env: NodeJS.ProcessEnv = {}): void => {
    expect(() => parse(options, env)).toThrow(new RegExp(`^${field.replace(/[.[\]]/g, '\\$&')}: `));
  };

  it('has sensible defaults', () => {
    const o = parse({});
    expect(o).toMatchObject({
      baseUrl: 'http://127.0.0.1:8500', token: undefined, tls: undefined, datacenter: undefined, tags: [], meta: {},
      checkTtlMs: 6000, deregisterAfterMs: 60_000, consulNamespace: undefined, waitMs: 30_000,
    });
  });

  it('reads addresses as host:port or URLs, and the CONSUL_* environment as fallback', () => {
    expect(parse({ address: 'consul.internal:8500' }).baseUrl).toBe('http://consul.internal:8500');
    expect(parse({ address: 'https://consul.internal:8501/' }).baseUrl).toBe('https://consul.internal:8501');
    expect(parse({ address: '[::1]:8500' }).baseUrl).toBe('http://[::1]:8500');
    expect(parse({}, { CONSUL_HTTP_ADDR: '10.0.0.9:8500', CONSUL_HTTP_TOKEN: 't0k', CONSUL_HTTP_SSL: 'true' })).toMatchObject({ baseUrl: 'https://10.0.0.9:8500', token: 't0k' });
    expect(parse({ address: '127.0.0.1:1', token: 'mine' }, { CONSUL_HTTP_ADDR: '10.0.0.9:8500', CONSUL_HTTP_TOKEN: 'env' })).toMatchObject({ baseUrl: 'http://127.0.0.1:1', token: 'mine' });
    expect(parse({ checkTtl: '2s', deregisterCriticalServiceAfter: '5m', wait: 'PT45S' })).toMatchObject({ checkTtlMs: 2000, deregisterAfterMs: 300_000, waitMs: 45_000 });
  });

  it('names the field of every problem', () => {
    fails({ adress: 'x' }, 'resolver.consul.adress');
    fails({ address: 'ftp://x:1' }, 'resolver.consul.address');
    fails({ address: 'unix:///var/run/consul.sock' }, 'resolver.consul.address');
    fails({ address: 3 }, 'resolver.consul.address');
    fails({ checkTtl: 'soon' }, 'resolver.consul.checkTtl');
    fails({ checkTtl: '10ms' }, 'resolver.consul.checkTtl');
    fails({ deregisterCriticalServiceAfter: 'never' }, 'resolver.consul.deregisterCriticalServiceAfter');
    fails({ wait: '1h' }, 'resolver.consul.wait');
    fails({ tags: 'weft' }, 'resolver.consul.tags');
    fails({ tags: ['ok', ''] }, 'resolver.consul.tags[1]');
    fails({ meta: { 'bad key': 'x' } }, 'resolver.consul.meta.bad key');
    fails({ meta: { 'consul-x': 'x' } }, 'resolver.consul.meta.consul-x');
    fails({ meta: { weft_node_id: 'x' } }, 'resolver.consul.meta.weft_node_id');
    fails({ meta: { big: 'x'.repeat(513) } }, 'resolver.consul.meta.big');
    fails({ datacenter: 'dc 1' }, 'resolver.consul.datacenter');
    fails({ consulNamespace: 'bad ns' }, 'resolver.consul.consulNamespace');
    fails({ tls: 'yes' }, 'resolver.consul.tls');
    fails({ tls: { ca: '/nonexistent/ca.pem' } }, 'resolver.consul.tls.ca');
    fails({ tls: { cafile: 'x' } }, 'resolver.consul.tls.cafile');
    fails({ tls: { ca: import.meta.filename }, address: 'http://127.0.0.1:8500' }, 'resolver.consul.tls');
    fails({ tls: { cert: import.meta.filename } }, 'resolver.consul.tls.key');
    fails({ backoff: { initial: '2s', max: '1s' } }, 'resolver.consul.backoff.max');
    fails({ serviceAddress: 'http://x' }, 'resolver.consul.serviceAddress');
    fails({}, 'resolver.consul.address', { CONSUL_HTTP_ADDR: 'http://' });
    expect(() => parse({}, { CONSUL_HTTP_ADDR: 'http://' })).toThrow(/from CONSUL_HTTP_ADDR/);
    fails({}, 'resolver.consul.tls.ca', { CONSUL_CACERT: '/nonexistent/ca.pem' });
    expect(() => parse({}, { CONSUL_CACERT: '/nonexistent/ca.pem' })).toThrow(/from CONSUL_CACERT/);
  });

  it('takes TLS files from the config or the environment and switches to https', () => {
    const file = import.meta.filename; // any readable file stands for a PEM here
    const o = parse({ address: 'consul:8501', tls: { ca: file, cert: file, key: file, serverName: 'consul.internal' } });
    expect(o.baseUrl).toBe('https://consul:8501');
    expect(o.tls?.ca).toBeInstanceOf(Buffer);
    expect(o.tls).toMatchObject({ serverName: 'consul.internal', rejectUnauthorized: true });
    const e = parse({}, { CONSUL_HTTP_ADDR: 'https://consul:8501', CONSUL_CACERT: file, CONSUL_HTTP_SSL_VERIFY: 'false' });
    expect(e.tls).toMatchObject({ rejectUnauthorized: false });
    expect(e.tls?.ca).toBeInstanceOf(Buffer);
  });

  it('is registered as the "consul" scheme, and a bad option fails node creation naming the field', () => {
    const ctx = { nodeId: 'n', options: { checkTtl: 'x' }, log: () => {}, configError };
    expect(() => createResolver('consul', ctx)).toThrow(/^resolver\.consul\.checkTtl: /);
    const r = createResolver('consul', { ...ctx, options: { address: '127.0.0.1:1' } });
    expect(r.scheme).toBe('consul');
    expect(r.status()).toMatchObject({ healthy: false, lastError: 'consul not contacted yet' });
    return r.close();
  });
});

describe('consul resolver: actor membership', () => {
  it('lists apps announcing actor_types under the shared actors service, with their own app ids and meta updates', async () => {
    const nodeA = `n-${randomUUID()}`;
    const nodeB = `n-${randomUUID()}`;
    const { r: a } = makeResolver(nodeA);
    const { r: b } = makeResolver(nodeB);
    await a.start();
    await b.start();
    const ns = `ns${randomUUID().slice(0, 8)}`;
    const bank = (_r: ConsulResolver, nodeId: string, meta: Record<string, string>): Registration =>
      ({ appId: 'bank', namespace: ns, nodeId, address: '127.0.0.1', port: 7001, meta });
    await a.register(bank(a, nodeA, { actor_types: 'Account', weft_placement: '' }));
    await b.register(bank(b, nodeB, { http_port: '1' })); // hosts no actors
    const rec = new Recorder();
    const stop = a.watchActors(ns, rec.listener);
    const { list } = await rec.until((l) => l.length === 1);
    expect(list[0]).toMatchObject({ appId: 'bank', nodeId: nodeA, meta: { actor_types: 'Account', weft_placement: '' } });
    await b.register(bank(b, nodeB, { actor_types: 'Account' }));
    await rec.until((l) => l.length === 2);
    await a.register(bank(a, nodeA, { actor_types: 'Account', weft_placement: '42' }));
    await rec.until((l) => l.some((i) => i.nodeId === nodeA && i.meta['weft_placement'] === '42'));
    await b.register(bank(b, nodeB, { http_port: '1' })); // stops hosting actors
    await rec.until((l) => l.length === 1 && l[0]?.nodeId === nodeA);
    await a.deregister(bank(a, nodeA, {}));
    await rec.until((l) => l.length === 0);
    stop();
  });
});
