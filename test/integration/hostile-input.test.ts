/**
 * Hostile input at the edges, against real nodes: every request gets an answer with the right
 * status and a stable code, nothing a client sends grows the node's state without bound, and the
 * access policy judges the very path the app is sent.
 *
 * Classes covered: `Expect` (100-continue and others), app ids no entry may take (path, header,
 * basic auth, gRPC), 20,000 distinct unknown and bad ids (routing watches, RSS, /metrics),
 * parser-level refusals (slow head 408, long URL 414, large head 431, CONNECT, garbage), an app
 * that closes mid-answer, and method paths that cannot be normalized unambiguously.
 */
import { connect as netConnect } from 'node:net';
import { request as httpRequest, type IncomingHttpHeaders } from 'node:http';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Pool } from 'undici';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import type { WeftNode } from '../../src/node.ts';
import { Cluster, echoHandler, rawRequest, type TestApp } from '../support/cluster.ts';
import { FakeConsul } from '../support/consul-server.ts';

const UNKNOWN_CAP = 64;

interface Reply {
  status: number;
  headers: IncomingHttpHeaders;
  body: string;
  /** A `100 Continue` came first. */
  continued: boolean;
}

/** One request through node:http (it sends what undici would refuse), with `Expect: 100-continue` honoured. */
function send(port: number, method: string, path: string, headers: Record<string, string | number>, body?: Buffer): Promise<Reply> {
  return new Promise((resolve, reject) => {
    let continued = false;
    const expectContinue = String(headers['expect'] ?? '').toLowerCase() === '100-continue';
    const req = httpRequest({ host: '127.0.0.1', port, method, path, headers, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString('utf8'), continued }));
      res.on('error', reject);
    });
    req.on('error', reject);
    if (expectContinue) {
      req.on('continue', () => {
        continued = true;
        req.end(body);
      });
    } else {
      req.end(body);
    }
  });
}

/** Writes raw bytes on a fresh connection and reads until the server closes it (or 10 s pass). */
function rawExchange(port: number, data: string | Buffer, options: { keepOpen?: boolean } = {}): Promise<string> {
  return new Promise((resolve) => {
    const sock = netConnect(port, '127.0.0.1', () => {
      if (options.keepOpen === true) sock.write(data);
      else sock.end(data);
    });
    let text = '';
    const guard = setTimeout(() => sock.destroy(), 10_000);
    sock.on('data', (d) => (text += d.toString('latin1')));
    sock.on('error', () => {});
    sock.on('close', () => {
      clearTimeout(guard);
      resolve(text);
    });
  });
}

function statusOf(raw: string): number {
  return Number(/^HTTP\/1\.1 (\d{3})/.exec(raw)?.[1] ?? 0);
}

function weftCodeOf(raw: string): string | undefined {
  return /"weftCode":"([A-Z_]+)"/.exec(raw)?.[1];
}

async function gauge(node: WeftNode, name: string): Promise<number> {
  const line = (await node.metrics.text()).split('\n').find((l) => l.startsWith(`${name}{`) || l.startsWith(`${name} `));
  return Number(line?.slice(line.lastIndexOf(' ') + 1));
}

/** Polls a condition a bounded number of times (no timing is asserted; this only waits). */
async function eventually(check: () => Promise<boolean>, tries = 200, everyMs = 50): Promise<boolean> {
  for (let i = 0; i < tries; i++) {
    if (await check()) return true;
    await new Promise((r) => setTimeout(r, everyMs));
  }
  return false;
}

const PROTO_ROOT = fileURLToPath(new URL('../../proto/', import.meta.url));
const Dapr = (grpc.loadPackageDefinition(protoLoader.loadSync('dapr/proto/runtime/v1/dapr.proto', {
  includeDirs: [PROTO_ROOT], keepCase: true, longs: Number, enums: Number, defaults: true, oneofs: true,
})) as unknown as { dapr: { proto: { runtime: { v1: { Dapr: grpc.ServiceClientConstructor } } } } }).dapr.proto.runtime.v1.Dapr;
type GrpcClient = grpc.Client & Record<string, (req: unknown, md: grpc.Metadata, opts: grpc.CallOptions, cb: (err: grpc.ServiceError | null, res: unknown) => void) => unknown>;

