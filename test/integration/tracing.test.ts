/**
 * Traces across real nodes (mTLS, the local registry or a static one), exported over OTLP/HTTP
 * to a receiver in this process that decodes the protobuf: one trace per call with the expected
 * parents across two nodes and the app, for an invocation (inline and with the worker pool), a
 * retried invocation, the gRPC API and an actor call; an unsampled parent exports nothing; the
 * caller's traceparent is the parent; the answer carries traceparent; a collector that is down
 * costs dropped spans (counted), never a call.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { request } from 'undici';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { fileURLToPath } from 'node:url';
import { Readable } from 'node:stream';
import { connect as netConnect, type Socket } from 'node:net';
import type { WeftNode } from '../../src/node.ts';
import { Cluster, echoHandler, url, type Handler, type TestApp } from '../support/cluster.ts';
import { WHOLE_BODY_LIMIT } from '../../workers/port-stream.ts';
import { freePort } from '../support/ports.ts';
import { OtlpKind, OtlpReceiver, type ReceivedSpan } from '../support/otlp-receiver.ts';
import { StreamsClient, startStreamsApp, type StreamsApp } from '../support/streams-app.ts';
import { startActorApp, Tracker, type ActorApp } from '../support/actor-app.ts';
import { pino } from 'pino';
import type { Logger } from '../../src/observability/log.ts';

const CALLER_TRACE = '4bf92f3577b34da6a3ce929d0e0e4736';
const CALLER_SPAN = '00f067aa0ba902b7';

function tracing(rx: OtlpReceiver, rate = '1', protocol = 'http'): Record<string, unknown> {
  return { tracing: { samplingRate: rate, otel: { endpointAddress: rx.address, protocol, isSecure: false }, exportInterval: 50 } };
}

function traceId(i: number): string {
  return `${CALLER_TRACE.slice(0, 24)}${i.toString(16).padStart(8, '0')}`;
}

/** A request body sent chunked (no content-length), a part at a time. */
function chunks(parts: readonly string[]): Readable {
  return Readable.from((async function* () {
    for (const p of parts) {
      yield Buffer.from(p);
      await new Promise((r) => setImmediate(r));
    }
  })());
}

/** An app answering an event stream: the head at once, then three events a few ms apart. */
const eventStream: Handler = (req, res) => {
  req.resume();
  res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
  res.flushHeaders();
  let i = 0;
  const next = (): void => {
    if (i === 3) return void res.end();
    res.write(`data: ${i++}\n\n`);
    setTimeout(next, 10);
  };
  next();
};

function one(spans: readonly ReceivedSpan[], pred: (s: ReceivedSpan) => boolean, what: string): ReceivedSpan {
  const found = spans.filter(pred);
  if (found.length !== 1) throw new Error(`expected one ${what}, found ${found.length}: ${JSON.stringify(spans.map((s) => [s.name, s.kind, s.resource['weft.node.id']]))}`);
  return found[0] as ReceivedSpan;
}

async function metric(node: WeftNode, pattern: RegExp): Promise<number> {
  const text = await (await request(`http://127.0.0.1:${node.ports.metrics}/metrics`)).body.text();
  let sum = 0;
  for (const line of text.split('\n')) if (pattern.test(line)) sum += Number(line.slice(line.lastIndexOf(' ') + 1));
  return sum;
}

/**
 * Checks the invocation chain A(ingress) → A(attempt) → B(peer server) → B(app call) in one
 * trace and returns its spans by role.
 */
function invocationChain(spans: readonly ReceivedSpan[], a: WeftNode, b: WeftNode, parentOfIngress: string) {
  const onA = spans.filter((s) => s.resource['weft.node.id'] === a.nodeId);
  const onB = spans.filter((s) => s.resource['weft.node.id'] === b.nodeId);
  const ingress = one(onA, (s) => s.kind === OtlpKind.SERVER, 'ingress span on A');
  const attempt = one(onA, (s) => s.kind === OtlpKind.CLIENT, 'attempt span on A');
  const server = one(onB, (s) => s.kind === OtlpKind.SERVER, 'peer server span on B');
  const app = one(onB, (s) => s.kind === OtlpKind.CLIENT, 'app call span on B');
  expect(ingress.parentSpanId).toBe(parentOfIngress);
  expect(attempt.parentSpanId).toBe(ingress.spanId);
  expect(server.parentSpanId).toBe(attempt.spanId);
  expect(app.parentSpanId).toBe(server.spanId);
  return { ingress, attempt, server, app };
}

