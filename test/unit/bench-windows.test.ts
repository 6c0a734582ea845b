/**
 * The load generator's windows (the paired tracing method, bench/paired.ts) against a real
 * 127.0.0.1 server that records every request's `traceparent`: each request carries a fresh,
 * valid one whose flags are its window's condition, and the program announces each window's
 * measured part. Bounded in count and time; never asserts timing values.
 */
import { spawn } from 'node:child_process';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runWindows, Target, type WindowMark } from '../../bench/load.ts';
import { runSeconds, THREAD_KINDS, threadCpuSeconds } from '../../bench/procs.ts';
import { parseTraceParent } from '../../src/observability/tracing.ts';

const ROOT = join(import.meta.dirname, '../..');

describe('bench load generator: sampled and unsampled windows', () => {
  let server: Server;
  let base = '';
  let seen: Array<string | undefined> = [];

  beforeAll(async () => {
    server = createServer((req, res) => {
      const tp = req.headers['traceparent'];
      seen.push(typeof tp === 'string' ? tp : undefined);
      req.resume();
      req.on('end', () => res.writeHead(200, { 'content-length': 2 }).end('ok'));
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });

  afterAll(async () => {
    await new Promise((resolve) => server.close(resolve));
  });

  /** Sends `n` requests one after another. */
  async function sendSome(target: Target, n: number): Promise<void> {
    for (let i = 0; i < n; i++) {
      const status = await new Promise<number>((resolve) => target.send((s) => resolve(s)));
      expect(status).toBe(200);
    }
  }

  it('a target sends no traceparent of its own by default, then a fresh one per request with the flags asked', async () => {
    seen = [];
    const target = new Target({ url: `${base}/test`, connections: 2, bodySize: 10 });
    try {
      await sendSome(target, 3);
      target.sampled = true;
      await sendSome(target, 100);
      target.sampled = false;
      await sendSome(target, 100);
    } finally {
      await target.close();
    }
    expect(seen.slice(0, 3)).toEqual([undefined, undefined, undefined]);
    const parsed = seen.slice(3).map((tp) => parseTraceParent(tp));
    expect(parsed.every((p) => p !== undefined)).toBe(true);
    expect(parsed.slice(0, 100).every((p) => p?.sampled === true)).toBe(true);
    expect(seen.slice(3, 103).every((tp) => tp?.endsWith('-01'))).toBe(true);
    expect(parsed.slice(100).every((p) => p?.sampled === false)).toBe(true);
    expect(seen.slice(103).every((tp) => tp?.endsWith('-00'))).toBe(true);
    // fresh ids: 200 requests, 200 trace ids and 200 span ids (the pool of random hex is refilled on the way)
    expect(new Set(parsed.map((p) => p?.traceId)).size).toBe(200);
    expect(new Set(parsed.map((p) => p?.spanId)).size).toBe(200);
  });

  it('runWindows switches the flags window by window and announces each measured part', async () => {
    seen = [];
    const target = new Target({ url: `${base}/test`, connections: 4, bodySize: 10 });
    const marks: WindowMark[] = [];
    const windows = [true, false, false, true];
    let r;
    try {
      r = await runWindows(target, { rate: 200, windows, settleS: 0.1, measureS: 0.2, onMark: (m) => marks.push(m) });
    } finally {
      await target.close();
    }
    expect(r.run.sent).toBe(240);
    expect(r.run.errors.total).toBe(0);
    expect(r.sent.reduce((a, b) => a + b, 0)).toBe(240);
    expect(r.failed).toEqual([0, 0, 0, 0]);
    for (const n of r.sent) expect(n).toBeGreaterThan(0);
    // every request the server saw carried the flags of the window it was sent in: as many -01 as
    // were sent in sampled windows, as many -00 as in the unsampled ones, all valid and all distinct
    expect(seen).toHaveLength(240);
    const sampled = seen.filter((tp) => tp?.endsWith('-01')).length;
    const unsampled = seen.filter((tp) => tp?.endsWith('-00')).length;
    expect(sampled).toBe(r.sent[0]! + r.sent[3]!);
    expect(unsampled).toBe(r.sent[1]! + r.sent[2]!);
    expect(seen.every((tp) => parseTraceParent(tp) !== undefined)).toBe(true);
    expect(new Set(seen.map((tp) => tp?.slice(3, 35))).size).toBe(240);
    // a start and an end per window, in order, with the window's condition
    expect(marks.map((m) => `${m.index}${m.phase}${m.sampled ? 'S' : 'U'}`)).toEqual(['0startS', '0endS', '1startU', '1endU', '2startU', '2endU', '3startS', '3endS']);
    for (const m of marks.filter((x) => x.phase === 'end')) expect(m.errors).toBe(0);
    const completed = marks.reduce((t, m) => t + m.completed, 0);
    expect(completed).toBeGreaterThan(0);
    expect(completed).toBeLessThanOrEqual(240);
    // the target is left as it was found
    expect(target.sampled).toBeNull();
    // the latency histograms hold the calls of the measured parts sent in them
    expect(r.latencyUs.sampled.count + r.latencyUs.unsampled.count).toBe(completed - marks.reduce((t, m) => t + m.foreign, 0));
  });

  it('reads a process\'s CPU from schedstat (ns), all its threads together, in agreement with getrusage', () => {
    let x = 0;
    for (let i = 0; i < 20_000_000; i++) x += i % 7;
    expect(x).toBeGreaterThan(0);
    const usage = process.cpuUsage();
    const ran = runSeconds(process.pid);
    const rusage = (usage.user + usage.system) / 1e6;
    expect(ran).not.toBeNull();
    // the same quantity by two routes (schedstat counts run time, getrusage user + system)
    expect(Math.abs((ran as number) - rusage)).toBeLessThan(0.1 * rusage + 0.05);
    expect(runSeconds(2 ** 22 + 12345)).toBeNull();
    // by thread kind, from the same schedstat: the kinds add up to the whole (read a moment later,
    // so not less; the kernel may not have moved the counters in between, and the two sums of
    // the same nanoseconds, added in another order, can differ in the last bit)
    const byKind = threadCpuSeconds(process.pid, true);
    expect(byKind).not.toBeNull();
    const total = THREAD_KINDS.reduce((t, k) => t + (byKind as Record<string, number>)[k]!, 0);
    expect(total).toBeGreaterThanOrEqual((ran as number) - 1e-9);
    expect(total - (ran as number)).toBeLessThan(0.1 * (ran as number) + 0.05);
    expect(byKind?.main).toBeGreaterThan(0);
  });

  it('bench/load.ts --mode windows prints a window event at each measured part\'s start and end, then its result', async () => {
    seen = [];
    const child = spawn(process.execPath, [join(ROOT, 'bench/load.ts'), '--url', `${base}/test`, '--mode', 'windows', '--windows', 'SUC', '--settle', '0.1', '--duration', '0.2', '--rate', '100', '--connections', '2', '--json'], {
      cwd: ROOT, stdio: ['ignore', 'pipe', 'ignore'],
    });
    const killer = setTimeout(() => child.kill('SIGKILL'), 20_000);
    const events: Array<{ event: string; phase?: string; index?: number; sampled?: boolean; result?: { sent: number[] } }> = [];
    for await (const line of createInterface({ input: child.stdout })) events.push(JSON.parse(line) as (typeof events)[number]);
    const code = await new Promise<number | null>((resolve) => (child.exitCode !== null ? resolve(child.exitCode) : child.once('exit', resolve)));
    clearTimeout(killer);
    expect(code).toBe(0);
    const windows = events.filter((e) => e.event === 'window');
    expect(windows.map((e) => `${e.index}${e.phase}${e.sampled ? 'S' : 'U'}`)).toEqual(['0startS', '0endS', '1startU', '1endU', '2startU', '2endU']);
    const result = events.find((e) => e.event === 'result')?.result;
    expect(result?.sent.reduce((a, b) => a + b, 0)).toBe(90);
    expect(seen.filter((tp) => tp?.endsWith('-01'))).toHaveLength(result?.sent[0] ?? -1);
    expect(seen.filter((tp) => tp?.endsWith('-00'))).toHaveLength((result?.sent[1] ?? 0) + (result?.sent[2] ?? 0));
    // an unknown letter is refused
    const bad = spawn(process.execPath, [join(ROOT, 'bench/load.ts'), '--url', `${base}/test`, '--mode', 'windows', '--windows', 'SX', '--json'], { cwd: ROOT, stdio: 'ignore' });
    expect(await new Promise((resolve) => bad.once('exit', resolve))).toBe(1);
  });
});
