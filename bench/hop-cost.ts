/**
 * What one call's hop to a worker thread costs the main thread, alone: a main thread sends one
 * call per millisecond (a weft-sized task: ~10 header strings, a 1 KiB body transferred) to one
 * worker that answers at once, and reports its own CPU per call above the same loop with no
 * worker, and the round trip's p50/p99. `piscina`: `piscina.run` per call (weft before);
 * `port`: an array on a MessagePort of the worker's own each way (weft now, src/dispatch.ts).
 *
 *   node bench/hop-cost.ts [--calls N] [--rounds N]
 */
import { parseArgs } from 'node:util';
import type { MessagePort } from 'node:worker_threads';
import { Piscina } from 'piscina';

const { values } = parseArgs({ options: { calls: { type: 'string', default: '4000' }, rounds: { type: 'string', default: '3' } } });
const CALLS = Number(values.calls);
const HEADERS = ['content-type', 'application/octet-stream', 'user-agent', 'undici', 'traceparent', '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01', 'accept', '*/*'];

function task(i: number): Record<string, unknown> {
  return { type: 'invoke', routingVersion: 3, appId: 'testapp', namespace: 'default', callerAppId: 'loadgen', callerNamespace: 'default', method: 'test', verb: 'POST', query: '', headers: HEADERS, body: new ArrayBuffer(1024), port: null, deadline: Date.now() + 10_000, callId: i };
}

type Call = (i: number) => Promise<unknown>;

/** Paces CALLS calls one per ms; the main thread's CPU per call (µs) and the latencies (ms). */
async function measure(call: Call): Promise<{ cpuUs: number; p50: number; p99: number }> {
  const lat: number[] = [];
  const before = process.threadCpuUsage();
  await new Promise<void>((resolve) => {
    let sent = 0;
    let done = 0;
    const tick = (): void => {
      const start = performance.now();
      call(++sent).then(() => {
        lat.push(performance.now() - start);
        if (++done === CALLS) resolve();
      }, () => {});
      if (sent < CALLS) setTimeout(tick, 1);
    };
    tick();
  });
  const used = process.threadCpuUsage(before);
  lat.sort((a, b) => a - b);
  return { cpuUs: (used.user + used.system) / CALLS, p50: lat[Math.floor(CALLS / 2)] ?? 0, p99: lat[Math.floor(CALLS * 0.99)] ?? 0 };
}

const pool = new Piscina({ filename: new URL('./hop-worker.ts', import.meta.url).href, minThreads: 1, maxThreads: 1, idleTimeout: Number.POSITIVE_INFINITY, concurrentTasksPerWorker: 256, atomics: 'disabled' });
const port = await new Promise<MessagePort>((resolve) => pool.on('message', (m: { type?: string; port: MessagePort }) => m.type === 'hop-port' && resolve(m.port)));
const pending = new Map<number, (v: unknown) => void>();
port.on('message', (batch: unknown[][]) => {
  for (const r of batch) {
    const id = r[0] as number;
    pending.get(id)?.(r);
    pending.delete(id);
  }
});

const ways: Record<string, Call> = {
  'no worker': () => new Promise((resolve) => setImmediate(() => resolve({ body: new ArrayBuffer(1024), headers: [...HEADERS] }))),
  'piscina.run': (i) => {
    const t = task(i);
    return pool.run(t, { transferList: [t.body as ArrayBuffer] });
  },
  'own port': (i) => new Promise((resolve) => {
    const t = task(i);
    pending.set(i, resolve);
    port.postMessage([0, i, 0, t.routingVersion, t.appId, t.namespace, t.callerAppId, t.callerNamespace, t.method, t.verb, t.query, t.headers, t.body, t.port, t.deadline], [t.body as ArrayBuffer]);
  }),
};

await measure(ways['piscina.run'] as Call); // warm both sides
const rows: string[] = [];
for (let round = 1; round <= Number(values.rounds); round++) {
  const none = await measure(ways['no worker'] as Call);
  for (const [name, call] of Object.entries(ways)) {
    const r = name === 'no worker' ? none : await measure(call);
    rows.push(`| ${round} | ${name} | ${r.cpuUs.toFixed(0)} | ${(r.cpuUs - none.cpuUs).toFixed(0)} | ${r.p50.toFixed(3)} | ${r.p99.toFixed(3)} |`);
  }
}
process.stdout.write(`${CALLS} calls a round, one per ms; load average ${(await import('node:os')).loadavg().map((x) => x.toFixed(1)).join(' ')}\n\n`);
process.stdout.write('| round | way | main-thread µs / call | above no worker | p50 ms | p99 ms |\n| ---: | --- | ---: | ---: | ---: | ---: |\n');
process.stdout.write(rows.join('\n') + '\n');
port.close();
await pool.destroy();