describe.each([
  { mode: 'inline', workers: 0 },
  { mode: 'workers', workers: 1 },
])('a traced invocation across two nodes ($mode)', ({ workers }) => {
  const cluster = new Cluster();
  let rx: OtlpReceiver;
  let a: WeftNode;
  let b: WeftNode;
  let echo: TestApp;
  let events: TestApp;
  let n = 0;

  beforeAll(async () => {
    rx = await OtlpReceiver.start();
    echo = await cluster.app(echoHandler('echo'));
    events = await cluster.app(eventStream);
    b = await cluster.node({ apps: [{ appId: 'echo', appPort: echo.port }, { appId: 'events', appPort: events.port }], extra: tracing(rx) });
    a = await cluster.node({ workers, apps: [{ appId: 'front' }], extra: tracing(rx) });
  });
  afterAll(async () => {
    await cluster.close();
    await rx.close();
  });

  it('the caller\'s traceparent is the parent; one trace spans A, B and the app; the answer carries traceparent', async () => {
    const tid = traceId(++n + workers * 100);
    const res = await request(url(a, '/v1.0/invoke/echo/method/orders/new?x=1'), {
      method: 'POST', body: 'hi', headers: { traceparent: `00-${tid}-${CALLER_SPAN}-01`, tracestate: 'vendor=v1' },
    });
    const seen = JSON.parse(res.headers['x-echo-headers'] as string) as Record<string, string>;
    expect(await res.body.text()).toBe('hi');
    expect(res.statusCode).toBe(200);

    const spans = await rx.waitFor(tid, 4);
    expect(spans).toHaveLength(4);
    const { ingress, attempt, server, app } = invocationChain(spans, a, b, CALLER_SPAN);
    // the answer names A's ingress span, as Dapr's does
    expect(res.headers['traceparent']).toBe(`00-${tid}-${ingress.spanId}-01`);
    // the app's parent is B's app call span; tracestate travels with it
    expect(seen['traceparent']).toBe(`00-${tid}-${app.spanId}-01`);
    expect(seen['tracestate']).toBe('vendor=v1');

    expect(ingress.name).toBe('POST /v1.0/invoke/{appId}/method/{method}');
    expect(ingress.attributes).toMatchObject({ 'http.request.method': 'POST', 'http.response.status_code': 200, 'url.path': '/v1.0/invoke/echo/method/orders/new', 'weft.app_id': 'echo', 'weft.method': 'orders/new', 'weft.caller.app_id': 'front' });
    expect(attempt.name).toBe('weft.peer.v1.Peer/Mux');
    expect(attempt.attributes).toMatchObject({ 'rpc.system': 'grpc', 'rpc.service': 'weft.peer.v1.Peer', 'rpc.method': 'Mux', 'server.port': b.ports.peer, 'weft.peer.node_id': b.nodeId, 'weft.attempt': 1 });
    expect(server.attributes).toMatchObject({ 'rpc.system': 'grpc', 'rpc.method': 'Mux', 'weft.app_id': 'echo', 'weft.caller.app_id': 'front', 'http.response.status_code': 200 });
    expect(app.attributes).toMatchObject({ 'http.request.method': 'POST', 'http.response.status_code': 200, 'server.address': '127.0.0.1' });
    expect(app.attributes['url.full']).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/orders\/new$/);
    // times nest: the attempt within the ingress span, the app call within the peer server's
    expect(attempt.startNs >= ingress.startNs && attempt.endNs <= ingress.endNs).toBe(true);
    expect(app.startNs >= server.startNs && app.endNs <= server.endNs).toBe(true);
    // the resource says which node and host, and the service (the node's first app)
    expect(ingress.resource).toMatchObject({ 'service.name': 'front', 'service.instance.id': a.nodeId, 'weft.node.id': a.nodeId });
    expect(typeof ingress.resource['host.name']).toBe('string');
    expect(server.resource['service.name']).toBe('echo');
  });

  it('without a caller traceparent the ingress span is a root, and the trace still crosses both nodes', async () => {
    const res = await request(url(a, '/v1.0/invoke/echo/method/plain'), { method: 'GET' });
    await res.body.text();
    const tp = res.headers['traceparent'] as string;
    expect(tp).toMatch(/^00-[0-9a-f]{32}-[0-9a-f]{16}-01$/);
    const spans = await rx.waitFor(tp.slice(3, 35), 4);
    invocationChain(spans, a, b, '');
  });

  it('a request body that streams (chunked, or over the whole-body limit) has its spans on the target node too, and the app gets their traceparent', async () => {
    const big = Buffer.alloc(WHOLE_BODY_LIMIT + 1000, 'b');
    const bodies = [
      { what: 'chunked', make: () => chunks(['one,', 'two,', 'three']), expected: 'one,two,three' },
      { what: 'over the limit', make: () => big, expected: big.toString() },
    ];
    for (const { what, make, expected } of bodies) {
      const tid = traceId(++n + workers * 100);
      const res = await request(url(a, '/v1.0/invoke/echo/method/upload'), {
        method: 'POST', body: make(), headers: { traceparent: `00-${tid}-${CALLER_SPAN}-01`, tracestate: 'vendor=s' },
      });
      const seen = JSON.parse(res.headers['x-echo-headers'] as string) as Record<string, string>;
      expect(await res.body.text(), what).toBe(expected);
      const spans = await rx.waitFor(tid, 4);
      expect(spans, what).toHaveLength(4);
      const { ingress, attempt, server, app } = invocationChain(spans, a, b, CALLER_SPAN);
      expect(res.headers['traceparent']).toBe(`00-${tid}-${ingress.spanId}-01`);
      expect(seen['traceparent'], what).toBe(`00-${tid}-${app.spanId}-01`);
      expect(seen['tracestate']).toBe('vendor=s');
      expect(attempt.name).toBe('weft.peer.v1.Peer/InvokeStream');
      expect(server.name).toBe('weft.peer.v1.Peer/InvokeStream');
      expect(server.attributes).toMatchObject({ 'rpc.method': 'InvokeStream', 'weft.app_id': 'echo', 'weft.caller.app_id': 'front', 'http.response.status_code': 200 });
      expect(app.attributes).toMatchObject({ 'http.request.method': 'POST', 'http.response.status_code': 200 });
      expect(app.attributes['url.full']).toMatch(/\/upload$/);
      expect(app.startNs >= server.startNs && app.endNs <= server.endNs).toBe(true);
    }
  });

  it('a streamed answer (an event stream), to a whole or a streamed request, is one trace across both nodes', async () => {
    for (const body of [undefined, chunks(['a', 'b'])]) {
      const tid = traceId(++n + workers * 100);
      const res = await request(url(a, '/v1.0/invoke/events/method/feed'), {
        method: 'POST', body, headers: { traceparent: `00-${tid}-${CALLER_SPAN}-01` },
      });
      expect(res.headers['content-type']).toBe('text/event-stream');
      expect(await res.body.text()).toBe('data: 0\n\ndata: 1\n\ndata: 2\n\n');
      const spans = await rx.waitFor(tid, 4);
      expect(spans).toHaveLength(4);
      const { ingress, app } = invocationChain(spans, a, b, CALLER_SPAN);
      expect(res.headers['traceparent']).toBe(`00-${tid}-${ingress.spanId}-01`);
      const seen = events.seen.at(-1);
      expect(seen?.headers['traceparent']).toBe(`00-${tid}-${app.spanId}-01`);
      expect(app.attributes['http.response.status_code']).toBe(200);
    }
  });

  it('an unsampled parent is honoured: nothing is exported, the decision and trace id travel on', async () => {
    const tid = traceId(++n + workers * 100 + 50);
    const res = await request(url(a, '/v1.0/invoke/echo/method/quiet'), { method: 'GET', headers: { traceparent: `00-${tid}-${CALLER_SPAN}-00` } });
    const seen = JSON.parse(res.headers['x-echo-headers'] as string) as Record<string, string>;
    await res.body.text();
    expect(seen['traceparent']).toMatch(new RegExp(`^00-${tid}-[0-9a-f]{16}-00$`));
    expect(res.headers['traceparent']).toMatch(new RegExp(`^00-${tid}-[0-9a-f]{16}-00$`));
    // a sampled call made after it is exported, so the unsampled one had its chance to appear
    const after = await request(url(a, '/v1.0/invoke/echo/method/loud'), { method: 'GET' });
    await after.body.text();
    await rx.waitFor((after.headers['traceparent'] as string).slice(3, 35), 4);
    await new Promise((r) => setTimeout(r, 300));
    expect(rx.trace(tid)).toEqual([]);
  });
});

