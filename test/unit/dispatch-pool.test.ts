/**
 * The worker pool's own call channel (src/dispatch.ts, workers/peer-worker.ts): calls go to real
 * piscina workers over a port per worker, and a worker that exits fails only its own calls in
 * flight, at once, while piscina's replacement takes the next ones.
 */
import { createServer, type Server, type Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import type { Worker } from 'node:worker_threads';
import { createDispatcher, type Dispatcher } from '../../src/dispatch.ts';
import type { InvokeTask, OutboundSettings } from '../../workers/protocol.ts';

const SETTINGS: OutboundSettings = {
  tls: false,
  resiliency: [],
  budget: { ratio: 0.2, minPerSecond: 10 },
  outlier: { consecutiveFailures: 5, baseEjectionMs: 30_000, maxEjectionMs: 300_000, maxEjectionPercent: 50 },
};

function task(appId: string, routingVersion: number, deadline: number): InvokeTask {
  return {
    type: 'invoke', routingVersion, appId, namespace: 'default', callerAppId: 'caller', callerNamespace: 'default',
    method: 'm', verb: 'POST', query: '', headers: ['x-a', 'b'], body: null, port: null, deadline,
  };
}

let dispatcher: Dispatcher | undefined;
let silent: Server | undefined;
const sockets: Socket[] = [];
afterEach(async () => {
  await dispatcher?.close();
  for (const s of sockets.splice(0)) s.destroy();
  await new Promise<void>((resolve) => (silent === undefined ? resolve() : silent.close(() => resolve())));
  silent = undefined;
});

describe('worker pool dispatch', () => {
  it('answers calls from the workers, and fails the calls of a worker that exits, not the pool', async () => {
    const errors: Error[] = [];
    dispatcher = await createDispatcher(1, () => {}, SETTINGS, { onWorkerError: (err) => errors.push(err) });
    expect(dispatcher.mode).toBe('workers');

    // A peer that accepts connections and never says a word: a call to it stays in flight.
    silent = createServer((s) => sockets.push(s));
    await new Promise<void>((resolve) => silent?.listen(0, '127.0.0.1', resolve));
    const port = (silent.address() as { port: number }).port;
    dispatcher.publish({ version: 1, apps: { 'default/quiet': [{ nodeId: 'quiet-node', address: '127.0.0.1', port }] } });

    // Routed on the worker: an app no instance is known of.
    const unknown = await dispatcher.run(task('nobody', 1, Date.now() + 5000), []);
    expect(unknown).toMatchObject({ type: 'error', error: { code: 'WEFT_APP_NOT_FOUND' } });

    const stuck = dispatcher.run(task('quiet', 1, Date.now() + 60_000), [], new AbortController().signal);
    // The test reaches the pool's one thread to end it, as a crash would.
    const threads = (dispatcher as unknown as { pool: { threads: Worker[] } }).pool.threads;
    expect(threads).toHaveLength(1);
    await new Promise((resolve) => setTimeout(resolve, 200));
    await threads[0]?.terminate();
    expect(await stuck).toMatchObject({ type: 'error', error: { code: 'WEFT_INTERNAL' } });

    // piscina starts a replacement, which hands over its port and takes the next call.
    dispatcher.publish({ version: 2, apps: {} });
    const next = await dispatcher.run(task('nobody', 2, Date.now() + 10_000), []);
    expect(next).toMatchObject({ type: 'error', error: { code: 'WEFT_APP_NOT_FOUND' } });
    expect(errors).toEqual([]);
  });

  it('cancels a call in flight on the worker when its signal aborts', async () => {
    dispatcher = await createDispatcher(2, () => {}, SETTINGS);
    silent = createServer((s) => sockets.push(s));
    await new Promise<void>((resolve) => silent?.listen(0, '127.0.0.1', resolve));
    const port = (silent.address() as { port: number }).port;
    dispatcher.publish({ version: 1, apps: { 'default/quiet': [{ nodeId: 'quiet-node', address: '127.0.0.1', port }] } });
    const controller = new AbortController();
    const running = dispatcher.run(task('quiet', 1, Date.now() + 60_000), [], controller.signal);
    await new Promise((resolve) => setTimeout(resolve, 100));
    controller.abort({ code: 'WEFT_CANCELLED', message: 'the caller went away' });
    expect(await running).toMatchObject({ type: 'error', error: { code: 'WEFT_CANCELLED', message: 'the caller went away' } });
  });
});
