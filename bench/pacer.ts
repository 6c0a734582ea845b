/**
 * The pacer: a tiny worker thread that wakes the load generator's main thread at each
 * scheduled send time.
 *
 * Why a thread: Node's timers have 1 ms granularity, so a setTimeout-driven schedule at
 * 1000 requests/s sends each request up to ~1 ms late. Because latency is measured from
 * the scheduled time (coordinated omission), that lateness lands in every percentile and
 * would swamp a direct-to-app p50 of ~0.1 ms. `Atomics.wait` sleeps with sub-millisecond
 * precision, and posting a message wakes the main loop within tens of microseconds. The
 * main thread still decides what is due from its own clock; the pacer only rings the bell.
 *
 * Cost: at most one wake-up per `minGapMs` (0.2 ms by default), so at high rates several
 * requests go out per wake-up, each at most `minGapMs` late.
 *
 * The worker is plain JavaScript evaluated from a string so that it runs the same way
 * under `node`, under vitest, and from any working directory.
 */
import { Worker } from 'node:worker_threads';

const PACER_SOURCE = `
const { parentPort, workerData } = process.getBuiltinModule('node:worker_threads');
const { startAbs, intervalMs, total, minGapMs, flags } = workerData;
const stop = new Int32Array(flags);
const now = () => performance.timeOrigin + performance.now();
let next = 0;
while (Atomics.load(stop, 0) === 0 && next < total) {
  const due = startAbs + next * intervalMs;
  const t = now();
  if (due > t) {
    Atomics.wait(stop, 0, 0, due - t);
    continue;
  }
  // Tell the main thread how many are due by this clock: the two threads' clocks may
  // differ by a few microseconds, and the last tick must release the last request.
  const ready = Math.min(total, Math.floor((t - startAbs) / intervalMs) + 1);
  parentPort.postMessage(ready);
  // Skip ahead by at least minGapMs, but never past the last request: it needs its tick.
  next = Math.min(Math.max(ready, Math.ceil((t + minGapMs - startAbs) / intervalMs)), ready < total ? total - 1 : total);
}
`;

export interface Pacer {
  stop(): void;
}

/**
 * Calls `onTick(due)` (on the main thread) at or just after `startMs + k * intervalMs` for
 * k = 0 .. total-1, coalescing ticks closer than `minGapMs`; `due` is how many requests are
 * due by the pacer's clock (the last tick says `total`). `startMs` is in this thread's
 * `performance.now()` time.
 */
export function startPacer(
  startMs: number,
  intervalMs: number,
  total: number,
  onTick: (due: number) => void,
  onError: (err: Error) => void,
  minGapMs = 0.2,
): Pacer {
  const flags = new SharedArrayBuffer(4);
  const worker = new Worker(PACER_SOURCE, {
    eval: true,
    workerData: { startAbs: performance.timeOrigin + startMs, intervalMs, total, minGapMs, flags },
  });
  worker.on('message', onTick);
  worker.on('error', (err) => onError(new Error(`bench pacer failed: ${err.message}`)));
  let stopped = false;
  return {
    stop(): void {
      if (stopped) return;
      stopped = true;
      const stopFlag = new Int32Array(flags);
      Atomics.store(stopFlag, 0, 1);
      Atomics.notify(stopFlag, 0);
      worker.off('message', onTick);
      void worker.terminate();
    },
  };
}

/**
 * The same contract driven by Node's own timers, for comparison: no extra thread and
 * cheaper wake-ups, but each tick lands up to ~1 ms late (libuv timers count whole
 * milliseconds), and that lateness counts in every latency measured from the schedule.
 */
export function startTimerPacer(startMs: number, intervalMs: number, total: number, onTick: (due: number) => void): Pacer {
  let timer: NodeJS.Timeout | undefined;
  let stopped = false;
  const wake = (): void => {
    if (stopped) return;
    const due = Math.min(total, Math.floor((performance.now() - startMs) / intervalMs) + 1);
    onTick(due);
    if (due < total && !stopped) timer = setTimeout(wake, Math.max(0, startMs + due * intervalMs - performance.now()));
  };
  timer = setTimeout(wake, Math.max(0, startMs - performance.now()));
  return {
    stop(): void {
      stopped = true;
      clearTimeout(timer);
    },
  };
}
