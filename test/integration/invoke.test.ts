/**
 * Service invocation across real nodes: HTTP API → outbound (workers or inline) → peer gRPC →
 * app. Every case runs with the worker pool and inline, which must behave the same.
 */
import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { connect } from 'node:net';
import { Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { request } from 'undici';
import type { WeftNode } from '../../src/node.ts';
import { Cluster, echoHandler, rawRequest, url } from '../support/cluster.ts';

const sha = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');

describe.each([
  { mode: 'workers', workers: 2 },
  { mode: 'inline', workers: 0 },
])('invocation across nodes ($mode)', ({ workers }) => {
  const cluster = new Cluster();
  let a: WeftNode; // serves the caller-only app "front"
  let b: WeftNode; // serves "echo" (instance 1) and "solo"
  let c: WeftNode; // serves "echo" (instance 2)

  beforeAll(async () => {
    const echo1 = await cluster.app(echoHandler('echo-1'));
    const echo2 = await cluster.app(echoHandler('echo-2'));
    const solo = await cluster.app(echoHandler('solo'));
    a = await cluster.node({ workers, apps: [{ appId: 'front' }] });
    b = await cluster.node({ workers, apps: [{ appId: 'echo', appPort: echo1.port }, { appId: 'solo', appPort: solo.port }] });
    c = await cluster.node({ workers, apps: [{ appId: 'echo', appPort: echo2.port }] });
  });
  afterAll(() => cluster.close());

  it.each(['GET', 'POST', 'PUT', 'DELETE', 'PATCH', 'OPTIONS'])('forwards %s with its path and query', async (verb) => {
    const res = await request(url(a, '/v1.0/invoke/solo/method/echo/a/b/c?x=1&y=two%20words'), { method: verb as 'GET' });
    await res.body.text();
    expect(res.statusCode).toBe(200);
    expect(res.headers['x-echo-method']).toBe(verb);
    expect(res.headers['x-echo-path']).toBe('/echo/a/b/c');
    expect(res.headers['x-echo-query']).toBe('x=1&y=two%20words');
  });

  it('forwards HEAD and returns the headers without a body', async () => {
    const res = await request(url(a, '/v1.0/invoke/solo/method/echo/head'), { method: 'HEAD' });
    expect(res.statusCode).toBe(200);
    expect(res.headers['x-echo-method']).toBe('HEAD');
    expect(await res.body.text()).toBe('');
  });

  it('carries custom headers both ways, sets caller/callee headers, drops hop-by-hop ones', async () => {
    const res = await rawRequest(a.ports.http, '/v1.0/invoke/solo/method/echo/h', 'POST', {
      'x-custom': 'kept',
      'content-type': 'text/plain',
      'dapr-caller-app-id': 'spoofed',
      connection: 'keep-alive, x-hop',
      'keep-alive': 'timeout=5',
      'proxy-authorization': 'secret',
      te: 'trailers',
      'x-hop': 'named by connection',
    }, 'hi');
    expect(res.status).toBe(200);
    expect(res.body).toBe('hi');
    expect(res.headers['content-type']).toBe('text/plain');
    const seen = JSON.parse(res.headers['x-echo-headers'] as string) as Record<string, string>;
    expect(seen['x-custom']).toBe('kept');
    expect(seen['dapr-caller-app-id']).toBe('front');
    expect(seen['dapr-caller-namespace']).toBe('default');
    expect(seen['dapr-callee-app-id']).toBe('solo');
    expect(seen['x-forwarded-for']).toBe('127.0.0.1');
    expect(seen['forwarded']).toContain('for=127.0.0.1');
    expect(seen['keep-alive']).toBeUndefined();
    expect(seen['proxy-authorization']).toBeUndefined();
    expect(seen['te']).toBeUndefined();
    expect(seen['x-hop']).toBeUndefined();
  });

  it.each([0, 1024, 5 * 1024 * 1024])('echoes a binary body of %i bytes unchanged', async (size) => {
    const body = randomBytes(size);
    const res = await request(url(a, '/v1.0/invoke/solo/method/echo/bin'), {
      method: 'POST', body, headers: { 'content-type': 'application/octet-stream' },
    });
    const back = Buffer.from(await res.body.arrayBuffer());
    expect(res.statusCode).toBe(200);
    expect(back.length).toBe(size);
    expect(sha(back)).toBe(sha(body));
  });

  it('streams a request body of unknown length (chunked)', async () => {
    const parts = [randomBytes(300_000), randomBytes(500_000), randomBytes(7)];
    async function* gen(): AsyncGenerator<Buffer> {
      for (const p of parts) yield p;
    }
    const res = await request(url(a, '/v1.0/invoke/solo/method/echo/chunked'), { method: 'PUT', body: Readable.from(gen()) });
    const back = Buffer.from(await res.body.arrayBuffer());
    expect(res.statusCode).toBe(200);
    expect(sha(back)).toBe(sha(Buffer.concat(parts)));
  });

  it('forwards a whole body that arrived in pieces (one write per part, with pauses) intact', async () => {
    // a body under the streaming limit, with a content-length, in 4 writes the node reads apart
    const parts = [randomBytes(10), randomBytes(20_000), randomBytes(1), randomBytes(9_000)];
    const total = parts.reduce((n, p) => n + p.length, 0);
    const socket = connect(a.ports.http, '127.0.0.1');
    await once(socket, 'connect');
    const chunks: Buffer[] = [];
    socket.on('data', (d: Buffer) => chunks.push(d));
    socket.write(`POST /v1.0/invoke/solo/method/echo/pieces HTTP/1.1\r\nhost: x\r\ncontent-type: application/octet-stream\r\ncontent-length: ${total}\r\nconnection: close\r\n\r\n`);
    for (const p of parts) {
      await new Promise((resolve) => setTimeout(resolve, 30));
      socket.write(p);
    }
    await once(socket, 'end');
    socket.destroy();
    const raw = Buffer.concat(chunks);
    const split = raw.indexOf('\r\n\r\n');
    expect(raw.subarray(0, 12).toString()).toBe('HTTP/1.1 200');
    const head = raw.subarray(0, split).toString().toLowerCase();
    let body = raw.subarray(split + 4);
    // the echo pipes the body back: chunked unless the node passed a length on
    if (head.includes('transfer-encoding: chunked')) {
      const out: Buffer[] = [];
      for (let at = 0; ;) {
        const eol = body.indexOf('\r\n', at);
        const size = parseInt(body.subarray(at, eol).toString(), 16);
        if (size === 0) break;
        out.push(body.subarray(eol + 2, eol + 2 + size));
        at = eol + 2 + size + 2;
      }
      body = Buffer.concat(out);
    }
    expect(sha(body)).toBe(sha(Buffer.concat(parts)));
  });

  it('refuses raw (unescaped) UTF-8 bytes in the request target with a 400 and its code, and goes on serving', async () => {
    const socket = connect(a.ports.http, '127.0.0.1');
    await once(socket, 'connect');
    const chunks: Buffer[] = [];
    socket.on('data', (d: Buffer) => chunks.push(d));
    // "café" as bytes on the wire, not percent-encoded by the client
    socket.write(Buffer.concat([Buffer.from('GET /v1.0/invoke/solo/method/'), Buffer.from('café', 'utf8'), Buffer.from(' HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n')]));
    await once(socket, 'end');
    socket.destroy();
    const raw = Buffer.concat(chunks).toString('latin1');
    expect(raw.startsWith('HTTP/1.1 400')).toBe(true);
    expect(JSON.parse(raw.slice(raw.indexOf('\r\n\r\n') + 4))).toMatchObject({ errorCode: 'ERR_MALFORMED_REQUEST' });
    // the same method escaped is served
    const res = await request(url(a, '/v1.0/invoke/solo/method/caf%C3%A9'));
    await res.body.text();
    expect(res.statusCode).toBe(200);
    expect(res.headers['x-echo-path']).toBe('/caf%C3%A9');
  });

  it('streams a 5 MiB answer to a small request', async () => {
    const n = 5 * 1024 * 1024;
    const res = await request(url(a, `/v1.0/invoke/solo/method/bytes/${n}`));
    expect(res.statusCode).toBe(200);
    expect(res.headers['content-length']).toBe(String(n));
    const back = Buffer.from(await res.body.arrayBuffer());
    expect(back.length).toBe(n);
    expect(back.every((x) => x === 7)).toBe(true);
  });

  it('a slow reader of a long answer adds no listeners per wait for the client (no MaxListenersExceededWarning)', async () => {
    const warnings: string[] = [];
    const onWarning = (w: Error): void => void warnings.push(`${w.name}: ${w.message}`);
    process.on('warning', onWarning);
    try {
      const n = 8 * 1024 * 1024;
      const res = await request(url(a, `/v1.0/invoke/solo/method/bytes/${n}`), { highWaterMark: 16 * 1024 });
      expect(res.statusCode).toBe(200);
      let got = 0;
      // Read slowly (bounded: at most ~600 pauses of 1 ms), so the node waits for drain many times.
      for await (const chunk of res.body) {
        got += (chunk as Buffer).length;
        if (got % (64 * 1024) < (chunk as Buffer).length) await new Promise((r) => setTimeout(r, 1));
      }
      expect(got).toBe(n);
      await new Promise((r) => setImmediate(r));
      expect(warnings.filter((w) => w.startsWith('MaxListenersExceededWarning'))).toEqual([]);
    } finally {
      process.off('warning', onWarning);
    }
  });

  it.each([201, 204, 302, 404, 418, 500, 503])('returns the app status %i unchanged', async (status) => {
    const res = await request(url(a, `/v1.0/invoke/solo/method/status/${status}`));
    const text = await res.body.text();
    expect(res.statusCode).toBe(status);
    if (status !== 204) expect(JSON.parse(text)).toEqual({ status, app: 'solo' });
  });

  it('balances round robin over the two instances of one app', async () => {
    const names: string[] = [];
    for (let i = 0; i < 10; i++) {
      const res = await request(url(a, '/v1.0/invoke/echo/method/echo/rr'), { method: 'POST', body: 'x' });
      await res.body.text();
      expect(res.statusCode).toBe(200);
      names.push(res.headers['x-echo-name'] as string);
    }
    expect(names.filter((n) => n === 'echo-1')).toHaveLength(5);
    expect(names.filter((n) => n === 'echo-2')).toHaveLength(5);
    for (let i = 1; i < names.length; i++) expect(names[i]).not.toBe(names[i - 1]);
  });

  it('takes the target from the dapr-app-id header, basic auth, and appId.namespace', async () => {
    const byHeader = await request(url(a, '/echo/hdr?q=1'), { method: 'POST', headers: { 'dapr-app-id': 'solo' }, body: 'h' });
    expect(byHeader.statusCode).toBe(200);
    expect(byHeader.headers['x-echo-path']).toBe('/echo/hdr');
    expect(byHeader.headers['x-echo-query']).toBe('q=1');
    const seen = JSON.parse(byHeader.headers['x-echo-headers'] as string) as Record<string, string>;
    expect(seen['dapr-app-id']).toBeUndefined();
    await byHeader.body.text();

    const basic = Buffer.from('dapr-app-id:solo').toString('base64');
    const byBasic = await request(url(a, '/echo/basic'), { headers: { authorization: `Basic ${basic}` } });
    expect(byBasic.statusCode).toBe(200);
    expect(byBasic.headers['x-echo-path']).toBe('/echo/basic');
    expect(JSON.parse(byBasic.headers['x-echo-headers'] as string)['authorization']).toBeUndefined();
    await byBasic.body.text();

    const byNs = await request(url(a, '/v1.0/invoke/solo.default/method/echo/ns'));
    expect(byNs.statusCode).toBe(200);
    expect(byNs.headers['x-echo-name']).toBe('solo');
    await byNs.body.text();
  });

  it('calls between any two of three nodes', async () => {
    for (const from of [a, b, c]) {
      const res = await request(url(from, '/v1.0/invoke/solo/method/echo/x'), { method: 'POST', body: 'three' });
      expect(res.statusCode).toBe(200);
      expect(await res.body.text()).toBe('three');
    }
  });

  it('answers many concurrent calls correctly', async () => {
    const results = await Promise.all(Array.from({ length: 200 }, async (_, i) => {
      const res = await request(url(a, `/v1.0/invoke/echo/method/echo/c${i}`), { method: 'POST', body: `body-${i}` });
      return { status: res.statusCode, body: await res.body.text(), path: res.headers['x-echo-path'] };
    }));
    results.forEach((r, i) => {
      expect(r).toEqual({ status: 200, body: `body-${i}`, path: `/echo/c${i}` });
    });
  });

  it('counts calls in its metrics, workers included', async () => {
    const res = await request(`http://127.0.0.1:${a.ports.metrics}/metrics`);
    const text = await res.body.text();
    expect(res.statusCode).toBe(200);
    expect(text).toMatch(/weft_service_invocation_req_sent_total\{[^}]*app_id="front",dst_app_id="solo"[^}]*\} \d+/);
    expect(text).toMatch(/weft_service_invocation_res_recv_total\{[^}]*dst_app_id="solo",status="200"[^}]*\} \d+/);
    const bRes = await request(`http://127.0.0.1:${b.ports.metrics}/metrics`);
    expect(await bRes.body.text()).toMatch(/weft_service_invocation_req_recv_total\{[^}]*app_id="solo",src_app_id="front"[^}]*\} \d+/);
  });
});