function grpcCall(client: GrpcClient, rpc: string, req: unknown): Promise<grpc.ServiceError | null> {
  return new Promise((resolve) => {
    (client[rpc] as GrpcClient[string]).call(client, req, new grpc.Metadata(), { deadline: Date.now() + 10_000 }, (err) => resolve(err));
  });
}

describe.each([
  { mode: 'inline', workers: 0 },
  { mode: 'workers', workers: 1 },
])('hostile input ($mode)', ({ workers }) => {
  const cluster = new Cluster();
  let a: WeftNode; // "front", caller only: the node under attack
  let b: WeftNode; // "echo" (no policy), "guarded" (front may only GET /public/**), "aborter"
  let echo: TestApp;
  let guarded: TestApp;
  let client: GrpcClient;

  beforeAll(async () => {
    echo = await cluster.app(echoHandler('echo'));
    guarded = await cluster.app(echoHandler('guarded'));
    const aborter = await cluster.app((req, res) => {
      req.resume();
      if (req.url?.startsWith('/before-head') === true) {
        req.socket.destroy();
        return;
      }
      res.writeHead(200, { 'content-type': 'text/plain', 'content-length': '100000' });
      res.write('the start of an answer that never ends');
      setTimeout(() => req.socket.destroy(), 20);
    });
    // headers 1.5 s: short for the slow-head test to wait out, long enough that an event-loop stall on a
    // loaded machine does not turn a whole head waiting in the socket into a 408 (Node checks heads on a timer).
    a = await cluster.node({
      workers, apps: [{ appId: 'front' }],
      extra: { timeouts: { invoke: '5s', shutdown: '2s', headers: '1500ms' }, routing: { unknownIdleTimeout: '300ms', maxUnknown: UNKNOWN_CAP } },
    });
    const apps = [
      { appId: 'echo', appPort: echo.port },
      { appId: 'aborter', appPort: aborter.port },
      {
        appId: 'guarded', appPort: guarded.port,
        accessControl: {
          defaultAction: 'deny',
          policies: [{ appId: 'front', namespace: 'default', defaultAction: 'deny', operations: [{ name: '/public/**', httpVerb: ['GET'], action: 'allow' }] }],
        },
      },
    ] as unknown as Array<{ appId: string; appPort: number }>;
    b = await cluster.node({ workers, apps });
    client = new Dapr(`127.0.0.1:${a.ports.grpc}`, grpc.credentials.createInsecure()) as unknown as GrpcClient;
    // warm: both nodes route to each other
    expect((await send(a.ports.http, 'GET', '/v1.0/invoke/echo/method/warm', {})).status).toBe(200);
  });
  afterAll(async () => {
    client.close();
    await cluster.close();
  });

  async function inflightIsZero(): Promise<void> {
    expect(await eventually(async () => (await gauge(a, 'weft_service_invocation_inflight')) === 0)).toBe(true);
  }

  describe('Expect', () => {
    it('100-continue with a small body: continued, answered by the app, never forwarded', async () => {
      const before = echo.seen.length;
      const r = await send(a.ports.http, 'POST', '/v1.0/invoke/echo/method/echo/small', { expect: '100-continue', 'content-type': 'text/plain', 'content-length': 5 }, Buffer.from('hello'));
      expect(r.status).toBe(200);
      expect(r.continued).toBe(true);
      expect(r.body).toBe('hello');
      const seen = echo.seen.slice(before);
      expect(seen).toHaveLength(1);
      expect(seen[0]?.headers['expect']).toBeUndefined();
    });

    it('100-continue with a 3 MiB body (curl sends it past 1 MiB) streams through', async () => {
      const big = Buffer.alloc(3 * 1024 * 1024, 'x');
      const r = await send(a.ports.http, 'PUT', '/v1.0/invoke/echo/method/echo/big', { expect: '100-continue', 'content-length': big.length }, big);
      expect(r.status).toBe(200);
      expect(r.continued).toBe(true);
      expect(r.body.length).toBe(big.length);
      await inflightIsZero();
    });

    it('100-continue refused: the final status comes at once, without the body', async () => {
      const tooBig = await send(a.ports.http, 'POST', '/v1.0/invoke/echo/method/x', { expect: '100-continue', 'content-length': 64 * 1024 * 1024 }, Buffer.alloc(0));
      expect(tooBig.status).toBe(413);
      expect(tooBig.continued).toBe(false);
      expect(JSON.parse(tooBig.body).weftCode).toBe('WEFT_BODY_TOO_LARGE');
      const badId = await send(a.ports.http, 'POST', '/v1.0/invoke/a%01b/method/x', { expect: '100-continue', 'content-length': 3 }, Buffer.from('abc'));
      expect(badId.status).toBe(400);
      expect(badId.continued).toBe(false);
      expect(JSON.parse(badId.body).weftCode).toBe('WEFT_BAD_APP_ID');
      const badPath = await send(a.ports.http, 'POST', '/v1.0/invoke/echo/method/a%2Fb', { expect: '100-continue', 'content-length': 3 }, Buffer.from('abc'));
      expect(badPath.status).toBe(400);
      expect(JSON.parse(badPath.body).weftCode).toBe('WEFT_BAD_PATH');
    });

    it('any other expectation is 417 with a code', async () => {
      const r = await rawRequest(a.ports.http, '/v1.0/invoke/echo/method/x', 'POST', { expect: 'teapot', 'content-length': '2' }, 'hi');
      expect(r.status).toBe(417);
      expect(JSON.parse(r.body).weftCode).toBe('WEFT_EXPECTATION_FAILED');
    });
  });

  describe('app ids, on every entry', () => {
    const bad = ['é', 'a\tb', '\u0001', 'a b', 'a.b.c', 'x'.repeat(64), 'a\u0000b', '\u202e', 'a\r\nb'];

    it.each(bad)('path form refuses %j with 400 WEFT_BAD_APP_ID', async (id) => {
      const r = await send(a.ports.http, 'GET', `/v1.0/invoke/${encodeURIComponent(id)}/method/x`, {});
      expect(r.status).toBe(400);
      expect(JSON.parse(r.body).weftCode).toBe('WEFT_BAD_APP_ID');
    });

    it('header and basic-auth forms refuse the same ids', async () => {
      for (const id of bad) {
        const basic = await send(a.ports.http, 'GET', '/x', { authorization: `Basic ${Buffer.from(`dapr-app-id:${id}`).toString('base64')}` });
        expect(basic.status, JSON.stringify(id)).toBe(400);
        expect(JSON.parse(basic.body).weftCode).toBe('WEFT_BAD_APP_ID');
        if (/^[\t\x20-\x7e]*$/.test(id)) {
          const header = await send(a.ports.http, 'GET', '/x', { 'dapr-app-id': id });
          expect(header.status, JSON.stringify(id)).toBe(400);
          expect(JSON.parse(header.body).weftCode).toBe('WEFT_BAD_APP_ID');
        }
      }
      // raw latin-1 bytes in a header value (what a client can send that node:http's client would refuse)
      const raw = await rawExchange(a.ports.http, Buffer.concat([Buffer.from('GET /x HTTP/1.1\r\nHost: a\r\ndapr-app-id: caf'), Buffer.from([0xc3, 0xa9]), Buffer.from('\r\nConnection: close\r\n\r\n')]));
      expect(statusOf(raw)).toBe(400);
      expect(weftCodeOf(raw)).toBe('WEFT_BAD_APP_ID');
    });

    it('gRPC: every call gets a status, whatever the id or method', async () => {
      for (const id of ['é', 'a\tb', '\u0001', 'a.b.c', 'x'.repeat(200)]) {
        const err = await grpcCall(client, 'InvokeService', { id, message: { method: 'x' } });
        expect(err?.code, JSON.stringify(id)).toBe(grpc.status.INVALID_ARGUMENT);
        expect(err?.metadata.get('weft-code')[0]).toBe('WEFT_BAD_APP_ID');
      }
      const empty = await grpcCall(client, 'InvokeService', { id: '', message: { method: 'x' } });
      expect(empty?.metadata.get('weft-code')[0]).toBe('WEFT_NO_APP_ID');
      const badPath = await grpcCall(client, 'InvokeService', { id: 'echo', message: { method: 'a/%2e%2e/%2e%2e/etc' } });
      expect(badPath?.code).toBe(grpc.status.INVALID_ARGUMENT);
      expect(badPath?.metadata.get('weft-code')[0]).toBe('WEFT_BAD_PATH');
      const before = echo.seen.length;
      const odd = await grpcCall(client, 'InvokeService', { id: 'echo', message: { method: 'caf\u00e9 x', http_extension: { verb: 1, querystring: 'a=b c&d=\u00e9\u0001' } } });
      expect(odd).toBeNull();
      expect(echo.seen.slice(before).map((r) => r.url)).toEqual(['/caf%C3%A9%20x?a=b%20c&d=%C3%A9%01']);
      const ghost = await grpcCall(client, 'InvokeService', { id: 'ghost-grpc', message: { method: 'x' } });
      expect(ghost?.code).toBe(grpc.status.UNAVAILABLE);
      for (const type of ['é', '\u0001', 'a\tb']) {
        const actor = await grpcCall(client, 'InvokeActor', { actor_type: type, actor_id: type, method: type });
        expect(actor, JSON.stringify(type)).not.toBeNull();
        expect(actor?.code).not.toBe(grpc.status.OK);
      }
      await inflightIsZero();
    });
  });

  describe('20,000 distinct unknown and bad ids (4,000 inline)', () => {
    it('answer each with its code, and leave watches, RSS and /metrics bounded', async () => {
      const pool = new Pool(`http://127.0.0.1:${a.ports.http}`, { connections: 16, pipelining: 1 });
      const tally = new Map<string, number>();
      const rssBefore = process.memoryUsage().rss;
      // The full 20,000 once (with worker threads, where snapshots cross threads); fewer inline.
      const N = workers > 0 ? 20_000 : 4_000;
      let next = 0;
      const one = async (i: number): Promise<void> => {
        let path = `/v1.0/invoke/ghost-${i}/method/x`;
        const headers: Record<string, string> = {};
        switch (i % 4) {
          case 1: path = `/v1.0/invoke/ghost%0D%00${i}/method/x`; break;
          case 2: path = '/anything'; headers['dapr-app-id'] = `hdr-ghost-${i}`; break;
          case 3: path = '/anything'; headers['authorization'] = `Basic ${Buffer.from(`dapr-app-id:bad\r\u0000${i}`).toString('base64')}`; break;
        }
        const res = await pool.request({ path, method: 'GET', headers });
        const body = (await res.body.json()) as { weftCode: string };
        const key = `${i % 4}:${res.statusCode}:${body.weftCode}`;
        tally.set(key, (tally.get(key) ?? 0) + 1);
      };
      await Promise.all(Array.from({ length: 64 }, async () => {
        while (next < N) await one(next++);
      }));
      await pool.close();
      expect(Object.fromEntries(tally)).toEqual({
        '0:500:WEFT_APP_NOT_FOUND': N / 4,
        '1:400:WEFT_BAD_APP_ID': N / 4,
        '2:500:WEFT_APP_NOT_FOUND': N / 4,
        '3:400:WEFT_BAD_APP_ID': N / 4,
      });

      // Watches: never more than the known targets plus the cap, and the unknown ones expire.
      const watches = await gauge(a, 'weft_routing_watches');
      expect(watches).toBeLessThanOrEqual(UNKNOWN_CAP + 4);
      expect(await eventually(async () => (await gauge(a, 'weft_routing_watches')) <= 1)).toBe(true);

      // /metrics: one series for every unknown target, no raw control characters, small.
      const text = await a.metrics.text();
      expect(text).toContain('dst_app_id="_unknown"');
      expect(text).not.toContain('ghost-');
      expect(text).not.toMatch(/[\r\u0000]/);
      expect(text.length).toBeLessThan(1024 * 1024);

      // RSS: generous, relative to the start (the unbounded state grew it by >200 MB per node).
      const rssAfter = process.memoryUsage().rss;
      expect(rssAfter - rssBefore).toBeLessThan(120 * 1024 * 1024);
      await inflightIsZero();
      // and the node still serves
      expect((await send(a.ports.http, 'GET', '/v1.0/invoke/echo/method/after', {})).status).toBe(200);
    }, 240_000);
  });

  describe('a client that vanishes', () => {
    it('mid-way through a small body with a content-length (sent in pieces): the app never sees the call, in-flight returns to 0, the node serves on', async () => {
      const before = echo.seen.length;
      const socket = netConnect(a.ports.http, '127.0.0.1');
      await new Promise<void>((resolve, reject) => socket.once('connect', resolve).once('error', reject));
      socket.on('error', () => {});
      socket.write('POST /v1.0/invoke/echo/method/echo/cut HTTP/1.1\r\nhost: a\r\ncontent-length: 20000\r\n\r\n');
      for (const part of [Buffer.alloc(3000, 1), Buffer.alloc(7000, 2)]) {
        await new Promise((resolve) => setTimeout(resolve, 30));
        socket.write(part);
      }
      await new Promise((resolve) => setTimeout(resolve, 50));
      socket.destroy();
      await inflightIsZero();
      expect(echo.seen.slice(before).some((r) => r.url.includes('/cut'))).toBe(false);
      expect((await send(a.ports.http, 'POST', '/v1.0/invoke/echo/method/echo/after-cut', { 'content-length': 5 }, Buffer.from('whole'))).body).toBe('whole');
    });
  });

  describe('status codes', () => {
    it('a head that does not arrive in time is 408 WEFT_REQUEST_TIMEOUT', async () => {
      const raw = await rawExchange(a.ports.http, 'GET /v1.0/healthz HTTP/1.1\r\nHost: a\r\nX-Slow: ', { keepOpen: true });
      expect(statusOf(raw)).toBe(408);
      expect(weftCodeOf(raw)).toBe('WEFT_REQUEST_TIMEOUT');
    });

    it('a long URL is 414 WEFT_URI_TOO_LONG, below and above the parser limit', async () => {
      for (const n of [9 * 1024, 20 * 1024, 100 * 1024]) {
        const raw = await rawExchange(a.ports.http, `GET /v1.0/invoke/echo/method/${'a'.repeat(n)} HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n`);
        expect(statusOf(raw), String(n)).toBe(414);
        expect(weftCodeOf(raw)).toBe('WEFT_URI_TOO_LONG');
      }
    });

    it('headers too large are 431 WEFT_HEADERS_TOO_LARGE', async () => {
      const raw = await rawExchange(a.ports.http, `GET /v1.0/invoke/echo/method/x HTTP/1.1\r\nHost: a\r\nX-Big: ${'b'.repeat(20 * 1024)}\r\nConnection: close\r\n\r\n`);
      expect(statusOf(raw)).toBe(431);
      expect(weftCodeOf(raw)).toBe('WEFT_HEADERS_TOO_LARGE');
      const many = Array.from({ length: 800 }, (_, i) => `X-H${i}: ${'v'.repeat(20)}\r\n`).join('');
      const raw2 = await rawExchange(a.ports.http, `GET /x HTTP/1.1\r\nHost: a\r\n${many}Connection: close\r\n\r\n`);
      expect(statusOf(raw2)).toBe(431);
    });

    it('CONNECT gets 405 WEFT_METHOD_NOT_ALLOWED; garbage gets 400 WEFT_BAD_REQUEST', async () => {
      const connect = await rawExchange(a.ports.http, 'CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n', { keepOpen: true });
      expect(statusOf(connect)).toBe(405);
      expect(weftCodeOf(connect)).toBe('WEFT_METHOD_NOT_ALLOWED');
      const garbage = await rawExchange(a.ports.http, 'NOT HTTP AT ALL\r\n\r\n');
      expect(statusOf(garbage)).toBe(400);
      expect(weftCodeOf(garbage)).toBe('WEFT_BAD_REQUEST');
      const absolute = await rawExchange(a.ports.http, 'GET http://elsewhere/x HTTP/1.1\r\nHost: elsewhere\r\ndapr-app-id: echo\r\nConnection: close\r\n\r\n', { keepOpen: true });
      expect(statusOf(absolute)).toBe(400);
      expect(weftCodeOf(absolute)).toBe('WEFT_BAD_REQUEST');
      const connectVerb = await grpcCall(client, 'InvokeService', { id: 'echo', message: { method: 'x', http_extension: { verb: 6 } } });
      expect(connectVerb?.metadata.get('weft-code')[0]).toBe('WEFT_METHOD_NOT_ALLOWED');
      const smuggle = await rawExchange(a.ports.http, 'POST /v1.0/invoke/echo/method/x HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n');
      expect(statusOf(smuggle)).toBe(400);
    });

    it('an app that closes mid-answer is 502 WEFT_APP_ABORTED, before or after its head', async () => {
      for (const path of ['before-head', 'mid-body']) {
        const r = await send(a.ports.http, 'GET', `/v1.0/invoke/aborter/method/${path}`, {});
        expect(r.status, path).toBe(502);
        expect(JSON.parse(r.body).weftCode).toBe('WEFT_APP_ABORTED');
      }
      await inflightIsZero();
    });
  });

  describe('the policy judges the path the app is sent', () => {
    async function guardedCall(method: string, path: string, headers: Record<string, string> = {}): Promise<{ status: number; code: string | undefined; seenPath: string | undefined }> {
      const before = guarded.seen.length;
      const raw = await rawExchange(a.ports.http, `${method} ${path} HTTP/1.1\r\nHost: a\r\n${Object.entries(headers).map(([k, v]) => `${k}: ${v}\r\n`).join('')}Connection: close\r\n\r\n`, { keepOpen: true });
      const after = guarded.seen.slice(before);
      return { status: statusOf(raw), code: weftCodeOf(raw), seenPath: after[0]?.url };
    }

    it('allows what the policy allows, as the app sees it', async () => {
      expect(await guardedCall('GET', '/v1.0/invoke/guarded/method/public/a//b/./c')).toMatchObject({ status: 200, seenPath: '/public/a/b/c' });
      expect(await guardedCall('GET', '/v1.0/invoke/guarded/method/public/caf%c3%a9')).toMatchObject({ status: 200, seenPath: '/public/caf%C3%A9' });
      expect(await guardedCall('GET', '/v1.0/invoke/guarded/method/public/x;y')).toMatchObject({ status: 200, seenPath: '/public/x%3By' });
      expect(await guardedCall('GET', '/public/ok', { 'dapr-app-id': 'guarded' })).toMatchObject({ status: 200, seenPath: '/public/ok' });
    });

    it.each([
      '/v1.0/invoke/guarded/method/public/../admin',
      '/v1.0/invoke/guarded/method/public/%2e%2e/admin',
      '/v1.0/invoke/guarded/method/public/.%2E/admin',
      '/v1.0/invoke/guarded/method/%70ublic/../admin',
      '/v1.0/invoke/guarded/method/ADMIN',
    ])('denies %s with 403 WEFT_ACCESS_DENIED, and the app never sees it', async (path) => {
      expect(await guardedCall('GET', path)).toEqual({ status: 403, code: 'WEFT_ACCESS_DENIED', seenPath: undefined });
    });

    it.each([
      '/v1.0/invoke/guarded/method/public/..%2Fadmin',
      '/v1.0/invoke/guarded/method/public/%2e%2e%2fadmin',
      '/v1.0/invoke/guarded/method/public/%252e%252e/admin',
      '/v1.0/invoke/guarded/method/public/x%00',
      '/v1.0/invoke/guarded/method/public/x%5C..%5Cadmin',
      '/v1.0/invoke/guarded/method/public\\..\\admin',
      '/v1.0/invoke/guarded/method/../../v1.0/metadata',
      '/v1.0/invoke/guarded/method/public/%zz',
      '/v1.0/invoke/guarded/method/public/%C3%28',
    ])('refuses %s with 400 WEFT_BAD_PATH before anything is called', async (path) => {
      expect(await guardedCall('GET', path)).toEqual({ status: 400, code: 'WEFT_BAD_PATH', seenPath: undefined });
    });

    it('refuses the same through the dapr-app-id header form', async () => {
      expect(await guardedCall('GET', '/public/..%2Fadmin', { 'dapr-app-id': 'guarded' })).toEqual({ status: 400, code: 'WEFT_BAD_PATH', seenPath: undefined });
      expect(await guardedCall('GET', '/public/%2e%2e/admin', { 'dapr-app-id': 'guarded' })).toEqual({ status: 403, code: 'WEFT_ACCESS_DENIED', seenPath: undefined });
      await inflightIsZero();
    });
  });
});

