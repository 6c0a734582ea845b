/**
 * A CPU burner for tests that must hold on a saturated host: child processes spinning on the
 * CPU, one per core but one by default (at least one), so that with the test's own process and
 * the other test file vitest runs beside it every core is busy. Each child stops by itself after
 * `maxMs` even if the test dies; `stop()` kills them at once.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { availableParallelism } from 'node:os';
import { exited } from './processes.ts';

export interface Burner {
  readonly processes: number;
  stop(): Promise<void>;
}

export function startBurner(options: { processes?: number; maxMs: number }): Burner {
  const n = options.processes ?? Math.max(1, availableParallelism() - 1);
  const spin = `const end = Date.now() + ${Math.floor(options.maxMs)}; let x = 0; while (Date.now() < end) x++;`;
  const children: ChildProcess[] = [];
  for (let i = 0; i < n; i++) children.push(spawn(process.execPath, ['-e', spin], { stdio: 'ignore' }));
  return {
    processes: n,
    stop: async () => {
      await Promise.all(children.map(async (c) => {
        if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
        await exited(c);
      }));
    },
  };
}
