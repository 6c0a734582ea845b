/**
 * Streamed calls end to end, with the worker pool and inline: every call ends (answered or
 * failed with a code) whatever the body, the app or the client do; a caller that goes away
 * cancels the onward call and the app's request on the far node; chunked bodies and
 * server-sent events pass chunk by chunk, each as it comes.
 *
 * Where a test needs "X happened before Y", the app and the client tell each other (promises
 * resolved by the other side), never a sleep.
 */
import { Agent, request as httpRequest, type IncomingMessage } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { request } from 'undici';
import type { WeftNode } from '../../src/node.ts';
import { Cluster, echoHandler, url, type Handler } from '../support/cluster.ts';
import { freePort } from '../support/ports.ts';

const DaprClient = (grpc.loadPackageDefinition(protoLoader.loadSync('dapr/proto/runtime/v1/dapr.proto', {
  includeDirs: [fileURLToPath(new URL('../../proto/', import.meta.url))], keepCase: true, longs: String, enums: Number, defaults: false,
})) as unknown as { dapr: { proto: { runtime: { v1: { Dapr: grpc.ServiceClientConstructor } } } } }).dapr.proto.runtime.v1.Dapr;

/** A promise with its resolver, for one side to tell the other that something happened. */
function signal<T = void>(): { promise: Promise<T>; resolve: (v: T) => void } {
  let resolve!: (v: T) => void;
  const promise = new Promise<T>((r) => (resolve = r));
  return { promise, resolve };
}

interface Answer {
  status: number;
  headers: IncomingMessage['headers'];
  body: string;
}

/**
 * Sends `total` bytes with a content-length, in 64 KiB pieces (honouring backpressure), and
 * resolves with the answer, which may come before the body is all sent (a refusal).
 */
function sendLarge(port: number, path: string, total: number, agent?: Agent, headers: Record<string, string> = {}): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: '127.0.0.1', port, path, method: 'POST', agent, headers: { 'content-length': String(total), ...headers } });
    req.on('response', (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
    });
    req.on('error', reject);
    const piece = Buffer.alloc(64 * 1024, 3);
    let left = total;
    const pump = (): void => {
      while (left > 0) {
        const part = piece.subarray(0, Math.min(left, piece.length));
        left -= part.length;
        if (!req.write(part)) return void req.once('drain', pump);
      }
      req.end();
    };
    pump();
  });
}

async function inflight(node: WeftNode): Promise<number> {
  const text = await (await request(`http://127.0.0.1:${node.ports.metrics}/metrics`)).body.text();
  const m = /^weft_service_invocation_inflight\{[^}]*\} (\d+)$/m.exec(text);
  if (m === null) throw new Error('no inflight gauge in /metrics');
  return Number(m[1]);
}

async function metricsText(node: WeftNode): Promise<string> {
  return (await request(`http://127.0.0.1:${node.ports.metrics}/metrics`)).body.text();
}

/**
 * Waits (bounded) until `node`'s metrics match `pattern`: for a fact the far node records just
 * after the event the test awaited. Not a timing assertion: the bound only keeps a broken
 * build from hanging.
 */
async function metricsEventually(node: WeftNode, pattern: RegExp): Promise<string> {
  let text = '';
  for (let i = 0; i < 100; i++) {
    text = await metricsText(node);
    if (pattern.test(text)) return text;
    await new Promise((r) => setTimeout(r, 50));
  }
  return text;
}

/**
 * Only the test's own calls reach `handler`: the node's own requests to its apps (the actor
 * runtime asks each for GET /dapr/config) are answered 404 here.
 */
function only(handler: Handler): Handler {
  return (req, res) => {
    if (req.url?.startsWith('/dapr/') === true) {
      req.resume();
      res.writeHead(404).end();
      return;
    }
    handler(req, res);
  };
}

/** Handlers whose progress the tests observe and drive. */
class Script {
  /** Resolved with the app's request when it arrives; its socket's close resolves `closed`. */
  arrived = signal<IncomingMessage>();
  closed = signal();
  /** The test lets the app write its next chunk. */
  private gates: Array<{ promise: Promise<void>; resolve: () => void }> = [];

  reset(): void {
    this.arrived = signal<IncomingMessage>();
    this.closed = signal();
    this.gates = [];
  }

  gate(i: number): { promise: Promise<void>; resolve: () => void } {
    while (this.gates.length <= i) this.gates.push(signal());
    return this.gates[i] as { promise: Promise<void>; resolve: () => void };
  }

  /** Takes the request (reading its body) and never answers: only the caller can end it. */
  readonly hold: Handler = (req) => {
    req.socket.once('close', () => this.closed.resolve());
    req.resume();
    this.arrived.resolve(req);
  };