describe('export over OTLP/gRPC', () => {
  const cluster = new Cluster();
  let rx: OtlpReceiver;
  afterAll(async () => {
    await cluster.close();
    await rx.close();
  });

  it('both nodes export the call\'s spans to a gRPC collector', async () => {
    rx = await OtlpReceiver.startGrpc();
    const echo = await cluster.app(echoHandler('echo'));
    const b = await cluster.node({ apps: [{ appId: 'echo', appPort: echo.port }], extra: tracing(rx, '1', 'grpc') });
    const a = await cluster.node({ apps: [{ appId: 'front' }], extra: tracing(rx, '1', 'grpc') });
    const tid = traceId(6060);
    const res = await request(url(a, '/v1.0/invoke/echo/method/g'), { method: 'POST', body: 'x', headers: { traceparent: `00-${tid}-${CALLER_SPAN}-01` } });
    expect(await res.body.text()).toBe('x');
    const spans = await rx.waitFor(tid, 4);
    expect(spans).toHaveLength(4);
    const { ingress } = invocationChain(spans, a, b, CALLER_SPAN);
    expect(ingress.resource['weft.node.id']).toBe(a.nodeId);
  });
});

describe('a retried invocation', () => {
  const cluster = new Cluster();
  let rx: OtlpReceiver;
  afterAll(async () => {
    await cluster.close();
    await rx.close();
  });

  it('shows each attempt as a client span, the failed one with its retry decision', async () => {
    rx = await OtlpReceiver.start();
    const echo = await cluster.app(echoHandler('echo'));
    const b = await cluster.node({ apps: [{ appId: 'echo', appPort: echo.port }], extra: tracing(rx) });
    const dead = await freePort();
    // Round robin starts at the first instance listed: the dead one, then B.
    const a = await cluster.node({
      apps: [{ appId: 'front' }], extra: tracing(rx),
      resolver: { type: 'static', static: { instances: [
        { appId: 'echo', address: '127.0.0.1', port: dead, nodeId: 'dead-node' },
        { appId: 'echo', address: '127.0.0.1', port: b.ports.peer, nodeId: b.nodeId },
      ] } },
    });
    const tid = traceId(7777);
    const res = await request(url(a, '/v1.0/invoke/echo/method/again'), { method: 'POST', body: 'x', headers: { traceparent: `00-${tid}-${CALLER_SPAN}-01` } });
    await res.body.text();
    expect(res.statusCode).toBe(200);

    const spans = await rx.waitFor(tid, 5);
    expect(spans).toHaveLength(5);
    const onA = spans.filter((s) => s.resource['weft.node.id'] === a.nodeId);
    const ingress = one(onA, (s) => s.kind === OtlpKind.SERVER, 'ingress');
    const first = one(onA, (s) => s.kind === OtlpKind.CLIENT && s.attributes['weft.attempt'] === 1, 'first attempt');
    const second = one(onA, (s) => s.kind === OtlpKind.CLIENT && s.attributes['weft.attempt'] === 2, 'second attempt');
    expect(first.parentSpanId).toBe(ingress.spanId);
    expect(second.parentSpanId).toBe(ingress.spanId);
    expect(first.attributes).toMatchObject({ 'server.port': dead, 'weft.peer.node_id': 'dead-node', 'error.type': 'WEFT_PEER_UNAVAILABLE' });
    expect(first.status.code).toBe(2);
    const retry = first.events.find((e) => e.name === 'weft.retry');
    expect(retry?.attributes).toMatchObject({ 'weft.attempt': 1, 'weft.retry.reason': 'WEFT_PEER_UNAVAILABLE', 'weft.retry.never_reached_app': true });
    expect(typeof retry?.attributes['weft.retry.delay_ms']).toBe('number');
    expect(second.attributes).toMatchObject({ 'weft.peer.node_id': b.nodeId, 'http.response.status_code': 200 });
    expect(second.events).toEqual([]);
    expect(second.startNs >= first.endNs).toBe(true);
    const server = one(spans, (s) => s.resource['weft.node.id'] === b.nodeId && s.kind === OtlpKind.SERVER, 'peer server on B');
    expect(server.parentSpanId).toBe(second.spanId);
  });
});

