import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runClosedLoop, runOpenLoop } from '../../bench/load.ts';
import { encodeInvokeServiceRequest, GrpcTarget, ON_INVOKE_PATH, parseAppCallUrl, parseGrpcUrl } from '../../bench/target-grpc.ts';

// Decodes what the generator sends with the same definition weft's gRPC API loads.
const definition = protoLoader.loadSync('dapr/proto/runtime/v1/dapr.proto', {
  includeDirs: [new URL('../../proto/', import.meta.url).pathname], keepCase: true, longs: Number, enums: Number, defaults: false, oneofs: true,
});
const service = definition['dapr.proto.runtime.v1.Dapr'] as grpc.ServiceDefinition;

interface Decoded {
  id?: string;
  message?: { method?: string; data?: { type_url?: string; value?: Buffer }; content_type?: string; http_extension?: { verb?: number; querystring?: string } };
}
const decode = (b: Buffer): Decoded => service['InvokeService']!.requestDeserialize(b) as Decoded;

describe('bench gRPC target', () => {
  it('encodes an InvokeServiceRequest by hand that the Dapr proto decodes field for field', () => {
    const bytes = encodeInvokeServiceRequest({ appId: 'testapp', method: 'test', data: Buffer.alloc(300, 'x'), contentType: 'application/octet-stream', verb: 'post', querystring: 'a=1' });
    const d = decode(bytes);
    expect(d.id).toBe('testapp');
    expect(d.message?.method).toBe('test');
    expect(d.message?.content_type).toBe('application/octet-stream');
    expect(d.message?.http_extension).toEqual({ verb: 3, querystring: 'a=1' });
    expect(Buffer.from(d.message?.data?.value ?? []).equals(Buffer.alloc(300, 'x'))).toBe(true);
    // Field order and varint lengths as protobufjs writes them: the same bytes.
    expect(bytes.equals(service['InvokeService']!.requestSerialize(d) as Buffer)).toBe(true);

    const empty = decode(encodeInvokeServiceRequest({ appId: 'a.ns', method: 'm', data: Buffer.alloc(0), contentType: '', verb: 'GET', querystring: '' }));
    expect(empty.id).toBe('a.ns');
    expect(empty.message?.http_extension).toEqual({ verb: 1 });
    expect(() => encodeInvokeServiceRequest({ appId: 'a', method: 'm', data: Buffer.alloc(0), contentType: '', verb: 'FETCH', querystring: '' })).toThrow(/verb/);
  });

  it('parses grpc:// target URLs', () => {
    expect(parseGrpcUrl('grpc://127.0.0.1:50001/testapp/test')).toEqual({ address: '127.0.0.1:50001', appId: 'testapp', method: 'test', querystring: '' });
    expect(parseGrpcUrl('grpc://h:1/app.ns/a/b-{id}?x={id}')).toEqual({ address: 'h:1', appId: 'app.ns', method: 'a/b-{id}', querystring: 'x={id}' });
    expect(() => parseGrpcUrl('grpc://h:1/onlyapp')).toThrow(/grpc:\/\//);
  });

  it('parses the gRPC app URLs: OnInvoke, and any method with metadata from the query', () => {
    expect(parseAppCallUrl('grpc+oninvoke://127.0.0.1:5')).toEqual({ address: '127.0.0.1:5', path: ON_INVOKE_PATH, metadata: [], onInvoke: true });
    expect(parseAppCallUrl('grpc+call://h:1/weft.bench.Echo/Echo?dapr-app-id=testapp')).toEqual({ address: 'h:1', path: '/weft.bench.Echo/Echo', metadata: [['dapr-app-id', 'testapp']], onInvoke: false });
    expect(() => parseAppCallUrl('grpc+call://h:1/NoMethod')).toThrow(/grpc\+call/);
  });

  it('sends OnInvoke a pre-encoded InvokeRequest, and a raw method its body with the query as metadata', async () => {
    const appCallback = protoLoader.loadSync('dapr/proto/runtime/v1/appcallback.proto', {
      includeDirs: [new URL('../../proto/', import.meta.url).pathname], keepCase: true, longs: Number, enums: Number, defaults: false, oneofs: true,
    })['dapr.proto.runtime.v1.AppCallback'] as grpc.ServiceDefinition;
    const got: unknown[] = [];
    const app = new grpc.Server();
    app.addService(appCallback, {
      OnInvoke: (call: grpc.ServerUnaryCall<unknown, unknown>, cb: grpc.sendUnaryData<unknown>) => {
        got.push(call.request);
        cb(null, {});
      },
    });
    const raw = (b: Buffer): Buffer => b;
    app.addService({ Echo: { path: '/weft.bench.Echo/Echo', requestStream: false, responseStream: false, requestSerialize: raw, requestDeserialize: raw, responseSerialize: raw, responseDeserialize: raw } }, {
      Echo: (call: grpc.ServerUnaryCall<Buffer, Buffer>, cb: grpc.sendUnaryData<Buffer>) => {
        got.push({ bytes: call.request.length, app: call.metadata.get('dapr-app-id')[0] });
        cb(null, call.request);
      },
    });
    const appPort = await new Promise<number>((resolve, reject) => app.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (e, p) => (e ? reject(e) : resolve(p))));
    try {
      for (const url of [`grpc+oninvoke://127.0.0.1:${appPort}`, `grpc+call://127.0.0.1:${appPort}/weft.bench.Echo/Echo?dapr-app-id=testapp`]) {
        const target = new GrpcTarget({ url, bodySize: 100, connections: 1 });
        const status = await new Promise<number>((resolve) => target.send((s) => resolve(s)));
        await target.close();
        expect(status).toBe(200);
      }
      expect(got[0]).toMatchObject({ method: 'test', content_type: 'application/octet-stream', http_extension: { verb: 3 } });
      expect((got[0] as { data: { value: Buffer } }).data.value.length).toBe(100);
      expect(got[1]).toEqual({ bytes: 100, app: 'testapp' });
    } finally {
      app.forceShutdown();
    }
  });

  describe('against a server', () => {
    let server: grpc.Server;
    let port = 0;
    const seen: Decoded[] = [];
    const metadata: string[] = [];

    beforeAll(async () => {
      server = new grpc.Server();
      server.addService(service, {
        InvokeService: (call: grpc.ServerUnaryCall<Decoded, unknown>, cb: grpc.sendUnaryData<unknown>) => {
          seen.push(call.request);
          metadata.push(String(call.metadata.get('x-bench')[0] ?? ''));
          const method = call.request.message?.method ?? '';
          if (method === 'fail') cb({ code: grpc.status.UNAVAILABLE, details: 'no' });
          else if (method === 'hang') setTimeout(() => cb(null, {}), 1000);
          else cb(null, { data: { value: Buffer.from('{"ok":true}') }, content_type: 'application/json' });
        },
      });
      port = await new Promise<number>((resolve, reject) =>
        server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))),
      );
    });

    afterAll(() => {
      server.forceShutdown();
    });

    it('sends the calls in {id} order, one encoded request per id, with the metadata', async () => {
      seen.length = 0;
      metadata.length = 0;
      const target = new GrpcTarget({ url: `grpc://127.0.0.1:${port}/testapp/actor-{id}?n={id}`, connections: 1, ids: 3, bodySize: 16, method: 'PUT', headers: { 'x-bench': 'yes' } });
      try {
        expect(target.messages.length).toBe(3);
        const r = await runOpenLoop(target, { rate: 50, durationS: 1, maxRequests: 7 });
        expect(r.sent).toBe(7);
        expect(r.ok).toBe(7);
        expect(r.errors.total).toBe(0);
        expect(r.latencyUs.count).toBe(7);
        expect(seen.map((d) => `${d.message?.method}?${d.message?.http_extension?.querystring}`)).toEqual([
          'actor-0?n=0', 'actor-1?n=1', 'actor-2?n=2', 'actor-0?n=0', 'actor-1?n=1', 'actor-2?n=2', 'actor-0?n=0',
        ]);
        expect(seen.every((d) => d.id === 'testapp' && d.message?.http_extension?.verb === 4 && d.message.data?.value?.length === 16)).toBe(true);
        expect(metadata).toEqual(Array(7).fill('yes'));
      } finally {
        await target.close();
      }
    });

    it('counts gRPC errors by status code, and a missed deadline as a timeout', async () => {
      const failing = new GrpcTarget({ url: `grpc://127.0.0.1:${port}/testapp/fail`, connections: 2 });
      const slow = new GrpcTarget({ url: `grpc://127.0.0.1:${port}/testapp/hang`, connections: 1, timeoutMs: 100 });
      try {
        const r = await runOpenLoop(failing, { rate: 20, durationS: 0.5 });
        expect(r.sent).toBe(10);
        expect(r.ok).toBe(0);
        expect(r.errors.total).toBe(10);
        expect(r.errors.codes).toEqual({ GRPC_UNAVAILABLE: 10 });
        const t = await runOpenLoop(slow, { rate: 10, durationS: 0.2 });
        expect(t.errors.timeout).toBe(2);
        expect(t.errors.codes).toEqual({ GRPC_DEADLINE_EXCEEDED: 2 });
      } finally {
        await failing.close();
        await slow.close();
      }
    });

    it('closed loop keeps every channel busy', async () => {
      const target = new GrpcTarget({ url: `grpc://127.0.0.1:${port}/testapp/test`, connections: 3 });
      try {
        const r = await runClosedLoop(target, { durationS: 0.3 });
        expect(r.ok).toBeGreaterThan(0);
        expect(r.ok).toBe(r.sent);
        expect(r.errors.total).toBe(0);
      } finally {
        await target.close();
      }
    });
  });
});