  /** Server-sent events: the head at once, then event i+1 only once the test opened gate i. */
  readonly events: Handler = (req, res) => {
    req.socket.once('close', () => this.closed.resolve());
    this.arrived.resolve(req);
    req.resume();
    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
    res.flushHeaders();
    void (async () => {
      for (let i = 0; i < 3; i++) {
        res.write(`id: ${i}\ndata: event ${i}\n\n`);
        await this.gate(i).promise;
      }
      res.end();
    })();
  };

  /** Echoes each request chunk at once, as a chunk of its own. */
  readonly echoChunks: Handler = (req, res) => {
    res.writeHead(200, { 'content-type': 'application/octet-stream' });
    res.flushHeaders();
    req.on('data', (c: Buffer) => res.write(c));
    req.on('end', () => res.end());
  };
}

describe.each([
  { mode: 'inline', workers: 0 },
  { mode: 'workers', workers: 2 },
])('streamed calls ($mode)', ({ workers }) => {
  const cluster = new Cluster();
  const script = new Script();
  let a: WeftNode; // serves the caller-only app "front"
  let b: WeftNode; // serves the apps called

  beforeAll(async () => {
    const echo = await cluster.app(echoHandler('echo'));
    const hold = await cluster.app(only(script.hold));
    const events = await cluster.app(only(script.events));
    const chunks = await cluster.app(only(script.echoChunks));
    const gone = await freePort();
    // Long deadlines: what ends these calls must be the caller going away, not the deadline.
    const extra = { timeouts: { invoke: '120s', shutdown: '60s' } };
    a = await cluster.node({ workers, apps: [{ appId: 'front' }], extra });
    b = await cluster.node({
      workers,
      extra,
      apps: [
        { appId: 'echo', appPort: echo.port },
        { appId: 'hold', appPort: hold.port },
        { appId: 'events', appPort: events.port },
        { appId: 'chunks', appPort: chunks.port },
        { appId: 'noapp', appPort: gone },
        { appId: 'guarded', appPort: echo.port, accessControl: { defaultAction: 'deny', trustDomain: 'public', policies: [] } } as never,
      ],
    });
  });
  afterAll(() => cluster.close());

  it('a streamed body to an app that refuses connections gets 500 WEFT_APP_REFUSED', async () => {
    const res = await sendLarge(a.ports.http, '/v1.0/invoke/noapp/method/x', 2 * 1024 * 1024);
    expect(res.status).toBe(500);
    expect(JSON.parse(res.body)).toMatchObject({ errorCode: 'ERR_DIRECT_INVOKE', weftCode: 'WEFT_APP_REFUSED' });
    expect(await inflight(a)).toBe(0);
  });

  it('a streamed body the access policy denies gets 403 WEFT_ACCESS_DENIED; the connection takes the next request', async () => {
    const agent = new Agent({ keepAlive: true, maxSockets: 1 });
    const res = await sendLarge(a.ports.http, '/v1.0/invoke/guarded/method/x', 2 * 1024 * 1024, agent);
    expect(res.status).toBe(403);
    expect(JSON.parse(res.body)).toMatchObject({ errorCode: 'ERR_DIRECT_INVOKE', weftCode: 'WEFT_ACCESS_DENIED' });
    expect(await inflight(a)).toBe(0);
    // the refused body was read and dropped: the same connection carries the next call
    const next = await sendLarge(a.ports.http, '/v1.0/invoke/echo/method/echo/next', 1000, agent);
    expect(next.status).toBe(200);
    expect(next.body).toHaveLength(1000);
    agent.destroy();
  });

  it('a client that goes away mid-body cancels the app\'s request on the far node; in-flight returns to 0', async () => {
    script.reset();
    const req = httpRequest({ host: '127.0.0.1', port: a.ports.http, path: '/v1.0/invoke/hold/method/upload', method: 'POST', headers: { 'content-length': String(4 * 1024 * 1024) } });
    req.on('error', () => {});
    req.write(Buffer.alloc(512 * 1024, 1));
    await script.arrived.promise;
    expect(await inflight(a)).toBe(1);
    req.destroy();
    await script.closed.promise;
    expect(await inflight(a)).toBe(0);
    // counted as cancelled on both nodes, not as a failure
    const text = await metricsText(a);
    expect(text).toMatch(/weft_service_invocation_cancelled_total\{[^}]*app_id="front",dst_app_id="hold"[^}]*\} 1\n/);
    expect(text).not.toMatch(/weft_service_invocation_res_recv_total\{[^}]*dst_app_id="hold"/);
    const recvCancelled = /weft_service_invocation_recv_cancelled_total\{[^}]*app_id="hold",src_app_id="front"[^}]*\} 1\n/;
    expect(await metricsEventually(b, recvCancelled)).toMatch(recvCancelled);
  });

  it('a streamed body to an app that never answers ends at the deadline: 504, and the app\'s request is closed', async () => {
    script.reset();
    const res = await sendLarge(a.ports.http, '/v1.0/invoke/hold/method/slow', 2 * 1024 * 1024, undefined, { 'weft-timeout': '500ms' });
    expect(res.status).toBe(504);
    expect(JSON.parse(res.body)).toMatchObject({ errorCode: 'ERR_DIRECT_INVOKE', weftCode: 'WEFT_DEADLINE_EXCEEDED' });
    await script.closed.promise;
    expect(await inflight(a)).toBe(0);
  });

  it('a client that goes away while a small call runs cancels the app\'s request', async () => {
    script.reset();
    const req = httpRequest({ host: '127.0.0.1', port: a.ports.http, path: '/v1.0/invoke/hold/method/wait', method: 'GET' });
    req.on('error', () => {});
    req.end();
    await script.arrived.promise;
    req.destroy();
    await script.closed.promise;
    expect(await inflight(a)).toBe(0);
  });

  it('a gRPC caller that cancels InvokeService cancels the app\'s request on the far node', async () => {
    script.reset();
    const client = new DaprClient(`127.0.0.1:${a.ports.grpc}`, grpc.credentials.createInsecure());
    try {
      const ended = signal<grpc.ServiceError | null>();
      const stub = client as unknown as { InvokeService: (req: unknown, md: grpc.Metadata, opts: grpc.CallOptions, cb: (err: grpc.ServiceError | null) => void) => grpc.ClientUnaryCall };
      const call = stub.InvokeService({ id: 'hold', message: { method: 'wait', http_extension: { verb: 1 } } }, new grpc.Metadata(), {}, (err) => ended.resolve(err));
      await script.arrived.promise;
      call.cancel();
      await script.closed.promise;
      expect((await ended.promise)?.code).toBe(grpc.status.CANCELLED);
      expect(await inflight(a)).toBe(0);
      const counted = /^weft_service_invocation_cancelled_total\{[^}]*dst_app_id="hold"[^}]*\} [1-9]/m;
      expect(await metricsEventually(a, counted)).toMatch(counted);
    } finally {
      client.close();
    }
  });

  it('server-sent events arrive one by one, each before the app writes the next', async () => {
    script.reset();
    const res = await request(url(a, '/v1.0/invoke/events/method/stream'));
    expect(res.statusCode).toBe(200);
    expect(res.headers['content-type']).toBe('text/event-stream');
    const it = res.body[Symbol.asyncIterator]() as AsyncIterator<Buffer>;
    for (let i = 0; i < 3; i++) {
      let text = '';
      while (!text.endsWith('\n\n')) {
        const { value, done } = await it.next();
        expect(done).toBe(false);
        text += (value as Buffer).toString();
      }
      expect(text).toBe(`id: ${i}\ndata: event ${i}\n\n`);
      script.gate(i).resolve();
    }
    expect((await it.next()).done).toBe(true);
  });

  it('a client that goes away mid-answer closes the app\'s event stream', async () => {
    script.reset();
    const res = await request(url(a, '/v1.0/invoke/events/method/stream'));
    expect(res.statusCode).toBe(200);
    const it = res.body[Symbol.asyncIterator]() as AsyncIterator<Buffer>;
    expect(((await it.next()).value as Buffer).toString()).toBe('id: 0\ndata: event 0\n\n');
    expect(await inflight(a)).toBe(1);
    // The app waits for gate 0 before its next event: only the caller going away can end this.
    res.body.destroy();
    await script.closed.promise;
    expect(await inflight(a)).toBe(0);
    expect(await metricsText(a)).toMatch(/weft_service_invocation_cancelled_total\{[^}]*app_id="front",dst_app_id="events"[^}]*\} 1\n/);
  });

  it('a chunked request and its chunked answer pass chunk by chunk, both ways', async () => {
    const req = httpRequest({ host: '127.0.0.1', port: a.ports.http, path: '/v1.0/invoke/chunks/method/pipe', method: 'POST', headers: { 'transfer-encoding': 'chunked' } });
    const response = signal<IncomingMessage>();
    req.on('response', (r) => response.resolve(r));
    req.write('first chunk;');
    const res = await response.promise;
    expect(res.statusCode).toBe(200);
    const it = res[Symbol.asyncIterator]() as AsyncIterator<Buffer>;
    const sent = ['first chunk;', 'second;', 'third and last'];
    for (let i = 0; i < sent.length; i++) {
      let text = '';
      while (text.length < (sent[i] as string).length) {
        const { value, done } = await it.next();
        expect(done).toBe(false);
        text += (value as Buffer).toString();
      }
      expect(text).toBe(sent[i]);
      if (i + 1 < sent.length) req.write(sent[i + 1]);
      else req.end();
    }
    expect((await it.next()).done).toBe(true);
  });

  it('stops promptly: nothing was left running for the grace (60 s) to cut off', async () => {
    expect(await inflight(a)).toBe(0);
    expect(await a.stop()).toEqual({ forced: [] });
    expect(await b.stop()).toEqual({ forced: [] });
  });
});