describe('the gRPC API', () => {
  const cluster = new Cluster();
  let rx: OtlpReceiver;
  afterAll(async () => {
    await cluster.close();
    await rx.close();
  });

  it('InvokeService: the metadata traceparent is the parent, and the answer metadata carries traceparent', async () => {
    rx = await OtlpReceiver.start();
    const echo = await cluster.app(echoHandler('echo'));
    const b = await cluster.node({ apps: [{ appId: 'echo', appPort: echo.port }], extra: tracing(rx) });
    const a = await cluster.node({ apps: [{ appId: 'front' }], extra: tracing(rx) });
    const pkg = protoLoader.loadSync('dapr/proto/runtime/v1/dapr.proto', { includeDirs: [fileURLToPath(new URL('../../proto/', import.meta.url))], keepCase: true, longs: Number, enums: Number, defaults: false });
    const Dapr = grpc.loadPackageDefinition(pkg)['dapr'] as unknown as { proto: { runtime: { v1: { Dapr: grpc.ServiceClientConstructor } } } };
    const client = new Dapr.proto.runtime.v1.Dapr(`127.0.0.1:${a.ports.grpc}`, grpc.credentials.createInsecure());
    const tid = traceId(4242);
    const md = new grpc.Metadata();
    md.set('traceparent', `00-${tid}-${CALLER_SPAN}-01`);
    let answerTp: unknown;
    await new Promise<void>((resolve, reject) => {
      const call = client['InvokeService'] as (req: unknown, md: grpc.Metadata, cb: (err: grpc.ServiceError | null) => void) => grpc.ClientUnaryCall;
      const c = call.call(client, { id: 'echo', message: { method: 'rpc/echo', data: { value: Buffer.from('g') }, http_extension: { verb: 3 } } }, md, (err) => (err === null ? resolve() : reject(err)));
      c.on('metadata', (m: grpc.Metadata) => (answerTp = m.get('traceparent')[0]));
    });
    client.close();
    const spans = await rx.waitFor(tid, 4);
    const { ingress } = invocationChain(spans, a, b, CALLER_SPAN);
    expect(ingress.name).toBe('dapr.proto.runtime.v1.Dapr/InvokeService');
    expect(ingress.attributes).toMatchObject({ 'rpc.system': 'grpc', 'rpc.method': 'InvokeService', 'weft.app_id': 'echo', 'weft.method': 'rpc/echo' });
    expect(answerTp).toBe(`00-${tid}-${ingress.spanId}-01`);
  });
});

