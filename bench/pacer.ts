/**
 * The pacer: what wakes the load generator's sender at each scheduled send time.
 *
 * Why a thread: Node's timers have 1 ms granularity, so a setTimeout-driven schedule at
 * 1000 requests/s sends each request up to ~1 ms late. Because latency is measured from
 * the scheduled time (coordinated omission), that lateness lands in every percentile and
 * would swamp a direct-to-app p50 of ~0.1 ms. `Atomics.wait` sleeps with sub-millisecond
 * precision, and posting a message wakes the main loop within tens of microseconds. The
 * main thread still decides what is due from its own clock; the pacer rings the bell and
 * says how many are due by its clock (the two may differ by microseconds; the last tick
 * must release the last request).
 *
 * Cost: at most one wake-up per `minGapMs` (0.2 ms by default), so at high rates several
 * requests go out per wake-up, each at most `minGapMs` late.
 *
 * Contract: `createPacer` resolves once the thread is running, so that starting a worker
 * (tens of ms) does not make the first requests late; nothing ticks before `start()`;
 * after `stop()` nothing ticks again. The worker is plain JavaScript evaluated from a
 * string so that it runs the same way under `node`, under vitest and from any directory.
 */
import { Worker } from 'node:worker_threads';

const READY = -1;

const PACER_SOURCE = `
const { parentPort, workerData } = process.getBuiltinModule('node:worker_threads');
const { intervalMs, total, minGapMs, flags, startBox } = workerData;
const ctl = new Int32Array(flags); // [0]: stop, [1]: go
const startAbs = new Float64Array(startBox);
const now = () => performance.timeOrigin + performance.now();
parentPort.postMessage(${READY});
while (Atomics.load(ctl, 1) === 0) Atomics.wait(ctl, 1, 0);
const start = startAbs[0];
let next = 0;
while (Atomics.load(ctl, 0) === 0 && next < total) {
  const due = start + next * intervalMs;
  const t = now();
  if (due > t) {
    Atomics.wait(ctl, 0, 0, due - t);
    continue;
  }
  const ready = Math.min(total, Math.floor((t - start) / intervalMs) + 1);
  parentPort.postMessage(ready);
  // Skip ahead by at least minGapMs, but never past the last request: it needs its tick.
  next = Math.min(Math.max(ready, Math.ceil((t + minGapMs - start) / intervalMs)), ready < total ? total - 1 : total);
}
`;

export interface Pacer {
  /** Begins the schedule: ticks at or just after `startMs + k * intervalMs` (`performance.now()` time). */
  start(startMs: number): void;
  stop(): void;
}

/**
 * A pacer thread for `total` ticks `intervalMs` apart, coalescing ticks closer than
 * `minGapMs`. `onTick(due)` runs on this thread with how many requests are due by the
 * pacer's clock (the last tick says `total`).
 */
export function createPacer(
  intervalMs: number,
  total: number,
  onTick: (due: number) => void,
  onError: (err: Error) => void,
  minGapMs = 0.2,
): Promise<Pacer> {
  const flags = new SharedArrayBuffer(8);
  const startBox = new SharedArrayBuffer(8);
  const ctl = new Int32Array(flags);
  const worker = new Worker(PACER_SOURCE, { eval: true, workerData: { intervalMs, total, minGapMs, flags, startBox } });
  let stopped = false;
  const pacer: Pacer = {
    start(startMs: number): void {
      new Float64Array(startBox)[0] = performance.timeOrigin + startMs;
      Atomics.store(ctl, 1, 1);
      Atomics.notify(ctl, 1);
    },
    stop(): void {
      if (stopped) return;
      stopped = true;
      Atomics.store(ctl, 0, 1);
      Atomics.store(ctl, 1, 1);
      Atomics.notify(ctl, 0);
      Atomics.notify(ctl, 1);
      void worker.terminate();
    },
  };
  return new Promise((resolve, reject) => {
    let up = false;
    worker.on('message', (due: number) => {
      if (stopped) return;
      if (due === READY) {
        up = true;
        resolve(pacer);
      } else onTick(due);
    });
    worker.on('error', (err) => {
      const failure = new Error(`bench pacer failed: ${err.message}`);
      if (up) onError(failure);
      else reject(failure);
    });
  });
}

/**
 * The same contract driven by Node's own timers, for comparison: no extra thread and
 * cheaper wake-ups, but each tick lands up to ~1 ms late (libuv timers count whole
 * milliseconds), and that lateness counts in every latency measured from the schedule.
 */
export function createTimerPacer(intervalMs: number, total: number, onTick: (due: number) => void): Pacer {
  let timer: NodeJS.Timeout | undefined;
  let stopped = false;
  return {
    start(startMs: number): void {
      const wake = (): void => {
        if (stopped) return;
        const due = Math.min(total, Math.floor((performance.now() - startMs) / intervalMs) + 1);
        onTick(due);
        if (due < total && !stopped) timer = setTimeout(wake, Math.max(0, startMs + due * intervalMs - performance.now()));
      };
      timer = setTimeout(wake, Math.max(0, startMs - performance.now()));
    },
    stop(): void {
      stopped = true;
      clearTimeout(timer);
    },
  };
}
