import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { expandIds, runClosedLoop, runOpenLoop, searchMaxRate, Target } from '../../bench/load.ts';
import { splitTemplate } from '../../bench/target.ts';

// Never asserts timing values: the machine is shared. Only counts, and that latencies exist.
describe('bench load generator', () => {
  let server: Server;
  let base = '';
  const seen = { requests: 0, bytes: 0, methods: new Set<string>(), urls: [] as string[] };

  beforeAll(async () => {
    server = createServer((req, res) => {
      seen.requests++;
      seen.methods.add(req.method ?? '');
      seen.urls.push(req.url ?? '');
      req.on('data', (chunk: Buffer) => {
        seen.bytes += chunk.length;
      });
      req.on('end', () => {
        const status = req.url === '/fail' ? 503 : 200;
        res.writeHead(status, { 'content-length': 2 });
        res.end('ok');
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });

  afterAll(async () => {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  });

  it('sends rate × duration requests on schedule and records every latency', async () => {
    seen.requests = 0;
    seen.bytes = 0;
    const target = new Target({ url: `${base}/test`, connections: 4, bodySize: 100 });
    try {
      const r = await runOpenLoop(target, { rate: 50, durationS: 1 });
      expect(r.mode).toBe('open');
      expect(r.sent).toBe(50);
      expect(r.completed).toBe(50);
      expect(r.ok).toBe(50);
      expect(r.errors.total).toBe(0);
      expect(r.latencyUs.count).toBe(50);
      expect(r.serviceUs.count).toBe(50);
      expect(r.sendLagUs?.count).toBe(50);
      expect(r.latencyUs.max).toBeGreaterThan(0);
      // From the scheduled time, latency can only be longer than from the actual send.
      expect(r.latencyUs.max).toBeGreaterThanOrEqual(r.serviceUs.min);
      expect(seen.requests).toBe(50);
      expect(seen.bytes).toBe(50 * 100);
      expect([...seen.methods]).toEqual(['POST']);
    } finally {
      await target.close();
    }
  });

  it('sends the last request even when the pacer coalesces ticks past it', async () => {
    // Regression: with a wake-up gap wider than the interval the pacer skipped the last
    // tick, and the run waited for its hard time limit with requests unsent.
    const target = new Target({ url: `${base}/test`, connections: 2, timeoutMs: 500 });
    try {
      const r = await runOpenLoop(target, { rate: 200, durationS: 0.1, minGapMs: 50 });
      expect(r.sent).toBe(20);
      expect(r.ok).toBe(20);
      expect(r.errors.dropped).toBe(0);
    } finally {
      await target.close();
    }
  });

  it('expands {id} into 0 .. ids-1, every occurrence, and leaves other paths alone', () => {
    expect(expandIds('/v1.0/actors/Counter/bench-{id}/method/get', 3)).toEqual([
      '/v1.0/actors/Counter/bench-0/method/get',
      '/v1.0/actors/Counter/bench-1/method/get',
      '/v1.0/actors/Counter/bench-2/method/get',
    ]);
    expect(expandIds('/a/{id}?x={id}', 2)).toEqual(['/a/0?x=0', '/a/1?x=1']);
    expect(expandIds('/test', 1000)).toEqual(['/test']);
    expect(expandIds('/a/{id}').length).toBe(1000);
    expect(() => expandIds('/a/{id}', 0)).toThrow(RangeError);
    // URL parsing escapes the braces in the path; the template keeps them as written.
    expect(splitTemplate('http://127.0.0.1:1/a/{id}/b?q={id}')).toMatchObject({ origin: 'http://127.0.0.1:1', path: '/a/{id}/b?q={id}' });
  });

  it('sends each request to the next id of the template, in order, wrapping at ids', async () => {
    seen.urls.length = 0;
    // One connection: the server sees the requests in the order they were sent.
    const target = new Target({ url: `${base}/actors/Counter/bench-{id}/method/get`, connections: 1, ids: 3, method: 'PUT', bodySize: 8 });
    try {
      expect(target.paths).toEqual(['/actors/Counter/bench-0/method/get', '/actors/Counter/bench-1/method/get', '/actors/Counter/bench-2/method/get']);
      const r = await runOpenLoop(target, { rate: 100, durationS: 1, maxRequests: 7 });
      expect(r.ok).toBe(7);
      // A second run on the same target goes on where the first stopped (warm-up, then measure).
      const r2 = await runOpenLoop(target, { rate: 100, durationS: 1, maxRequests: 2 });
      expect(r2.ok).toBe(2);
      expect(seen.urls.map((u) => u.replace('/actors/Counter/bench-', '').replace('/method/get', ''))).toEqual(['0', '1', '2', '0', '1', '2', '0', '1', '2']);
    } finally {
      await target.close();
    }
  });

  it('honours maxRequests', async () => {
    const target = new Target({ url: `${base}/test`, connections: 2, bodySize: 0, method: 'GET' });
    try {
      const r = await runOpenLoop(target, { rate: 100, durationS: 1, maxRequests: 7 });
      expect(r.sent).toBe(7);
      expect(r.ok).toBe(7);
    } finally {
      await target.close();
    }
  });

  it('counts non-2xx answers as errors by status, not as latencies', async () => {
    const target = new Target({ url: `${base}/fail`, connections: 2 });
    try {
      const r = await runOpenLoop(target, { rate: 20, durationS: 0.5 });
      expect(r.sent).toBe(10);
      expect(r.completed).toBe(10);
      expect(r.ok).toBe(0);
      expect(r.errors.status).toEqual({ '503': 10 });
      expect(r.errors.total).toBe(10);
      expect(r.latencyUs.count).toBe(0);
    } finally {
      await target.close();
    }
  });

  it('counts refused connections as connection errors and still stops', async () => {
    // A port that was just free: nothing listens there.
    const probe = createServer();
    await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve));
    const port = (probe.address() as AddressInfo).port;
    await new Promise((resolve) => probe.close(resolve));
    const target = new Target({ url: `http://127.0.0.1:${port}/test`, connections: 2, timeoutMs: 2000 });
    try {
      const r = await runOpenLoop(target, { rate: 20, durationS: 0.5 });
      expect(r.sent).toBe(10);
      expect(r.ok).toBe(0);
      expect(r.errors.total).toBe(10);
      expect(r.errors.connection).toBe(10);
    } finally {
      await target.close();
    }
  });

  it('closed loop keeps the connections busy for the duration and stops', async () => {
    const target = new Target({ url: `${base}/test`, connections: 4 });
    try {
      const r = await runClosedLoop(target, { durationS: 0.5 });
      expect(r.mode).toBe('closed');
      expect(r.ok).toBeGreaterThan(0);
      expect(r.ok).toBe(r.sent);
      expect(r.latencyUs.count).toBe(r.ok);
      expect(r.errors.total).toBe(0);
    } finally {
      await target.close();
    }
  });

  it('search probes at most `steps` rates, bisecting from half the ceiling', async () => {
    const target = new Target({ url: `${base}/test`, connections: 2, bodySize: 10 });
    try {
      const r = await searchMaxRate(target, { maxRate: 40, steps: 2, stepS: 0.25, pauseMs: 0 });
      expect(r.steps.length).toBe(2);
      expect(r.steps[0]?.rate).toBe(20);
      // The second probe goes up after a pass and down after a failure.
      expect(r.steps[1]?.rate).toBe(r.steps[0]?.pass ? 30 : 10);
      const passed = r.steps.filter((s) => s.pass).map((s) => s.rate);
      expect(r.rate).toBe(passed.length > 0 ? Math.max(...passed) : 0);
    } finally {
      await target.close();
    }
  });
});