describe('gRPC proxy mode', () => {
  const cluster = new Cluster();
  let rx: OtlpReceiver;
  let app: StreamsApp;
  let a: WeftNode;
  let b: WeftNode;
  let client: grpc.Client & Record<string, (...args: unknown[]) => grpc.Call>;

  beforeAll(async () => {
    rx = await OtlpReceiver.start();
    app = await startStreamsApp();
    b = await cluster.node({ apps: [{ appId: 'streams', appPort: app.port, appProtocol: 'grpc' }], extra: tracing(rx) });
    a = await cluster.node({ apps: [{ appId: 'front' }], extra: tracing(rx) });
    client = new StreamsClient(`127.0.0.1:${a.ports.grpc}`, grpc.credentials.createInsecure()) as typeof client;
  });
  afterAll(async () => {
    client?.close();
    await cluster.close();
    await app?.close();
    await rx.close();
  });

  function proxied(name: string, req: Buffer, tid: string): Promise<{ err: grpc.ServiceError | null; headers: grpc.Metadata | null }> {
    const md = new grpc.Metadata();
    md.set('dapr-app-id', 'streams');
    md.set('traceparent', `00-${tid}-${CALLER_SPAN}-01`);
    md.set('tracestate', 'vendor=g');
    return new Promise((resolve) => {
      let headers: grpc.Metadata | null = null;
      const call = (client[name] as (r: Buffer, m: grpc.Metadata, cb: (e: grpc.ServiceError | null) => void) => grpc.ClientUnaryCall)
        .call(client, req, md, (err) => resolve({ err, headers }));
      call.on('metadata', (m: grpc.Metadata) => (headers = m));
    });
  }

  it('a proxied call is one trace: A\'s server and hop spans, B\'s server and app call spans; the app gets traceparent, the answer names A\'s span', async () => {
    const tid = traceId(5150);
    const { err, headers } = await proxied('Unary', Buffer.from('abc'), tid);
    expect(err).toBeNull();
    const spans = await rx.waitFor(tid, 4);
    expect(spans).toHaveLength(4);
    const { ingress, attempt, server, app: appCall } = invocationChain(spans, a, b, CALLER_SPAN);
    expect(ingress.name).toBe('weft.test.Streams/Unary');
    expect(ingress.attributes).toMatchObject({ 'rpc.system': 'grpc', 'rpc.service': 'weft.test.Streams', 'rpc.method': 'Unary', 'rpc.grpc.status_code': 0, 'weft.app_id': 'streams', 'weft.caller.app_id': 'front' });
    expect(attempt.name).toBe('weft.peer.v1.Peer/Proxy');
    expect(attempt.attributes).toMatchObject({ 'rpc.method': 'Proxy', 'server.port': b.ports.peer, 'weft.peer.node_id': b.nodeId, 'rpc.grpc.status_code': 0 });
    expect(server.name).toBe('weft.peer.v1.Peer/Proxy');
    expect(server.attributes).toMatchObject({ 'rpc.method': 'Proxy', 'weft.app_id': 'streams', 'weft.caller.app_id': 'front' });
    expect(appCall.name).toBe('weft.test.Streams/Unary');
    expect(appCall.attributes).toMatchObject({ 'rpc.service': 'weft.test.Streams', 'rpc.method': 'Unary', 'server.port': app.port, 'rpc.grpc.status_code': 0 });
    const seen = app.seen.at(-1);
    expect(seen?.metadata.get('traceparent')).toEqual([`00-${tid}-${appCall.spanId}-01`]);
    expect(seen?.metadata.get('tracestate')).toEqual(['vendor=g']);
    expect(headers?.get('traceparent')).toEqual([`00-${tid}-${ingress.spanId}-01`]);
  });

  it('a failing proxied call: the client spans fail with the gRPC status, the server spans carry it', async () => {
    const tid = traceId(5151);
    const { err } = await proxied('Fail', Buffer.from('x'), tid);
    expect(err?.code).toBe(grpc.status.INVALID_ARGUMENT);
    const spans = await rx.waitFor(tid, 4);
    const { ingress, attempt, server, app: appCall } = invocationChain(spans, a, b, CALLER_SPAN);
    for (const s of [ingress, attempt, server, appCall]) expect(s.attributes['rpc.grpc.status_code']).toBe(grpc.status.INVALID_ARGUMENT);
    // the RPC conventions: INVALID_ARGUMENT is the client's fault, not the server's
    for (const s of [attempt, appCall]) expect([s.status.code, s.attributes['error.type']]).toEqual([2, 'INVALID_ARGUMENT']);
    for (const s of [ingress, server]) expect(s.status.code).toBe(0);
    expect(app.seen.at(-1)?.metadata.get('traceparent')).toEqual([`00-${tid}-${appCall.spanId}-01`]);
  });
});

