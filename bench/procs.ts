/**
 * The processes a benchmark run starts, and what /proc says about them.
 *
 * Contract: every process started through `Processes` is stopped by `stopAll()` (SIGTERM,
 * then SIGKILL after a grace period), and `killAllNow()` is safe to call from a
 * process 'exit' handler (synchronous, SIGKILL). Each child's stdout and stderr go to a
 * log file, so a node that fails to start can be explained from its own words.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream, readdirSync, readFileSync, type WriteStream } from 'node:fs';
import { createInterface } from 'node:readline';

export interface Started {
  name: string;
  child: ChildProcess;
  pid: number;
  logFile: string;
  /** Resolves with the first stdout line for which `match` returns a value. */
  waitFor<T>(match: (line: string) => T | undefined, timeoutMs: number): Promise<T>;
  /** Called with every stdout line (after `waitFor` matchers). */
  onLine(listener: (line: string) => void): void;
  exited: Promise<number | null>;
}

export class Processes {
  readonly #children = new Set<Started>();
  readonly #logDir: string;

  constructor(logDir: string) {
    this.#logDir = logDir;
  }

  /** Starts `node ...args` (this same Node binary) with stdout lines readable. */
  startNode(name: string, args: string[], env: Record<string, string> = {}, cwd?: string): Started {
    return this.start(name, process.execPath, args, env, cwd);
  }

