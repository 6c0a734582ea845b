/**
 * Actor state and reminders, measured in one run on one node (in this process) with the
 * default store (SQLite beside a temp registry) or PostgreSQL (`--pg URL`):
 *
 * 1. an actor call whose method writes state on every call (read `count`, write count + 1
 *    through the node's state API) against the state-less actor path (the same call, no
 *    state), closed loop, same concurrency, same duration: calls/s and p50/p99 each, and the
 *    ratio;
 * 2. reminders fired per second: `--fires` reminders due at once (no period), spread over
 *    1,000 actors, from registration to the app having answered the last fire;
 * 3. memory with `--reminders` (default 100,000) reminders registered through the HTTP API
 *    (due in an hour): the node's heap and RSS before and after, and after a scheduler look.
 *
 *   node bench/actor-state.ts [--seconds 10] [--concurrency 16] [--fires 20000] [--reminders 100000] [--pg URL]
 *
 * Numbers from a shared 2-core machine are noisy: compare the ratios of one run.
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { Agent, request } from 'undici';
import { validateConfig } from '../src/config.ts';
import { WeftNode } from '../src/node.ts';
import { createLogger } from '../src/observability/log.ts';

const { values } = parseArgs({ options: {
  seconds: { type: 'string', default: '10' }, concurrency: { type: 'string', default: '16' },
  fires: { type: 'string', default: '20000' }, reminders: { type: 'string', default: '100000' }, pg: { type: 'string' },
} });
const SECONDS = Number(values.seconds);
const CONCURRENCY = Number(values.concurrency);
const FIRES = Number(values.fires);
const REMINDERS = Number(values.reminders);

const dir = mkdtempSync(join(tmpdir(), 'weft-bench-state-'));
let nodePort = 0;
let fired = 0;
let onFired: (() => void) | undefined;
const agent = new Agent({ connections: 256, pipelining: 1 });

async function body(req: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of req) chunks.push(c as Buffer);
  return Buffer.concat(chunks).toString();
}

/** The actor app: `plain` (no state), `inc` (read + write state), `remind/*`. */
const app = createServer((req: IncomingMessage, res: ServerResponse) => {
  void (async () => {
    await body(req);
    const url = req.url ?? '';
    if (url === '/dapr/config') return res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ entities: ['Bench'], actorIdleTimeout: '1h' }));
    if (req.method === 'DELETE') return res.writeHead(200).end();
    const m = /^\/actors\/Bench\/([^/]+)\/method\/(.+)$/.exec(url);
    if (m === null) return res.writeHead(404).end();
    const [, id, method] = m as unknown as [string, string, string];
    if (method === 'plain') return res.writeHead(200, { 'content-type': 'application/json' }).end('{"ok":true}');
    if (method.startsWith('remind/')) {
      fired++;
      if (fired >= FIRES) onFired?.();
      return res.writeHead(200).end();
    }
    if (method === 'inc') {
      const base = `http://127.0.0.1:${nodePort}/v1.0/actors/Bench/${id}/state`;
      const got = await request(`${base}/count`, { dispatcher: agent });
      const text = await got.body.text();
      const count = got.statusCode === 204 ? 0 : Number(text);
      const put = await request(base, { method: 'POST', dispatcher: agent, body: JSON.stringify([{ operation: 'upsert', request: { key: 'count', value: count + 1 } }]) });
      await put.body.text();
      return res.writeHead(put.statusCode === 204 ? 200 : 500).end(String(count + 1));
    }
    res.writeHead(404).end();
  })().catch((err: unknown) => res.writeHead(500).end(String(err)));
});
await new Promise<void>((r) => app.listen(0, '127.0.0.1', r));
const appPort = (app.address() as { port: number }).port;

let extra: Record<string, unknown> = {};
if (values.pg !== undefined) {
  const components = join(dir, 'components');
  mkdirSync(components);
  writeFileSync(join(components, 'store.yaml'), `apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata: { name: store }\nspec:\n  type: state.postgresql\n  metadata:\n    - { name: connectionString, value: "${values.pg}" }\n    - { name: actorStateStore, value: "true" }\n`);
  extra = { resourcesPath: components };
}
const node = await WeftNode.start(validateConfig({
  http: { port: 0 }, grpc: { port: 0 }, peer: { port: 0 }, metrics: { port: 0 }, workers: 0, logLevel: 'error',
  apps: [{ appId: 'bench', appPort }], security: { plaintext: true },
  resolver: { type: 'local', local: { path: join(dir, 'registry.sqlite'), ttl: '2s', refresh: '100ms' } }, ...extra,
}, {}), { logger: createLogger('error') });
nodePort = node.ports.http;
const actorUrl = (id: string, method: string): string => `http://127.0.0.1:${nodePort}/v1.0/actors/Bench/${id}/method/${method}`;