describe('an actor call', () => {
  const cluster = new Cluster();
  const tracker = new Tracker();
  const apps: ActorApp[] = [];
  let rx: OtlpReceiver;
  afterAll(async () => {
    await cluster.close();
    await Promise.all(apps.map((x) => x.close()));
    await rx.close();
  });

  it('routing on the caller\'s node, the attempt, the peer server, the turn and the app call, in one trace', async () => {
    rx = await OtlpReceiver.start();
    const nodes: WeftNode[] = [];
    for (const name of ['a', 'b']) {
      const app = await startActorApp(name, tracker);
      apps.push(app);
      const node = await cluster.node({ apps: [{ appId: 'bank', appPort: app.port }], extra: { ...tracing(rx), actors: { callTimeout: '5s', fenceTimeout: '2s', lockDelay: '8s', leaveLinger: '100ms' } } });
      app.nodePort = node.ports.http;
      nodes.push(node);
    }
    const [a, b] = nodes as [WeftNode, WeftNode];
    // an id that node B's app serves, called through node A
    let id: string | undefined;
    const end = Date.now() + 20_000;
    for (let i = 0; id === undefined && Date.now() < end; i++) {
      const candidate = `t-${i}`;
      const r = await request(url(a, `/v1.0/actors/Counter/${candidate}/method/echo`), { method: 'PUT', body: '{}' });
      await r.body.text();
      if (r.statusCode === 200 && tracker.servedBy.get(candidate)?.has('b') === true) id = candidate;
      else if (i % 20 === 19) await new Promise((res) => setTimeout(res, 200));
    }
    expect(id).toBeDefined();

    const tid = traceId(9001);
    const res = await request(url(a, `/v1.0/actors/Counter/${id as string}/method/echo`), { method: 'PUT', body: '{"n":1}', headers: { traceparent: `00-${tid}-${CALLER_SPAN}-01` } });
    await res.body.text();
    expect(res.statusCode).toBe(200);
    const spans = await rx.waitFor(tid, 6);
    expect(spans).toHaveLength(6);
    const onA = spans.filter((s) => s.resource['weft.node.id'] === a.nodeId);
    const onB = spans.filter((s) => s.resource['weft.node.id'] === b.nodeId);
    const ingress = one(onA, (s) => s.kind === OtlpKind.SERVER, 'actor ingress');
    const route = one(onA, (s) => s.kind === OtlpKind.INTERNAL, 'actor routing');
    const attempt = one(onA, (s) => s.kind === OtlpKind.CLIENT, 'attempt');
    const server = one(onB, (s) => s.kind === OtlpKind.SERVER, 'peer server');
    const turn = one(onB, (s) => s.kind === OtlpKind.INTERNAL, 'turn');
    const app = one(onB, (s) => s.kind === OtlpKind.CLIENT, 'app call');
    expect(ingress.parentSpanId).toBe(CALLER_SPAN);
    expect(route.parentSpanId).toBe(ingress.spanId);
    expect(attempt.parentSpanId).toBe(route.spanId);
    expect(server.parentSpanId).toBe(attempt.spanId);
    expect(turn.parentSpanId).toBe(server.spanId);
    expect(app.parentSpanId).toBe(turn.spanId);
    expect(ingress.name).toBe('PUT /v1.0/actors/{type}/{id}/method/{method}');
    expect(route.attributes).toMatchObject({ 'weft.actor.type': 'Counter', 'weft.actor.id': id, 'weft.method': 'echo', 'http.response.status_code': 200 });
    expect(turn.attributes).toMatchObject({ 'weft.actor.type': 'Counter', 'weft.actor.id': id, 'weft.app_id': 'bank' });
    expect(attempt.attributes).toMatchObject({ 'weft.actor.type': 'Counter', 'weft.actor.id': id });
    expect(app.attributes['url.full']).toMatch(new RegExp(`/actors/Counter/${id as string}/method/echo$`));
  });
});