  /** Starts `command ...args` (e.g. nginx) with stdout lines readable. */
  start(name: string, command: string, args: string[], env: Record<string, string> = {}, cwd?: string): Started {
    const logFile = `${this.#logDir}/${name}.log`;
    const log: WriteStream = createWriteStream(logFile);
    const child = spawn(command, args, {
      cwd,
      env: { ...process.env, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    // A command that cannot be started (ENOENT) reports it as an 'error' event: not a crash.
    let spawnError: Error | undefined;
    child.once('error', (err) => {
      spawnError = err;
      log.write(`[bench] ${name}: ${err.message}\n`);
    });
    if (child.pid === undefined) throw new Error(`could not start ${name}${spawnError ? `: ${spawnError.message}` : ''}`);
    // Always drain both pipes: a child blocked on a full pipe would stall the benchmark.
    child.stderr?.pipe(log, { end: false });
    const listeners: ((line: string) => void)[] = [];
    const lines = createInterface({ input: child.stdout! });
    lines.on('line', (line) => {
      log.write(line + '\n');
      for (const listener of [...listeners]) listener(line);
    });
    const exited = new Promise<number | null>((resolve) => {
      // 'close', not 'exit': stdio may still hold output after the process has exited.
      child.once('close', (code, signal) => {
        log.end(`\n[bench] ${name} exited: ${code ?? signal}\n`);
        this.#children.delete(started);
        resolve(code);
      });
    });
    const started: Started = {
      name,
      child,
      pid: child.pid,
      logFile,
      exited,
      onLine: (listener) => {
        listeners.push(listener);
      },
      waitFor: <T>(match: (line: string) => T | undefined, timeoutMs: number): Promise<T> =>
        new Promise<T>((resolve, reject) => {
          const done = (): void => {
            clearTimeout(timer);
            const i = listeners.indexOf(listener);
            if (i !== -1) listeners.splice(i, 1);
          };
          const listener = (line: string): void => {
            const value = match(line);
            if (value !== undefined) {
              done();
              resolve(value);
            }
          };
          const timer = setTimeout(() => {
            done();
            reject(new Error(`${name} was not ready within ${timeoutMs} ms; log:\n${tail(logFile)}`));
          }, timeoutMs);
          listeners.push(listener);
          void exited.then((code) => {
            done();
            reject(new Error(`${name} exited (${code}) before it was ready; log:\n${tail(logFile)}`));
          });
        }),
    };
    this.#children.add(started);
    return started;
  }

  /** Stops one process: SIGTERM, then SIGKILL after `graceMs`. */
  async stop(p: Started, graceMs = 5000): Promise<void> {
    if (p.child.exitCode !== null || p.child.signalCode !== null) return;
    p.child.kill('SIGTERM');
    const timer = setTimeout(() => p.child.kill('SIGKILL'), graceMs);
    await p.exited;
    clearTimeout(timer);
  }

  async stopAll(): Promise<void> {
    await Promise.all([...this.#children].map((p) => this.stop(p)));
  }

  killAllNow(): void {
    for (const p of this.#children) p.child.kill('SIGKILL');
  }
}

/** The last lines of a log file, for error messages. */
export function tail(file: string, lines = 30): string {
  try {
    return readFileSync(file, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
  } catch {
    return '(no log)';
  }
}

// --- /proc -------------------------------------------------------------------------------

/** Linux reports /proc CPU times in USER_HZ ticks, 100 per second on every common platform. */
const TICKS_PER_SECOND = 100;

/** User + system CPU seconds of a process (all its threads), or null if it is gone. */
export function cpuSeconds(pid: number): number | null {
  return statCpu(`/proc/${pid}/stat`);
}

/**
 * User + system CPU seconds of a process's main thread alone (its task whose id is the pid:
 * for Node, the event loop's thread; worker threads, libuv's pool and V8's helpers are other
 * tasks), or null if it is gone.
 */
export function mainThreadCpuSeconds(pid: number): number | null {
  return statCpu(`/proc/${pid}/task/${pid}/stat`);
}

/**
 * Seconds a process's threads, all together, spent runnable but waiting for a core (the second
 * field of each `/proc/<pid>/task/<tid>/schedstat`: time on a run queue), or null if the process
 * is gone or the kernel keeps no schedstats. A thread that exited takes its share with it.
 */
export function runQueueSeconds(pid: number): number | null {
  return schedstatSeconds(pid, 1);
}

/**
 * CPU seconds a process's threads, all together, have run (the first field of each
 * `/proc/<pid>/task/<tid>/schedstat`, in ns: far finer than /proc/<pid>/stat's 10 ms ticks, so
 * a window of a second or two can be measured), or null as `runQueueSeconds`. A thread that
 * exited takes its share with it.
 */
export function runSeconds(pid: number): number | null {
  return schedstatSeconds(pid, 0);
}

/** One field of every thread's schedstat (ns), summed, in seconds. */
function schedstatSeconds(pid: number, field: 0 | 1): number | null {
  let tids: string[];
  try {
    tids = readdirSync(`/proc/${pid}/task`);
  } catch {
    return null;
  }
  let ns = 0;
  for (const tid of tids) {
    try {
      const fields = readFileSync(`/proc/${pid}/task/${tid}/schedstat`, 'utf8').trim().split(/\s+/);
      const value = Number(fields[field]);
      if (!Number.isFinite(value)) return null;
      ns += value;
    } catch {
      // the thread exited between the listing and the read
    }
  }
  return ns / 1e9;
}

/** What a thread of a Node process does, by the name Node and V8 give it (`/proc/<pid>/task/<tid>/comm`). */
export type ThreadKind = 'main' | 'workers' | 'v8' | 'libuv' | 'other';
export const THREAD_KINDS: readonly ThreadKind[] = ['main', 'workers', 'v8', 'libuv', 'other'];

/**
 * The kind of one thread: the main thread is the task whose id is the pid; Node names worker
 * threads `WorkerThread`, V8's platform threads (GC, compilation) `V8Worker` and its delayed-task
 * scheduler `DelayedTaskSche` (15 characters, as the kernel cuts it), libuv's pool `libuv-worker`.
 */
export function threadKind(pid: number, tid: number, comm: string): ThreadKind {
  if (tid === pid) return 'main';
  const name = comm.trim();
  if (name === 'WorkerThread') return 'workers';
  if (name === 'V8Worker' || name.startsWith('DelayedTaskSch')) return 'v8';
  if (name === 'libuv-worker') return 'libuv';
  return 'other';
}

/**
 * CPU seconds of a process's live threads, summed by kind (a thread that has exited is no longer
 * counted), or null if the process is gone. `fine`: from each thread's schedstat (ns) instead of
 * its stat (10 ms ticks), for windows of a second or two.
 */
export function threadCpuSeconds(pid: number, fine = false): Record<ThreadKind, number> | null {
  let tids: string[];
  try {
    tids = readdirSync(`/proc/${pid}/task`);
  } catch {
    return null;
  }
  const out: Record<ThreadKind, number> = { main: 0, workers: 0, v8: 0, libuv: 0, other: 0 };
  for (const tid of tids) {
    const cpu = fine ? schedstatRun(`/proc/${pid}/task/${tid}/schedstat`) : statCpu(`/proc/${pid}/task/${tid}/stat`);
    if (cpu === null) continue;
    let comm = '';
    try {
      comm = readFileSync(`/proc/${pid}/task/${tid}/comm`, 'utf8');
    } catch {
      continue;
    }
    out[threadKind(pid, Number(tid), comm)] += cpu;
  }
  return out;
}

/** A thread's run time from its schedstat, seconds, or null if it is gone. */
function schedstatRun(file: string): number | null {
  try {
    const ns = Number(readFileSync(file, 'utf8').trim().split(/\s+/)[0]);
    return Number.isFinite(ns) ? ns / 1e9 : null;
  } catch {
    return null;
  }
}

function statCpu(file: string): number | null {
  try {
    const stat = readFileSync(file, 'utf8');
    // The command name (field 2) may contain spaces; fields after it are fixed.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const utime = Number(fields[11]);
    const stime = Number(fields[12]);
    return (utime + stime) / TICKS_PER_SECOND;
  } catch {
    return null;
  }
}

export interface Memory {
  /** Resident set size now, MB. */
  rssMB: number;
  /** Peak resident set size since the process started (VmHWM), MB. */
  hwmMB: number;
}

export function memory(pid: number): Memory | null {
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const kb = (key: string): number => {
      const m = new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(status);
      return m ? Number(m[1]) : 0;
    };
    return { rssMB: kb('VmRSS') / 1024, hwmMB: kb('VmHWM') / 1024 };
  } catch {
    return null;
  }
}

/**
 * CPU seconds the whole machine spent busy (all cores: user, nice, system, irq, softirq)
 * and stolen by the hypervisor for other guests, from /proc/stat.
 */
export function machineCpu(): { busyS: number; stealS: number } | null {
  try {
    const line = readFileSync('/proc/stat', 'utf8').split('\n', 1)[0] ?? '';
    // cpu user nice system idle iowait irq softirq steal guest guest_nice (guest is inside user).
    const t = line.trim().split(/\s+/).slice(1).map(Number);
    const at = (i: number): number => t[i] ?? 0;
    return { busyS: (at(0) + at(1) + at(2) + at(5) + at(6)) / TICKS_PER_SECOND, stealS: at(7) / TICKS_PER_SECOND };
  } catch {
    return null;
  }
}

/** Samples the RSS of some processes every `everyMs` and keeps the largest seen per pid. */
export class RssSampler {
  readonly max = new Map<number, number>();
  #timer: NodeJS.Timeout | undefined;

  start(pids: number[], everyMs = 250): void {
    const sample = (): void => {
      for (const pid of pids) {
        const m = memory(pid);
        if (m !== null && m.rssMB > (this.max.get(pid) ?? 0)) this.max.set(pid, m.rssMB);
      }
    };
    sample();
    this.#timer = setInterval(sample, everyMs);
  }

  stop(): void {
    clearInterval(this.#timer);
  }
}
