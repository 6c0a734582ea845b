/**
 * The k6 scripts under a real k6: what k6 makes of their options (`k6 inspect`), and one short
 * run against an app on 127.0.0.1 for what handleSummary writes. Needs k6, which a fresh
 * machine lacks: skipped then (set K6_BIN, or put k6 on PATH; /work/shared/tools builds one
 * into ~/.cache/weft-tools/bin). Asserts no timings: only structure, counts k6 planned and
 * files written.
 */
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { delimiter, join, resolve } from 'node:path';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const ROOT = resolve(import.meta.dirname, '../..');

function findK6(): string | null {
  const explicit = process.env['K6_BIN'];
  if (explicit) return existsSync(explicit) ? explicit : null;
  for (const dir of (process.env['PATH'] ?? '').split(delimiter)) {
    if (dir !== '' && existsSync(join(dir, 'k6'))) return join(dir, 'k6');
  }
  return null;
}

const K6 = findK6();

function k6(args: string[], cwd: string, timeoutMs = 60_000): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((done) => {
    execFile(K6!, args, { cwd, timeout: timeoutMs, env: { ...process.env, K6_NO_USAGE_REPORT: 'true' } }, (err, stdout, stderr) => {
      const code = err === null ? 0 : typeof (err as { code?: unknown }).code === 'number' ? ((err as { code: number }).code) : -1;
      done({ code, stdout, stderr });
    });
  });
}

// Skipped without k6: it is not on a fresh machine or in CI (/work/shared/tools/README.md builds one).
describe.skipIf(K6 === null)('the k6 scripts under a real k6 (needs k6)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'weft-k6-'));
  let app: Server;
  let port = 0;
  const seen: string[] = [];

  beforeAll(async () => {
    app = createServer((req, res) => {
      seen.push(`${req.method} ${req.url}`);
      req.resume();
      req.on('end', () => res.end('{}'));
    });
    await new Promise<void>((r) => app.listen(0, '127.0.0.1', r));
    port = (app.address() as AddressInfo).port;
  });
  afterAll(async () => {
    await new Promise((r) => app.close(r));
    rmSync(dir, { recursive: true, force: true });
  });

  it('hands k6 the durations meant: bare numbers as seconds, k6 syntax as k6 reads it', async () => {
    const r = await k6(['inspect', '--execution-requirements', '-e', 'WARMUP=1m30s', '-e', 'DURATION=30', join(ROOT, 'k6/invoke-http.js')], dir);
    expect(r.code, r.stderr).toBe(0);
    const plan = JSON.parse(r.stdout) as { scenarios: Record<string, { duration: string; startTime: string | null; preAllocatedVUs: number; maxVUs: number }>; maxVUs: number; totalDuration: string };
    expect(plan.scenarios['warmup']).toMatchObject({ duration: '1m30s', preAllocatedVUs: 50, maxVUs: 250 });
    expect(plan.scenarios['invoke']).toMatchObject({ duration: '30s', startTime: '1m31s', preAllocatedVUs: 50, maxVUs: 250 });
    // The scenarios do not overlap, so k6 hands the warm-up's VUs to the measured phase.
    expect(plan.maxVUs).toBe(250);

    const bad = await k6(['inspect', '-e', 'WARMUP=ten', join(ROOT, 'k6/invoke-http.js')], dir);
    expect(bad.code).not.toBe(0);
    expect(bad.stderr).toMatch(/WARMUP must be a duration/);
  }, 120_000);

  it('runs the measured phase on its own, writes the JSON summary where asked, and none when empty', async () => {
    // Few VUs: k6 runs the script once per VU to start it, which is most of a short run's cost.
    const common = ['-q', '-e', `APP_URL=http://127.0.0.1:${port}`, '-e', 'RATE=50', '-e', 'WARMUP=1', '-e', 'DURATION=2', '-e', 'VUS=4', '-e', 'MAX_VUS=8', '-e', 'P90_MS=100000', '-e', 'P99_MS=100000'];
    const script = join(ROOT, 'k6/invoke-http.js');
    const first = await k6(['run', ...common, '-e', 'SUMMARY_JSON=out.json', '--summary-trend-stats', 'med,p(95),count', script], dir);
    // 0, or 99 if this shared machine made k6 drop iterations: either way the summary is written.
    expect([0, 99], first.stderr).toContain(first.code);
    expect(seen.length).toBeGreaterThan(0);
    expect(seen.every((s) => s === 'POST /test')).toBe(true);
    const data = JSON.parse(readFileSync(join(dir, 'out.json'), 'utf8')) as { metrics: Record<string, { values: Record<string, number> }> };
    const measured = data.metrics['http_reqs{scenario:invoke}']?.values['count'];
    const total = data.metrics['http_reqs']?.values['count'];
    expect(measured).toBeGreaterThan(0);
    expect(total).toBeGreaterThan(measured!); // the warm-up's requests are in the total, not in the measured phase
    expect(Object.keys(data.metrics)).toContain('dropped_iterations{scenario:invoke}');
    expect(Object.keys(data.metrics['http_req_duration{scenario:invoke}']?.values ?? {}).sort()).toEqual(['count', 'med', 'p(95)']);
    expect(first.stdout).toContain('measured phase (invoke, 2s at 50/s):');
    expect(first.stdout).toMatch(/http_req_duration \(ms\): med [\d.]+ {2}p\(95\) [\d.]+ {2}count \d+/);
    expect(first.stdout).toContain(`requests: ${measured} in 2s: ${(measured! / 2).toFixed(1)}/s (asked 50/s)`);

    const before = readdirSync(dir).sort();
    const second = await k6(['run', ...common, '-e', 'SUMMARY_JSON=', script], dir);
    expect([0, 99], second.stderr).toContain(second.code);
    expect(second.stdout).toContain('JSON summary: off (SUMMARY_JSON is empty)');
    expect(readdirSync(dir).sort()).toEqual(before);
  }, 150_000);
});