describe('logs about a call', () => {
  const cluster = new Cluster();
  let rx: OtlpReceiver;
  afterAll(async () => {
    await cluster.close();
    await rx.close();
  });

  it('carry the call\'s trace_id and span_id on both nodes', async () => {
    rx = await OtlpReceiver.start();
    const lines: Array<Record<string, unknown>> = [];
    const logger = (): Logger => pino({ level: 'debug' }, { write: (line: string) => void lines.push(JSON.parse(line) as Record<string, unknown>) }) as unknown as Logger;
    const gone = await freePort();
    const b = await cluster.node({ apps: [{ appId: 'gone', appPort: gone }], extra: tracing(rx), logger: logger() });
    const a = await cluster.node({ apps: [{ appId: 'front' }], extra: tracing(rx), logger: logger() });
    const tid = traceId(31337);
    const res = await request(url(a, '/v1.0/invoke/gone/method/x'), { method: 'GET', headers: { traceparent: `00-${tid}-${CALLER_SPAN}-01` } });
    // the app's port is closed: a failure of the app channel (its exact code is the app channel's business)
    const { weftCode } = JSON.parse(await res.body.text()) as { weftCode: string };
    expect(weftCode).toMatch(/^WEFT_APP_/);
    // the ingress span ends last (after any retries): wait for it
    const isIngress = (s: ReceivedSpan): boolean => s.resource['weft.node.id'] === a.nodeId && s.kind === OtlpKind.SERVER;
    const end = Date.now() + 10_000;
    while (!rx.trace(tid).some(isIngress) && Date.now() < end) await new Promise((r) => setTimeout(r, 25));
    const spans = rx.trace(tid);
    const ingress = one(spans, isIngress, 'ingress');
    // one peer server span per attempt that reached node B
    const servers = spans.filter((s) => s.resource['weft.node.id'] === b.nodeId && s.kind === OtlpKind.SERVER);
    expect(servers.length).toBeGreaterThan(0);
    for (const server of servers) expect(server.attributes['error.type']).toBe(weftCode);
    const onA = lines.find((l) => l['msg'] === 'call failed' && l['nodeId'] === a.nodeId);
    const onB = lines.find((l) => l['msg'] === 'call from another node failed' && l['nodeId'] === b.nodeId);
    expect(onA).toMatchObject({ trace_id: tid, span_id: ingress.spanId, weftCode, appId: 'gone' });
    expect(onB).toMatchObject({ trace_id: tid, weftCode });
    expect(servers.map((s) => s.spanId)).toContain(onB?.['span_id']);
  });
});

