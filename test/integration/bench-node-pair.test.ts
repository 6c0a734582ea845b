/**
 * The benchmark's Node pair (bench/node-pair.ts, bench/node-proxy.ts) run for real: a client →
 * proxy A (node:http) → proxy B (node:http2, mTLS or h2c) → an echo app, every process on
 * 127.0.0.1 port 0. The answers must arrive as the app gave them (status, its headers, the body
 * byte for byte), the request as the client sent it, and the proxies must answer 502 rather
 * than fail when the app is gone.
 */
import { createServer, type IncomingMessage, type Server } from 'node:http';
import { connect as h2connect } from 'node:http2';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort } from '../../bench/nginx.ts';
import { startNodePair, type NodePair } from '../../bench/node-pair.ts';
import { Processes } from '../../bench/procs.ts';

const INVOKE = '/v1.0/invoke/testapp/method/test';

/** What the app saw of one request. */
interface Seen {
  method: string;
  url: string;
  headers: IncomingMessage['headers'];
  body: Buffer;
}

describe('the Node pair of the benchmark', () => {
  const dir = mkdtempSync(join(tmpdir(), 'weft-bench-node-pair-'));
  const procs = new Processes(dir);
  const seen: Seen[] = [];
  let app: Server;
  let appPort = 0;

  beforeAll(async () => {
    // An echo app: the body back, the status named by ?status=, and what it was sent in headers.
    app = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        const body = Buffer.concat(chunks);
        seen.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers, body });
        const query = new URL(req.url ?? '/', 'http://x').searchParams;
        if (query.has('chunked')) {
          // No length: the proxies must stream this answer rather than collect it.
          res.writeHead(200, { 'content-type': 'text/plain', 'x-echo-method': req.method ?? '' });
          res.write(body.subarray(0, 1000));
          setTimeout(() => res.end(body.subarray(1000)), 20);
          return;
        }
        const status = Number(query.get('status') ?? 200);
        const answer = status === 200 ? body : Buffer.from(`status ${status} for ${req.url}`);
        res.writeHead(status, {
          'content-type': req.headers['content-type'] ?? 'application/octet-stream',
          'content-length': String(answer.length),
          'x-echo-custom': String(req.headers['x-custom'] ?? ''),
          'x-echo-method': req.method ?? '',
        });
        res.end(answer);
      });
    });
    await new Promise<void>((r) => app.listen(0, '127.0.0.1', r));
    appPort = (app.address() as AddressInfo).port;
  });

  afterAll(async () => {
    await procs.stopAll();
    await new Promise((r) => app.close(r));
    rmSync(dir, { recursive: true, force: true });
  });

  const pair = (tls: 'plain' | 'mtls', name: string, port = appPort): Promise<NodePair> =>
    startNodePair(procs, { dir: join(dir, name), name, appPort: port, tls, rewrite: { from: INVOKE, to: '/test' } });

  /** Stops both proxies; each must have exited. */
  async function stopBoth(p: NodePair): Promise<void> {
    for (const proc of [p.a, p.b]) {
      await procs.stop(proc);
      expect(proc.child.exitCode ?? proc.child.signalCode).not.toBeNull();
    }
  }

  // Every byte value, more than one TLS record's worth of small frames: what comes back must be the same bytes.
  const binary = Buffer.from(Array.from({ length: 3000 }, (_, i) => (i * 7) % 256));

  for (const tls of ['mtls', 'plain'] as const) {
    it(`carries requests and answers through both proxies unchanged (${tls}), then stops them`, async () => {
      const p = await pair(tls, tls);
      const base = `http://127.0.0.1:${p.port}${INVOKE}`;
      const before = seen.length;

      const posted = await fetch(`${base}?i=1`, { method: 'POST', body: binary, headers: { 'content-type': 'application/x-bench', 'x-custom': 'hello there' } });
      expect(posted.status).toBe(200);
      expect(posted.headers.get('x-echo-custom')).toBe('hello there');
      expect(posted.headers.get('x-echo-method')).toBe('POST');
      expect(posted.headers.get('content-type')).toBe('application/x-bench');
      expect(Buffer.from(await posted.arrayBuffer()).equals(binary)).toBe(true);

      const streamed = await fetch(`${base}?chunked=1`, { method: 'POST', body: binary });
      expect(streamed.status).toBe(200);
      expect(streamed.headers.get('content-length')).toBeNull();
      expect(Buffer.from(await streamed.arrayBuffer()).equals(binary)).toBe(true);

      const empty = await fetch(`${base}?i=2`);
      expect(empty.status).toBe(200);
      expect((await empty.arrayBuffer()).byteLength).toBe(0);

      // The app's own non-2xx answers come back as the app gave them, body and all.
      const missing = await fetch(`${base}?status=404`, { method: 'PUT', body: 'x' });
      expect(missing.status).toBe(404);
      expect(await missing.text()).toBe('status 404 for /test?status=404');
      const busy = await fetch(`${base}?status=503`, { method: 'POST', body: 'y' });
      expect(busy.status).toBe(503);
      expect(busy.headers.get('x-echo-method')).toBe('POST');
      expect(await busy.text()).toBe('status 503 for /test?status=503');

      // What the app received: the rewritten path with its query, the method, the body, the
      // client's own headers, and none of the client's connection headers.
      const got = seen.slice(before);
      expect(got.map((s) => [s.method, s.url, s.body.toString('latin1')])).toEqual([
        ['POST', '/test?i=1', binary.toString('latin1')],
        ['POST', '/test?chunked=1', binary.toString('latin1')],
        ['GET', '/test?i=2', ''],
        ['PUT', '/test?status=404', 'x'],
        ['POST', '/test?status=503', 'y'],
      ]);
      expect(got[0]!.headers['x-custom']).toBe('hello there');
      expect(got[0]!.headers['content-type']).toBe('application/x-bench');
      expect(got[0]!.headers['content-length']).toBe(String(binary.length));
      // Host is a hop's own: the app sees its own address, not the one the client called.
      expect(got[0]!.headers['host']).toBe(`127.0.0.1:${appPort}`);

      // Any other path is not the benchmark's: A answers it itself, as nginx A does.
      expect((await fetch(`http://127.0.0.1:${p.port}/other`)).status).toBe(404);
      expect(seen.length).toBe(before + 5);

      await stopBoth(p);
    });
  }

  it('makes B demand a client certificate from its CA: mTLS, not just TLS', async () => {
    const p = await pair('mtls', 'mtls-check');
    const certs = join(dir, 'mtls-check', 'certs');
    const ca = readFileSync(join(certs, 'roots.pem'));
    const ask = (withCert: boolean): Promise<string> =>
      new Promise((resolve) => {
        const session = h2connect(`https://127.0.0.1:${p.bPort}`, {
          ca,
          servername: 'node-pair-b.bench.local',
          ...(withCert ? { cert: readFileSync(join(certs, 'a.crt')), key: readFileSync(join(certs, 'a.key')) } : {}),
        });
        session.on('error', (err) => resolve(`error: ${err.message}`));
        const req = session.request({ ':method': 'POST', ':path': '/test' });
        req.on('error', (err) => resolve(`error: ${err.message}`));
        req.on('response', (h) => {
          req.resume();
          req.on('end', () => {
            session.close();
            resolve(`status ${String(h[':status'])}`);
          });
        });
        req.end('z');
      });
    expect(await ask(false)).toMatch(/^error: /);
    expect(await ask(true)).toBe('status 200');
    await stopBoth(p);
  });

  it('answers 502 when the app cannot be reached, and keeps serving', async () => {
    const closed = await freePort(); // nothing listens there
    const p = await pair('mtls', 'no-app', closed);
    for (let i = 0; i < 3; i++) {
      const res = await fetch(`http://127.0.0.1:${p.port}${INVOKE}`, { method: 'POST', body: 'q' });
      expect(res.status).toBe(502);
      await res.arrayBuffer();
    }
    expect(p.a.child.exitCode).toBeNull();
    expect(p.b.child.exitCode).toBeNull();
    await stopBoth(p);
  });
});
