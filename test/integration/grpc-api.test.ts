/**
 * Dapr's gRPC API on weft's gRPC port, driven by a plain grpc-js client built from weft's own
 * proto subset (proto/dapr/...): the edges the SDK does not reach (verbs, query strings,
 * metadata both ways, deadlines, every app status, body limits both ways, proxy mode).
 */
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import type { WeftNode } from '../../src/node.ts';
import { Cluster, echoHandler } from '../support/cluster.ts';

const PROTO_ROOT = fileURLToPath(new URL('../../proto/', import.meta.url));
const definition = protoLoader.loadSync('dapr/proto/runtime/v1/dapr.proto', {
  includeDirs: [PROTO_ROOT], keepCase: true, longs: Number, enums: Number, defaults: true, oneofs: true,
});
const Dapr = (grpc.loadPackageDefinition(definition) as unknown as {
  dapr: { proto: { runtime: { v1: { Dapr: grpc.ServiceClientConstructor } } } };
}).dapr.proto.runtime.v1.Dapr;

const Verb = { NONE: 0, GET: 1, HEAD: 2, POST: 3, PUT: 4, DELETE: 5, CONNECT: 6, OPTIONS: 7, TRACE: 8, PATCH: 9 } as const;

interface InvokeResponse {
  data: { type_url: string; value: Buffer } | null;
  content_type: string;
}

interface Answer {
  readonly res: InvokeResponse | undefined;
  readonly err: grpc.ServiceError | undefined;
  readonly headers: grpc.Metadata;
}

type Client = grpc.Client & Record<string, (req: unknown, md: grpc.Metadata, opts: grpc.CallOptions, cb: (err: grpc.ServiceError | null, res: unknown) => void) => grpc.ClientUnaryCall>;

function connect(port: number | null): Client {
  return new Dapr(`127.0.0.1:${port}`, grpc.credentials.createInsecure(), {
    'grpc.max_receive_message_length': -1,
    'grpc.max_send_message_length': -1,
  }) as unknown as Client;
}

function call(client: Client, rpc: string, req: unknown, metadata: Record<string, string | Buffer> = {}, deadlineMs?: number): Promise<Answer & { raw: unknown }> {
  const md = new grpc.Metadata();
  for (const [k, v] of Object.entries(metadata)) md.set(k, v);
  const opts: grpc.CallOptions = deadlineMs === undefined ? {} : { deadline: Date.now() + deadlineMs };
  return new Promise((resolve) => {
    let headers = new grpc.Metadata();
    const c = (client[rpc] as Client[string]).call(client, req, md, opts, (err, res) => {
      resolve({ res: res as InvokeResponse | undefined, raw: res, err: err ?? undefined, headers });
    });
    c.on('metadata', (m: grpc.Metadata) => {
      headers = m;
    });
  });
}

function invoke(client: Client, id: string, message: Record<string, unknown>, metadata: Record<string, string | Buffer> = {}, deadlineMs?: number): Promise<Answer> {
  return call(client, 'InvokeService', { id, message }, metadata, deadlineMs);
}

function body(a: Answer): Buffer {
  expect(a.err).toBeUndefined();
  return a.res?.data?.value ?? Buffer.alloc(0);
}

function echoed(a: Answer, name: string): string | undefined {
  const v = a.headers.get(name)[0];
  return typeof v === 'string' ? v : undefined;
}