describe('a collector that is down', () => {
  const cluster = new Cluster();
  afterAll(() => cluster.close());

  it('costs dropped spans, counted, and never a call', async () => {
    const closed = await freePort();
    const extra = { tracing: { samplingRate: '1', otel: { endpointAddress: `127.0.0.1:${closed}`, protocol: 'http' }, exportInterval: 50, maxQueueSize: 4, maxConcurrentExports: 2 } };
    const echo = await cluster.app(echoHandler('echo'));
    await cluster.node({ apps: [{ appId: 'echo', appPort: echo.port }], extra });
    const a = await cluster.node({ apps: [{ appId: 'front' }], extra });
    const statuses = await Promise.all(Array.from({ length: 20 }, async (_, i) => {
      const r = await request(url(a, `/v1.0/invoke/echo/method/n${i}`), { method: 'GET' });
      await r.body.text();
      return r.statusCode;
    }));
    expect(statuses.every((s) => s === 200)).toBe(true);
    // 20 calls make 40 spans on A: at most 4 wait and 2 exports of 4 are in flight, failing; the rest are dropped and counted
    const end = Date.now() + 10_000;
    let dropped = 0;
    while (Date.now() < end) {
      dropped = await metric(a, /^weft_tracing_spans_dropped_total\{/);
      if (dropped >= 28) break;
      await new Promise((r) => setTimeout(r, 50));
    }
    expect(dropped).toBeGreaterThanOrEqual(28);
    expect(await metric(a, /^weft_tracing_exports_in_flight\{/)).toBeLessThanOrEqual(2);
    expect(await metric(a, /^weft_tracing_queue_spans\{/)).toBeLessThanOrEqual(4);
  });
});

/** Raw HTTP/1.1 on a socket of its own, for clients that do what undici would not. */
async function rawSocket(port: number): Promise<Socket> {
  const socket = netConnect(port, '127.0.0.1');
  await new Promise<void>((resolve, reject) => socket.once('connect', resolve).once('error', reject));
  socket.on('error', () => {});
  return socket;
}

/** Polls until `check` holds (bounded: 10 s). */
async function until(check: () => Promise<boolean>, what: string): Promise<void> {
  const end = Date.now() + 10_000;
  while (!(await check())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

describe('hostile clients on a traced path (tracing at 100%, sampled parents)', () => {
  const cluster = new Cluster();
  let rx: OtlpReceiver;
  let a: WeftNode;
  let b: WeftNode;
  let app: TestApp;
  let n = 0;
  /** Calls the app holds without answering (it answers them when the test ends). */
  const held: Array<() => void> = [];

  beforeAll(async () => {
    rx = await OtlpReceiver.start();
    app = await cluster.app((req, res) => {
      if (req.url?.startsWith('/hold')) {
        req.resume();
        held.push(() => res.destroyed || res.end('late'));
        return;
      }
      echoHandler('echo')(req, res);
    });
    b = await cluster.node({ apps: [{ appId: 'echo', appPort: app.port }], extra: tracing(rx) });
    a = await cluster.node({ apps: [{ appId: 'front' }], extra: tracing(rx) });
  });
  afterAll(async () => {
    for (const answer of held) answer();
    await cluster.close();
    await rx.close();
  });

  const inflight = async (node: WeftNode): Promise<number> => metric(node, /^weft_service_invocation_inflight\{/);
  const sampled = (): { tid: string; header: string } => {
    const tid = traceId(0x7000 + ++n);
    return { tid, header: `00-${tid}-${CALLER_SPAN}-01` };
  };

  it('Expect: 100-continue: continued, answered, traced across both nodes, with traceparent on the answer', async () => {
    const { tid, header } = sampled();
    const socket = await rawSocket(a.ports.http);
    let got = '';
    socket.on('data', (d: Buffer) => (got += d.toString('latin1')));
    socket.write(`POST /v1.0/invoke/echo/method/continued HTTP/1.1\r\nhost: a\r\ntraceparent: ${header}\r\nexpect: 100-continue\r\ncontent-length: 5\r\n\r\n`);
    await until(async () => got.startsWith('HTTP/1.1 100'), 'the 100 Continue');
    socket.write('hello');
    // the echo's body, whole or chunked
    await until(async () => /\r\n\r\n[\s\S]*hello/.test(got.slice(got.indexOf('HTTP/1.1 200'))), 'the answer');
    socket.destroy();
    expect(got).toMatch(/HTTP\/1\.1 200/);
    expect(got).toMatch(new RegExp(`traceparent: 00-${tid}-[0-9a-f]{16}-01`, 'i'));
    invocationChain(await rx.waitFor(tid, 4), a, b, CALLER_SPAN);
    await until(async () => (await inflight(a)) === 0, 'in-flight 0 on node A');
  });

  it('a body cut off halfway: never forwarded, nothing traced, in-flight back to 0, the node serves on', async () => {
    const { tid, header } = sampled();
    const before = app.seen.length;
    const socket = await rawSocket(a.ports.http);
    socket.write(`POST /v1.0/invoke/echo/method/cut HTTP/1.1\r\nhost: a\r\ntraceparent: ${header}\r\ncontent-length: 20000\r\n\r\n`);
    socket.write(Buffer.alloc(8000, 7));
    await new Promise((r) => setTimeout(r, 50));
    socket.destroy();
    await until(async () => (await inflight(a)) === 0, 'in-flight 0 on node A');
    expect(app.seen.slice(before).some((r) => r.url.includes('/cut'))).toBe(false);
    // a call that never began has no span; the next traced call still exports its four
    const next = sampled();
    const res = await request(url(a, '/v1.0/invoke/echo/method/after-cut'), { method: 'POST', body: 'x', headers: { traceparent: next.header } });
    expect(res.statusCode).toBe(200);
    await res.body.text();
    invocationChain(await rx.waitFor(next.tid, 4), a, b, CALLER_SPAN);
    expect(rx.trace(tid)).toEqual([]);
  });

  it('a client that vanishes while the app holds its call: cancelled to the app, every span ends, in-flight back to 0 on both nodes', async () => {
    const { tid, header } = sampled();
    const socket = await rawSocket(a.ports.http);
    socket.write(`POST /v1.0/invoke/echo/method/hold/gone HTTP/1.1\r\nhost: a\r\ntraceparent: ${header}\r\ncontent-length: 2\r\n\r\nhi`);
    await until(async () => app.seen.some((r) => r.url === '/hold/gone'), 'the app to get the call');
    socket.destroy();
    await until(async () => (await inflight(a)) === 0 && (await inflight(b)) === 0, 'in-flight 0 on both nodes');
    // the cancelled call's spans still end and go out: A's ingress and attempt, B's server and app call
    const spans = await rx.waitFor(tid, 4);
    const ingress = one(spans.filter((s) => s.resource['weft.node.id'] === a.nodeId), (s) => s.kind === OtlpKind.SERVER, 'ingress span on A');
    expect(ingress.status.code).toBe(2);
    expect(ingress.attributes['error.type']).toBe('WEFT_CANCELLED');
  });

  it('an app that never answers: the call ends by its deadline, the spans say why, in-flight back to 0', async () => {
    const { tid, header } = sampled();
    const started = Date.now();
    const res = await request(url(a, '/v1.0/invoke/echo/method/hold/forever'), { method: 'POST', body: 'x', headers: { traceparent: header, 'weft-timeout': '400ms' } });
    const body = await res.body.text();
    const took = Date.now() - started;
    expect(res.statusCode).toBeGreaterThanOrEqual(500);
    expect(body).toMatch(/DEADLINE/);
    // by the deadline, with room for a loaded machine (the backstop is 1 s past it)
    expect(took).toBeLessThan(400 + 1000 + 2000);
    const spans = await rx.waitFor(tid, 4);
    const attempt = one(spans.filter((s) => s.resource['weft.node.id'] === a.nodeId), (s) => s.kind === OtlpKind.CLIENT, 'attempt span on A');
    expect(attempt.status.code).toBe(2);
    await until(async () => (await inflight(a)) === 0 && (await inflight(b)) === 0, 'in-flight 0 on both nodes');
  });
});
