/**
 * Dapr's gRPC proxy mode across two nodes (mTLS between them): a grpc-js client calls a service
 * weft knows nothing about on node A's gRPC port with `dapr-app-id`, and node B relays it to the
 * app's own gRPC server. Every kind of call; metadata, trailers, statuses and details unchanged;
 * deadlines and cancellation reaching the app; access policy and metrics as for invocation.
 * Every case runs with the worker pool and inline. Flow control and memory under a 100 MB
 * stream: grpc-proxy-flow.test.ts.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as grpc from '@grpc/grpc-js';
import type { WeftNode } from '../../src/node.ts';
import { Cluster } from '../support/cluster.ts';
import { FAIL_DETAILS, StreamsClient, startStreamsApp, type StreamsApp } from '../support/streams-app.ts';

type Streams = InstanceType<typeof StreamsClient> & Record<string, (...args: unknown[]) => grpc.Call>;

function md(entries: Record<string, string>): grpc.Metadata {
  const m = new grpc.Metadata();
  for (const [k, v] of Object.entries(entries)) m.set(k, v);
  return m;
}

async function until(check: () => boolean, what: string): Promise<void> {
  for (let i = 0; i < 200; i++) {
    if (check()) return;
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error(`timed out waiting for ${what}`);
}

function unary(client: Streams, name: string, req: Buffer, meta: grpc.Metadata, options: grpc.CallOptions = {}): Promise<{ err: grpc.ServiceError | null; res: Buffer | undefined; headers: grpc.Metadata | null; trailers: grpc.Metadata | null }> {
  return new Promise((resolve) => {
    let headers: grpc.Metadata | null = null;
    let trailers: grpc.Metadata | null = null;
    let answer: { err: grpc.ServiceError | null; res: Buffer | undefined } | null = null;
    const done = (): void => {
      if (answer !== null && trailers !== null) resolve({ ...answer, headers, trailers });
    };
    const call = (client[name] as (r: Buffer, m: grpc.Metadata, o: grpc.CallOptions, cb: (e: grpc.ServiceError | null, r?: Buffer) => void) => grpc.ClientUnaryCall)
      .call(client, req, meta, options, (err, res) => {
        answer = { err, res };
        done();
      });
    call.on('metadata', (m: grpc.Metadata) => {
      headers = m;
    });
    call.on('status', (s: grpc.StatusObject) => {
      trailers = s.metadata;
      done();
    });
  });
}

describe.each([
  { mode: 'workers', workers: 2 },
  { mode: 'inline', workers: 0 },
])('gRPC proxy mode ($mode)', ({ workers }) => {
  const cluster = new Cluster();
  let app: StreamsApp;
  let a: WeftNode;
  let b: WeftNode;
  let client: Streams;
  let guarded: Streams;

  beforeAll(async () => {
    app = await startStreamsApp();
    a = await cluster.node({ workers, apps: [{ appId: 'front' }] });
    b = await cluster.node({
      workers,
      apps: [
        { appId: 'streams', appPort: app.port, appProtocol: 'grpc' },
        // the same app behind a policy that lets only Unary through
        {
          appId: 'locked', appPort: app.port, appProtocol: 'grpc',
          accessControl: {
            defaultAction: 'allow', trustDomain: 'public',
            policies: [{ appId: 'front', defaultAction: 'deny', trustDomain: 'public', namespace: 'default', operations: [{ name: '/weft.test.Streams/Unary', action: 'allow' }] }],
          },
        },
      ],
    });
    client = new StreamsClient(`127.0.0.1:${a.ports.grpc}`, grpc.credentials.createInsecure()) as Streams;
    guarded = client;
  });

  afterAll(async () => {
    client?.close();
    await cluster.close();
    await app?.close();
  });

  it('unary: the answer, response metadata and trailers come back; the app sees the caller\'s metadata and who called', async () => {
    const { err, res, headers, trailers } = await unary(client, 'Unary', Buffer.from('abc'), md({ 'dapr-app-id': 'streams', 'x-echo': 'hi', 'x-custom': 'v' }));
    expect(err).toBeNull();
    expect(res?.toString()).toBe('cba');
    expect(headers?.get('x-echo')).toEqual(['hi']);
    expect(trailers?.get('x-trailer')).toEqual(['unary']);
    const seen = app.seen.at(-1)!;
    expect(seen.method).toBe('Unary');
    expect(seen.metadata.get('x-custom')).toEqual(['v']);
    expect(seen.metadata.get('dapr-caller-app-id')).toEqual(['front']);
    expect(seen.metadata.get('dapr-callee-app-id')).toEqual(['streams']);
    expect(Object.keys(seen.metadata.getMap()).filter((k) => k.startsWith('weft-'))).toEqual([]);
  });

  it('server streaming: every message, in order', async () => {
    const req = Buffer.alloc(8);
    req.writeUInt32BE(300, 0);
    req.writeUInt32BE(1000, 4);
    const call = (client['ServerStream'] as (r: Buffer, m: grpc.Metadata) => grpc.ClientReadableStream<Buffer>).call(client, req, md({ 'dapr-app-id': 'streams' }));
    const got: Buffer[] = [];
    for await (const m of call) got.push(m as Buffer);
    expect(got).toHaveLength(300);
    got.forEach((m, i) => expect(m.equals(Buffer.alloc(1000, i % 256))).toBe(true));
  });

  it('client streaming: the app counts every message', async () => {
    const res = await new Promise<Buffer>((resolve, reject) => {
      const call = (client['ClientStream'] as (m: grpc.Metadata, cb: (e: grpc.ServiceError | null, r?: Buffer) => void) => grpc.ClientWritableStream<Buffer>)
        .call(client, md({ 'dapr-app-id': 'streams' }), (e, r) => (e !== null || r === undefined ? reject(e) : resolve(r)));
      for (let i = 0; i < 200; i++) call.write(Buffer.alloc(500, 1));
      call.end();
    });
    expect(res.readUInt32BE(0)).toBe(200);
    expect(res.readUInt32BE(4)).toBe(100_000);
  });

  it('bidirectional: each message echoed', async () => {
    const call = (client['Bidi'] as (m: grpc.Metadata) => grpc.ClientDuplexStream<Buffer, Buffer>).call(client, md({ 'dapr-app-id': 'streams' }));
    const got: string[] = [];
    call.on('data', (m: Buffer) => got.push(m.toString()));
    for (let i = 0; i < 50; i++) call.write(Buffer.from(`m${i}`));
    call.end();
    await new Promise((resolve) => call.on('status', resolve));
    expect(got).toEqual(Array.from({ length: 50 }, (_, i) => `m${i}`));
  });

  it('an app error status comes back unchanged: code, message, details and trailers', async () => {
    const { err } = await unary(client, 'Fail', Buffer.from('x'), md({ 'dapr-app-id': 'streams' }));
    expect(err?.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(err?.details).toBe('bad thing');
    expect(err?.metadata.get('grpc-status-details-bin')).toEqual([FAIL_DETAILS]);
    expect(err?.metadata.get('x-reason')).toEqual(['because']);
  });

  it('a deadline that passes: DEADLINE_EXCEEDED to the client, and the app\'s call is cancelled', async () => {
    const before = app.cancelled.length;
    const call = (client['Hang'] as (m: grpc.Metadata, o: grpc.CallOptions) => grpc.ClientDuplexStream<Buffer, Buffer>)
      .call(client, md({ 'dapr-app-id': 'streams' }), { deadline: Date.now() + 400 });
    call.on('error', () => {});
    call.write(Buffer.from('x'));
    const status = await new Promise<grpc.StatusObject>((resolve) => call.on('status', resolve));
    expect(status.code).toBe(grpc.status.DEADLINE_EXCEEDED);
    await until(() => app.cancelled.length > before, 'the app to see its call cancelled');
  });

  it('a client that cancels mid-stream cancels the app\'s call; metrics count it as CANCELLED', async () => {
    const before = app.cancelled.length;
    const hangs = app.seen.filter((s) => s.method === 'Hang').length;
    const call = (client['Hang'] as (m: grpc.Metadata) => grpc.ClientDuplexStream<Buffer, Buffer>).call(client, md({ 'dapr-app-id': 'streams' }));
    call.on('error', () => {});
    call.write(Buffer.from('first'));
    await until(() => app.seen.filter((s) => s.method === 'Hang').length > hangs, 'the app to get the call');
    call.cancel();
    await until(() => app.cancelled.length > before, 'the app to see its call cancelled');
    const text = await a.metrics.text();
    expect(text).toMatch(/weft_service_invocation_res_recv_total\{[^}]*dst_app_id="streams"[^}]*status="CANCELLED"[^}]*\} [1-9]/);
    expect(text).toMatch(/weft_service_invocation_res_recv_total\{[^}]*dst_app_id="streams"[^}]*status="INVALID_ARGUMENT"[^}]*\} [1-9]/);
    const served = await b.metrics.text();
    expect(served).toMatch(/weft_service_invocation_res_sent_total\{[^}]*app_id="streams"[^}]*src_app_id="front"[^}]*status="OK"[^}]*\} [1-9]/);
  });

  it('the target\'s access policy applies, by method path', async () => {
    const ok = await unary(guarded, 'Unary', Buffer.from('ok'), md({ 'dapr-app-id': 'locked' }));
    expect(ok.err).toBeNull();
    const denied = await unary(guarded, 'Fail', Buffer.from('x'), md({ 'dapr-app-id': 'locked' }));
    expect(denied.err?.code).toBe(grpc.status.PERMISSION_DENIED);
    expect(denied.err?.metadata.get('weft-code')).toEqual(['WEFT_ACCESS_DENIED']);
  });

  it('an unknown app is UNAVAILABLE WEFT_APP_NOT_FOUND; a bad id INVALID_ARGUMENT', async () => {
    const unknown = await unary(client, 'Unary', Buffer.from('x'), md({ 'dapr-app-id': 'nobody' }));
    expect(unknown.err?.code).toBe(grpc.status.UNAVAILABLE);
    expect(unknown.err?.metadata.get('weft-code')).toEqual(['WEFT_APP_NOT_FOUND']);
    const bad = await unary(client, 'Unary', Buffer.from('x'), md({ 'dapr-app-id': 'a.b.c' }));
    expect(bad.err?.code).toBe(grpc.status.INVALID_ARGUMENT);
  });
});