// Wait for the type to be placed.
for (const end = Date.now() + 20_000; ;) {
  const r = await request(actorUrl('probe', 'plain'), { method: 'PUT', body: '{}', dispatcher: agent });
  await r.body.text();
  if (r.statusCode === 200) break;
  if (Date.now() > end) throw new Error('the actor type was never placed');
  await new Promise((r2) => setTimeout(r2, 100));
}

async function closedLoop(method: string): Promise<{ calls: number; perSecond: number; p50: number; p99: number; errors: number }> {
  const lat: number[] = [];
  let errors = 0;
  const end = Date.now() + SECONDS * 1000;
  await Promise.all(Array.from({ length: CONCURRENCY }, async (_, w) => {
    for (let i = 0; Date.now() < end; i++) {
      const t = process.hrtime.bigint();
      const r = await request(actorUrl(`a-${(w * 7919 + i) % 1000}`, method), { method: 'PUT', body: '{}', dispatcher: agent });
      await r.body.text();
      if (r.statusCode !== 200) errors++;
      lat.push(Number(process.hrtime.bigint() - t) / 1e6);
    }
  }));
  lat.sort((a, b) => a - b);
  const q = (p: number): number => Math.round((lat[Math.min(lat.length - 1, Math.floor(p * lat.length))] ?? 0) * 100) / 100;
  return { calls: lat.length, perSecond: Math.round(lat.length / SECONDS), p50: q(0.5), p99: q(0.99), errors };
}

// Warm both paths (activations and claims of the 1,000 ids), then measure them in turn.
await Promise.all(Array.from({ length: 1000 }, async (_, i) => {
  const r = await request(actorUrl(`a-${i}`, 'inc'), { method: 'PUT', body: '{}', dispatcher: agent });
  await r.body.text();
}));
const plain = await closedLoop('plain');
const stateful = await closedLoop('inc');

// Reminders fired per second.
const allFired = new Promise<void>((r) => (onFired = r));
const registerStart = Date.now();
const reg = async (id: string, name: string, spec: object): Promise<void> => {
  const r = await request(`http://127.0.0.1:${nodePort}/v1.0/actors/Bench/${id}/reminders/${name}`, { method: 'POST', body: JSON.stringify(spec), dispatcher: agent });
  await r.body.text();
  if (r.statusCode !== 204) throw new Error(`reminder registration answered ${r.statusCode}`);
};
const inBatches = async (n: number, fn: (i: number) => Promise<void>): Promise<void> => {
  for (let i = 0; i < n; i += 64) await Promise.all(Array.from({ length: Math.min(64, n - i) }, (_, k) => fn(i + k)));
};
const firesAt = Date.now() + 2000;
await inBatches(FIRES, (i) => reg(`a-${i % 1000}`, `once-${i}`, { dueTime: new Date(firesAt).toISOString() }));
const registeredIn = Date.now() - registerStart;
await allFired;
const fireMs = Date.now() - Math.max(firesAt, registerStart + registeredIn);

// Memory with REMINDERS registered reminders (due in an hour).
global.gc?.();
const before = process.memoryUsage();
const memStart = Date.now();
await inBatches(REMINDERS, (i) => reg(`m-${i % 10_000}`, `later-${i}`, { dueTime: '1h', period: '1h' }));
const memRegisterMs = Date.now() - memStart;
await new Promise((r) => setTimeout(r, 2500)); // at least one scheduler look over them
global.gc?.();
const after = process.memoryUsage();
const mb = (n: number): number => Math.round(n / 1e5) / 10;

const report = {
  store: values.pg === undefined ? 'state.sqlite' : 'state.postgresql',
  seconds: SECONDS, concurrency: CONCURRENCY,
  statelessCall: plain, statefulCall: stateful,
  statefulVsStateless: { throughput: Math.round((stateful.perSecond / plain.perSecond) * 100) / 100, p50: Math.round((stateful.p50 / plain.p50) * 100) / 100, p99: Math.round((stateful.p99 / plain.p99) * 100) / 100 },
  reminders: { fired: FIRES, registeredPerSecond: Math.round(FIRES / (registeredIn / 1000)), firedPerSecond: Math.round(FIRES / (fireMs / 1000)), fireMs },
  memory: { reminders: REMINDERS, registerMs: memRegisterMs, heapUsedMB: { before: mb(before.heapUsed), after: mb(after.heapUsed) }, rssMB: { before: mb(before.rss), after: mb(after.rss) }, gcExposed: global.gc !== undefined },
};
console.log(JSON.stringify(report, null, 2));

await node.stop();
await agent.close();
app.close();
rmSync(dir, { recursive: true, force: true });
