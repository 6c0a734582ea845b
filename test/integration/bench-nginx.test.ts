/**
 * The benchmark's nginx pair (bench/nginx.ts) run for real: generator → nginx A → nginx B → an
 * app, plaintext and mTLS between A and B. Needs nginx, which a fresh machine lacks: skipped
 * then (Debian: apt-get install nginx; or point NGINX_BIN at one).
 */
import { createServer, type IncomingMessage, type Server } from 'node:http';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { connect as tlsConnect } from 'node:tls';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { findNginx, PEER_NAME, startNginxPair, type NginxPair } from '../../bench/nginx.ts';
import { cpuSeconds, mainThreadCpuSeconds, Processes } from '../../bench/procs.ts';

const NGINX = findNginx();
const INVOKE = '/v1.0/invoke/testapp/method/test';

// Skipped without nginx: it is not on a fresh machine or in CI (apt-get install nginx to run it).
describe.skipIf(NGINX === null)('the nginx pair of the benchmark (needs nginx)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'weft-bench-nginx-'));
  const procs = new Processes(dir);
  const seen: { url: string; body: string }[] = [];
  let app: Server;
  let appPort = 0;

  beforeAll(async () => {
    app = createServer((req: IncomingMessage, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        seen.push({ url: req.url ?? '', body: Buffer.concat(chunks).toString() });
        res.end('ok');
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

  async function pair(tls: 'plain' | 'mtls', name: string = tls): Promise<NginxPair> {
    return startNginxPair(procs, { bin: NGINX!, dir: join(dir, name), name, appPort, tls, keepalive: 4, rewrite: { from: INVOKE, to: '/test' } });
  }

  async function callThrough(p: NginxPair, n: number): Promise<void> {
    for (let i = 0; i < n; i++) {
      const res = await fetch(`http://127.0.0.1:${p.port}${INVOKE}?i=${i}`, { method: 'POST', body: `body-${i}` });
      expect(res.status).toBe(200);
      expect(await res.text()).toBe('ok');
    }
  }

  for (const tls of ['plain', 'mtls'] as const) {
    it(`forwards the invoke URL as /test through both proxies (${tls}) and stops them`, async () => {
      const p = await pair(tls);
      const before = seen.length;
      await callThrough(p, 20);
      expect(seen.slice(before)).toEqual(Array.from({ length: 20 }, (_, i) => ({ url: `/test?i=${i}`, body: `body-${i}` })));
      // Any other path is not the benchmark's: A answers it itself.
      expect((await fetch(`http://127.0.0.1:${p.port}/other`)).status).toBe(404);
      expect(seen.length).toBe(before + 20);
      // The harness reads both processes from /proc: each is a single-threaded server.
      for (const proc of [p.a, p.b]) {
        const main = mainThreadCpuSeconds(proc.pid);
        const all = cpuSeconds(proc.pid); // read after: equal, or a tick more if it ran in between
        expect(main).not.toBeNull();
        expect(all! - main!).toBeGreaterThanOrEqual(0);
        expect(all! - main!).toBeLessThan(0.05);
      }
      await procs.stop(p.a);
      await procs.stop(p.b);
      expect(p.a.child.exitCode ?? p.a.child.signalCode).not.toBeNull();
      expect(p.b.child.exitCode ?? p.b.child.signalCode).not.toBeNull();
    });
  }

  it('makes B demand a client certificate from its CA: mTLS, not just TLS', async () => {
    const p = await pair('mtls', 'mtls-check');
    await callThrough(p, 2);
    const conf = readFileSync(join(dir, 'mtls-check', 'a', 'nginx.conf'), 'utf8');
    const bPort = Number(/server 127\.0\.0\.1:(\d+);/.exec(conf)?.[1]);
    const roots = readFileSync(join(dir, 'mtls-check', 'certs', 'roots.pem'));
    // A client with B's CA but without a certificate of its own: the handshake or the request fails.
    const answer = await new Promise<string>((resolve) => {
      const socket = tlsConnect({ host: '127.0.0.1', port: bPort, servername: PEER_NAME, ca: roots }, () => {
        socket.write(`GET /test HTTP/1.1\r\nHost: b\r\nConnection: close\r\n\r\n`);
      });
      let text = '';
      socket.on('data', (d: Buffer) => (text += d.toString()));
      socket.on('error', (err) => resolve(`error: ${err.message}`));
      socket.on('close', () => resolve(text));
    });
    expect(answer).not.toMatch(/^HTTP\/1\.1 200/);
    expect(answer).toMatch(/400|certificate|error/i);
    // And with A's certificate, through B directly: B verifies it and answers.
    const withCert = await new Promise<string>((resolve, reject) => {
      const socket = tlsConnect(
        {
          host: '127.0.0.1',
          port: bPort,
          servername: PEER_NAME,
          ca: roots,
          cert: readFileSync(join(dir, 'mtls-check', 'certs', 'a.crt')),
          key: readFileSync(join(dir, 'mtls-check', 'certs', 'a.key')),
        },
        () => socket.write(`POST /test HTTP/1.1\r\nHost: b\r\nContent-Length: 1\r\nConnection: close\r\n\r\nx`),
      );
      let text = '';
      socket.on('data', (d: Buffer) => (text += d.toString()));
      socket.on('error', reject);
      socket.on('close', () => resolve(text));
    });
    expect(withCert).toMatch(/^HTTP\/1\.1 200/);
    await procs.stopAll();
  });
});