describe('unknown ids through Consul: blocking queries stay bounded and go away', () => {
  const fake = new FakeConsul({ reapInterval: 100, deregisterMin: 0 });
  const cluster = new Cluster();
  let node: WeftNode;
  const cap = 16;

  beforeAll(async () => {
    await fake.start();
    node = await cluster.node({
      apps: [{ appId: 'front' }],
      resolver: { type: 'consul', consul: { address: fake.address, wait: '10s', backoff: { initial: '50ms', max: '300ms' } } },
      extra: { routing: { unknownIdleTimeout: '300ms', maxUnknown: cap } },
    });
  });
  afterAll(async () => {
    await cluster.close();
    await fake.stop();
  });

  it('holds at most maxUnknown watches for 1,000 distinct unknown ids, then none', async () => {
    const ghosts = (): number => fake.blockingQueries.filter((n) => n.startsWith('consul-ghost-')).length;
    const pool = new Pool(`http://127.0.0.1:${node.ports.http}`, { connections: 8 });
    let next = 0;
    let most = 0;
    const codes = new Set<string>();
    await Promise.all(Array.from({ length: 16 }, async () => {
      while (next < 1000) {
        const res = await pool.request({ path: `/v1.0/invoke/consul-ghost-${next++}/method/x`, method: 'GET' });
        codes.add(`${res.statusCode} ${((await res.body.json()) as { weftCode: string }).weftCode}`);
        most = Math.max(most, ghosts());
      }
    }));
    await pool.close();
    expect([...codes]).toEqual(['500 WEFT_APP_NOT_FOUND']);
    expect(most).toBeGreaterThan(0);
    // the cap, plus the queries of evicted watches the server has not yet seen close (≤ one per caller)
    expect(most).toBeLessThanOrEqual(cap + 16);
    expect(await gauge(node, 'weft_routing_watches')).toBeLessThanOrEqual(cap);
    expect(await eventually(async () => ghosts() === 0 && (await gauge(node, 'weft_routing_watches')) === 0)).toBe(true);
  }, 120_000);
});