describe.each([
  { mode: 'inline', workers: 0 },
  { mode: 'workers', workers: 2 },
])('the Dapr gRPC API (raw grpc-js client, $mode)', ({ workers }) => {
  const cluster = new Cluster();
  let a: WeftNode; // "front": caller-only, maxBodySize 16Mi (the cluster's default)
  let small: WeftNode; // "tight": maxBodySize 1Mi, invoke timeout 2s (short enough to wait out; long enough for a 900 KiB answer on a loaded machine)
  let client: Client;
  let tight: Client;

  beforeAll(async () => {
    const echo = await cluster.app(echoHandler('e1'));
    a = await cluster.node({ workers, apps: [{ appId: 'front' }] });
    small = await cluster.node({ workers, apps: [{ appId: 'tight' }], extra: { maxBodySize: '1Mi', timeouts: { invoke: '2s', shutdown: '2s' } } });
    await cluster.node({ workers, apps: [{ appId: 'echo', appPort: echo.port }] });
    client = connect(a.ports.grpc);
    tight = connect(small.ports.grpc);
  });

  afterAll(async () => {
    client?.close();
    tight?.close();
    await cluster.close();
  });

  it('GetMetadata answers the node\'s facts', async () => {
    const { raw, err } = await call(client, 'GetMetadata', {});
    expect(err).toBeUndefined();
    const md = raw as { id: string; runtime_version: string; extended_metadata: Record<string, string>; active_actors_count: unknown[] };
    expect(md.id).toBe('front');
    expect(md.runtime_version).toMatch(/^weft\//);
    expect(md.active_actors_count).toEqual([]);
    expect(md.extended_metadata['nodeId']).toBe(a.nodeId);
    expect(JSON.parse(md.extended_metadata['resolver'] as string)).toBeTypeOf('object');
  });

  describe('InvokeService', () => {
    it('carries verb, method, query string, content type and body; answers data and content type', async () => {
      const r = await invoke(client, 'echo', {
        method: 'orders/new', data: { value: Buffer.from('{"a":1}') }, content_type: 'application/json',
        http_extension: { verb: Verb.PUT, querystring: 'x=1&y=2' },
      });
      expect(body(r).toString()).toBe('{"a":1}');
      expect(r.res?.content_type).toBe('application/json');
      expect(r.res?.data?.type_url).toBe('');
      expect(echoed(r, 'x-echo-method')).toBe('PUT');
      expect(echoed(r, 'x-echo-path')).toBe('/orders/new');
      expect(echoed(r, 'x-echo-query')).toBe('x=1&y=2');
      expect(echoed(r, 'x-echo-caller')).toBeUndefined();
      // The app's answer headers come back as metadata; Content-Type as dapr-content-type (Dapr's rule).
      expect(echoed(r, 'dapr-content-type')).toBe('application/json');
    });

    it('verb NONE (or no http_extension) is POST, as in Dapr; every other verb passes', async () => {
      expect(echoed(await invoke(client, 'echo', { method: 'm' }), 'x-echo-method')).toBe('POST');
      expect(echoed(await invoke(client, 'echo', { method: 'm', http_extension: { verb: Verb.NONE } }), 'x-echo-method')).toBe('POST');
      for (const verb of ['GET', 'DELETE', 'PATCH', 'OPTIONS'] as const) {
        expect(echoed(await invoke(client, 'echo', { method: 'm', http_extension: { verb: Verb[verb] } }), 'x-echo-method')).toBe(verb);
      }
      const head = await invoke(client, 'echo', { method: 'm', http_extension: { verb: Verb.HEAD } });
      expect(head.err).toBeUndefined();
      expect(echoed(head, 'x-echo-method')).toBe('HEAD');
    });

    it('a query string written into the method joins http_extension.querystring', async () => {
      const r = await invoke(client, 'echo', { method: 'a/b?x=1', http_extension: { verb: Verb.GET, querystring: 'y=2' } });
      expect(echoed(r, 'x-echo-path')).toBe('/a/b');
      expect(echoed(r, 'x-echo-query')).toBe('x=1&y=2');
    });

    it('Any.value is the body whatever its type_url says', async () => {
      const r = await invoke(client, 'echo', { method: 'm', data: { type_url: 'type.googleapis.com/google.protobuf.BytesValue', value: Buffer.from([0, 1, 2, 255]) } });
      expect([...body(r)]).toEqual([0, 1, 2, 255]);
    });

    it('the caller\'s metadata reaches the app as headers, except the token, routing, gRPC and binary ones', async () => {
      const r = await invoke(client, 'echo', { method: 'm', data: { value: Buffer.from('x') } }, {
        'x-request-id': 'req-1', traceparent: '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01',
        'dapr-app-id': 'other', 'dapr-caller-app-id': 'admin', 'x-thing-bin': Buffer.from([1, 2]),
      });
      const seen = JSON.parse(echoed(r, 'x-echo-headers') as string) as Record<string, string>;
      expect(seen['x-request-id']).toBe('req-1');
      expect(seen['traceparent']).toBe('00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01');
      expect(seen['dapr-caller-app-id']).toBe('front');
      expect(seen['dapr-callee-app-id']).toBe('echo');
      expect(seen['dapr-app-id']).toBeUndefined();
      expect(seen['x-thing-bin']).toBeUndefined();
      expect(Object.keys(seen).filter((h) => h.startsWith('grpc-') || h === 'te' || h.startsWith(':'))).toEqual([]);
      expect(seen['x-forwarded-for']).toBe('127.0.0.1');
    });

    it('a bad or missing app id is INVALID_ARGUMENT with weft\'s code', async () => {
      const two = await invoke(client, 'a.b.c', { method: 'm' });
      expect(two.err?.code).toBe(grpc.status.INVALID_ARGUMENT);
      expect(two.err?.metadata.get('weft-code')).toEqual(['WEFT_BAD_APP_ID']);
      const none = await invoke(client, '', { method: 'm' });
      expect(none.err?.code).toBe(grpc.status.INVALID_ARGUMENT);
      expect(none.err?.metadata.get('weft-code')).toEqual(['WEFT_NO_APP_ID']);
      const verb = await invoke(client, 'echo', { method: 'm', http_extension: { verb: 42 } });
      expect(verb.err?.code).toBe(grpc.status.INVALID_ARGUMENT);
    });

    it('an app in another namespace is named app.namespace', async () => {
      const r = await invoke(client, 'echo.elsewhere', { method: 'm' });
      expect(r.err?.code).toBe(grpc.status.UNAVAILABLE);
      expect(r.err?.details).toMatch(/^failed to invoke, id: echo, err: .*elsewhere/);
      expect(r.err?.metadata.get('weft-code')).toEqual(['WEFT_APP_NOT_FOUND']);
      expect(body(await invoke(client, 'echo.default', { method: 'm', data: { value: Buffer.from('ns') } })).toString()).toBe('ns');
    });

    it.each([
      [400, grpc.status.INVALID_ARGUMENT, 'Bad Request'],
      [401, grpc.status.UNAUTHENTICATED, 'Unauthorized'],
      [403, grpc.status.PERMISSION_DENIED, 'Forbidden'],
      [404, grpc.status.NOT_FOUND, 'Not Found'],
      [408, grpc.status.CANCELLED, 'Request Timeout'],
      [409, grpc.status.ALREADY_EXISTS, 'Conflict'],
      [418, grpc.status.UNKNOWN, 'I\'m a Teapot'],
      [429, grpc.status.RESOURCE_EXHAUSTED, 'Too Many Requests'],
      [500, grpc.status.UNKNOWN, 'Internal Server Error'],
      [501, grpc.status.UNIMPLEMENTED, 'Not Implemented'],
      [503, grpc.status.UNAVAILABLE, 'Service Unavailable'],
      [504, grpc.status.DEADLINE_EXCEEDED, 'Gateway Timeout'],
      [302, grpc.status.UNKNOWN, 'Found'],
    ])('an app\'s %i is %i with its status text, dapr-http-status and an ErrorInfo', async (status, code, text) => {
      const r = await invoke(client, 'echo', { method: `status/${status}`, http_extension: { verb: Verb.GET } });
      expect(r.err?.code).toBe(code);
      expect(r.err?.details).toBe(text);
      expect(r.headers.get('dapr-http-status')).toEqual([String(status)]);
      expect(r.err?.metadata.get('weft-code')).toEqual([]);
      const details = r.err?.metadata.get('grpc-status-details-bin')[0] as Buffer;
      const s = details.toString('latin1');
      expect(s).toContain('type.googleapis.com/google.rpc.ErrorInfo');
      expect(s).toContain('dapr.io');
      expect(s).toContain(`http.code\x12${String.fromCharCode(String(status).length)}${status}`);
      expect(s).toContain(`{"status":${status},"app":"e1"}`);
    });

    it('the client\'s deadline shortens the node\'s', async () => {
      const started = Date.now();
      const r = await invoke(client, 'echo', { method: 'hang' }, {}, 300);
      expect(r.err?.code).toBe(grpc.status.DEADLINE_EXCEEDED);
      expect(Date.now() - started).toBeLessThan(5000);
    });

    it('without a client deadline the node\'s invoke timeout applies, reported with weft\'s code', async () => {
      const r = await invoke(tight, 'echo', { method: 'hang' });
      expect(r.err?.code).toBe(grpc.status.DEADLINE_EXCEEDED);
      expect(r.err?.metadata.get('weft-code')).toEqual(['WEFT_DEADLINE_EXCEEDED']);
      expect(r.err?.details).toMatch(/^failed to invoke, id: echo, err: /);
    });

    it('a caller that cancels leaves the node serving', async () => {
      const c = (tight['InvokeService'] as Client[string]).call(tight, { id: 'echo', message: { method: 'hang' } }, new grpc.Metadata(), {}, () => {});
      await new Promise((resolve) => setTimeout(resolve, 100));
      c.cancel();
      expect(body(await invoke(tight, 'echo', { method: 'm', data: { value: Buffer.from('after') } })).toString()).toBe('after');
    });

    it('a 5 MiB body and answer pass whole with maxBodySize raised', async () => {
      const big = Buffer.alloc(5 * 1024 * 1024);
      for (let i = 0; i < big.length; i += 4096) big[i] = i % 251;
      const r = await invoke(client, 'echo', { method: 'big', data: { value: big }, content_type: 'application/octet-stream' });
      const got = body(r);
      expect(got.length).toBe(big.length);
      expect(got.equals(big)).toBe(true);
    });

    it('a large streamed answer under the limit is collected whole', async () => {
      const r = await invoke(tight, 'echo', { method: `bytes/${900 * 1024}`, http_extension: { verb: Verb.GET } });
      const got = body(r);
      expect(got.length).toBe(900 * 1024);
      expect(got.every((b) => b === 7)).toBe(true);
    });

    it('a body over maxBodySize is RESOURCE_EXHAUSTED, and the node keeps serving', async () => {
      const over = await invoke(tight, 'echo', { method: 'm', data: { value: Buffer.alloc(1024 * 1024 + 1) } });
      expect(over.err?.code).toBe(grpc.status.RESOURCE_EXHAUSTED);
      expect(over.err?.metadata.get('weft-code')).toEqual(['WEFT_BODY_TOO_LARGE']);
      // Far over: grpc-js refuses the message itself, before weft sees it.
      const far = await invoke(tight, 'echo', { method: 'm', data: { value: Buffer.alloc(3 * 1024 * 1024) } });
      expect(far.err?.code).toBe(grpc.status.RESOURCE_EXHAUSTED);
      expect(body(await invoke(tight, 'echo', { method: 'm', data: { value: Buffer.from('still here') } })).toString()).toBe('still here');
    });

    it('an answer over maxBodySize is RESOURCE_EXHAUSTED (a unary answer must be whole)', async () => {
      const r = await invoke(tight, 'echo', { method: `bytes/${2 * 1024 * 1024}`, http_extension: { verb: Verb.GET } });
      expect(r.err?.code).toBe(grpc.status.RESOURCE_EXHAUSTED);
      expect(r.err?.metadata.get('weft-code')).toEqual(['WEFT_BODY_TOO_LARGE']);
    });
  });

  it('InvokeActor routes like the HTTP actor API: a type no app hosts is INVALID_ARGUMENT (ERR_ACTOR_INSTANCE_MISSING), with a clear message', async () => {
    const { err } = await call(client, 'InvokeActor', { actor_type: 'T', actor_id: '1', method: 'm' });
    expect(err?.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(err?.details).toMatch(/hosts actor type T/);
  });

  it('any other service: without dapr-app-id UNIMPLEMENTED; proxied to an HTTP app, UNIMPLEMENTED WEFT_APP_NOT_GRPC', async () => {
    const Other = grpc.makeGenericClientConstructor({
      Hello: {
        path: '/helloworld.Greeter/SayHello', requestStream: false, responseStream: false,
        requestSerialize: (b: Buffer) => b, requestDeserialize: (b: Buffer) => b,
        responseSerialize: (b: Buffer) => b, responseDeserialize: (b: Buffer) => b,
      },
    }, 'Greeter');
    const other = new Other(`127.0.0.1:${a.ports.grpc}`, grpc.credentials.createInsecure()) as unknown as Client;
    const hello = (md: grpc.Metadata): Promise<grpc.ServiceError | null> => new Promise((resolve) => {
      (other['Hello'] as Client[string]).call(other, Buffer.alloc(0), md, {}, (e) => resolve(e));
    });
    try {
      const none = await hello(new grpc.Metadata());
      expect(none?.code).toBe(grpc.status.UNIMPLEMENTED);
      expect(none?.details).toContain('/helloworld.Greeter/SayHello');
      const md = new grpc.Metadata();
      md.set('dapr-app-id', 'echo');
      const err = await hello(md);
      expect(err?.code).toBe(grpc.status.UNIMPLEMENTED);
      expect(err?.metadata.get('weft-code')).toEqual(['WEFT_APP_NOT_GRPC']);
    } finally {
      other.close();
    }
  });

  describe('with an API token', () => {
    let guarded: Client;

    beforeAll(async () => {
      const node = await cluster.node({ apps: [{ appId: 'guarded' }], extra: { apiToken: 's3cret' } });
      guarded = connect(node.ports.grpc);
    });

    afterAll(() => guarded?.close());

    it('every RPC needs dapr-api-token; with it, the token is not forwarded', async () => {
      for (const md of [{}, { 'dapr-api-token': 'wrong' }, { 'dapr-api-token': 's3cret-' }] as Array<Record<string, string>>) {
        const inv = await invoke(guarded, 'echo', { method: 'm' }, md);
        expect(inv.err?.code).toBe(grpc.status.UNAUTHENTICATED);
        expect(inv.err?.metadata.get('weft-code')).toEqual(['WEFT_UNAUTHORIZED']);
        expect((await call(guarded, 'GetMetadata', {}, md)).err?.code).toBe(grpc.status.UNAUTHENTICATED);
        expect((await call(guarded, 'InvokeActor', {}, md)).err?.code).toBe(grpc.status.UNAUTHENTICATED);
      }
      const ok = await invoke(guarded, 'echo', { method: 'm' }, { 'dapr-api-token': 's3cret' });
      const seen = JSON.parse(echoed(ok, 'x-echo-headers') as string) as Record<string, string>;
      expect(seen['dapr-caller-app-id']).toBe('guarded');
      expect(seen['dapr-api-token']).toBeUndefined();
      expect((await call(guarded, 'GetMetadata', {}, { 'dapr-api-token': 's3cret' })).err).toBeUndefined();
    });
  });

  it('grpc.enabled: false serves no gRPC API', async () => {
    const off = await cluster.node({ apps: [{ appId: 'off' }], extra: { grpc: { port: 0, enabled: false } } });
    expect(off.ports.grpc).toBeNull();
  });
});
