/**
 * Apps that speak gRPC (app protocol grpc): the official SDK's `DaprServer` with
 * `communicationProtocol: GRPC` behind node B, called through node A by a `DaprClient` over HTTP
 * and over gRPC; and a plain grpc-js AppCallback app for what the SDK's server does not show
 * (metadata, the app's statuses and details, the Any's type URL, HTTPExtension both ways).
 * Every case runs with the worker pool and inline.
 *
 * The SDK's gRPC server (ConnectRPC's Node adapter on an HTTP/2 server) routes OnInvoke by
 * `http_extension.verb` and `method`, hands its handler the body as text, the query string and
 * the content type (no headers), and answers JSON as `data.value` with `application/json`.
 */
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { request } from 'undici';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { CommunicationProtocolEnum, DaprClient, DaprServer, HttpMethod, LogLevel, type DaprInvokerCallbackContent } from '@dapr/dapr';
import type { WeftNode } from '../../src/node.ts';
import { Cluster, url } from '../support/cluster.ts';
import { freePort } from '../support/ports.ts';
import { FAIL_DETAILS, PROTO_ROOT, startGrpcApp, type GrpcTestApp } from '../support/grpc-app.ts';

const QUIET = { level: LogLevel.Error };
const FIVE_MB = 5 * 1024 * 1024;

const Dapr = (grpc.loadPackageDefinition(protoLoader.loadSync('dapr/proto/runtime/v1/dapr.proto', {
  includeDirs: [PROTO_ROOT], keepCase: true, longs: Number, enums: Number, defaults: true, oneofs: true,
})) as unknown as { dapr: { proto: { runtime: { v1: { Dapr: grpc.ServiceClientConstructor } } } } }).dapr.proto.runtime.v1.Dapr;

type RawClient = grpc.Client & { InvokeService: (req: unknown, md: grpc.Metadata, cb: (err: grpc.ServiceError | null, res: InvokeResponse) => void) => grpc.ClientUnaryCall };
interface InvokeResponse {
  data: { type_url: string; value: Buffer } | null;
  content_type: string;
}

function newClient(port: number | null, protocol: CommunicationProtocolEnum): DaprClient {
  // The SDK's gRPC client refuses messages over maxBodySizeMb (default 4) itself.
  return new DaprClient({ daprHost: '127.0.0.1', daprPort: String(port), communicationProtocol: protocol, logger: QUIET, maxBodySizeMb: 8 });
}

function invokeRaw(client: RawClient, req: unknown, metadata: Record<string, string> = {}): Promise<{ err: grpc.ServiceError | null; res: InvokeResponse | undefined; headers: grpc.Metadata }> {
  const md = new grpc.Metadata();
  for (const [k, v] of Object.entries(metadata)) md.set(k, v);
  return new Promise((resolve) => {
    let headers = new grpc.Metadata();
    const call = client.InvokeService(req, md, (err, res) => resolve({ err, res, headers }));
    call.on('metadata', (m: grpc.Metadata) => {
      headers = m;
    });
  });
}

describe.each([
  { mode: 'workers', workers: 2 },
  { mode: 'inline', workers: 0 },
])('apps on app protocol grpc ($mode)', ({ workers }) => {
  const cluster = new Cluster();
  let a: WeftNode; // serves "front", the caller
  let server: DaprServer;
  let raw: GrpcTestApp;
  let rawClient: RawClient;
  const clients: DaprClient[] = [];
  const seen: Array<{ body: string; query: string | undefined; contentType: string | undefined }> = [];

  beforeAll(async () => {
    const sdkPort = await freePort();
    raw = await startGrpcApp();
    a = await cluster.node({ workers, apps: [{ appId: 'front' }] });
    const b = await cluster.node({
      workers,
      apps: [{ appId: 'sdk-grpc', appPort: sdkPort, appProtocol: 'grpc' }, { appId: 'raw-grpc', appPort: raw.port, appProtocol: 'grpc' }],
    });
    server = new DaprServer({
      serverHost: '127.0.0.1',
      serverPort: String(sdkPort),
      communicationProtocol: CommunicationProtocolEnum.GRPC,
      clientOptions: { daprHost: '127.0.0.1', daprPort: String(b.ports.grpc), communicationProtocol: CommunicationProtocolEnum.GRPC, logger: QUIET },
      logger: QUIET,
    });
    const record = (data: DaprInvokerCallbackContent): void => {
      seen.push({ body: data.body ?? '', query: data.query, contentType: data.metadata?.contentType });
    };
    await server.invoker.listen('hello', async (data: DaprInvokerCallbackContent) => {
      record(data);
      const parsed = JSON.parse(data.body ?? 'null') as { name?: string };
      return { greeting: `hello ${parsed.name ?? '?'}`, contentType: data.metadata?.contentType ?? null };
    }, { method: HttpMethod.POST });
    await server.invoker.listen('status', async (data: DaprInvokerCallbackContent) => {
      record(data);
      return { ok: true, query: data.query ?? null };
    }, { method: HttpMethod.GET });
    await server.invoker.listen('echo', async (data: DaprInvokerCallbackContent) => {
      record(data);
      return JSON.parse(data.body ?? 'null') as unknown;
    }, { method: HttpMethod.POST });
    await server.start();
    rawClient = new Dapr(`127.0.0.1:${a.ports.grpc}`, grpc.credentials.createInsecure(), { 'grpc.max_receive_message_length': -1 }) as unknown as RawClient;
  });

  afterAll(async () => {
    rawClient?.close();
    for (const c of clients) await c.stop().catch(() => {});
    await server?.stop().catch(() => {});
    await server?.client.stop().catch(() => {});
    await raw?.close();
    await cluster.close();
  });

  beforeEach(() => {
    seen.length = 0;
    raw.received.length = 0;
  });

  describe.each([
    { over: 'HTTP', protocol: CommunicationProtocolEnum.HTTP },
    { over: 'gRPC', protocol: CommunicationProtocolEnum.GRPC },
  ])('DaprClient over $over → node A → node B → DaprServer (gRPC)', ({ protocol }) => {
    let client: DaprClient;
    beforeAll(() => {
      client = newClient(protocol === CommunicationProtocolEnum.HTTP ? a.ports.http : a.ports.grpc, protocol);
      clients.push(client);
    });

    it('POST with a JSON body reaches the handler registered for POST', async () => {
      const out = await client.invoker.invoke('sdk-grpc', 'hello', HttpMethod.POST, { name: 'weft' });
      expect(out).toEqual({ greeting: 'hello weft', contentType: 'application/json' });
      expect(seen).toEqual([{ body: '{"name":"weft"}', query: '', contentType: 'application/json' }]);
    });

    it('GET with a query string in the method: verb and querystring go in HTTPExtension', async () => {
      const out = await client.invoker.invoke('sdk-grpc', 'status?verbose=1&x=two', HttpMethod.GET);
      expect(out).toEqual({ ok: true, query: 'verbose=1&x=two' });
    });

    it('a 5 MB body goes to the app and back whole', async () => {
      const big = { blob: 'x'.repeat(FIVE_MB), tail: 'end' };
      const out = await client.invoker.invoke('sdk-grpc', 'echo', HttpMethod.POST, big) as typeof big;
      expect(out.blob.length).toBe(FIVE_MB);
      expect(out.tail).toBe('end');
      expect(seen[0]?.body.length).toBe(JSON.stringify(big).length);
    });
  });

  describe('HTTP → node A → node B → a grpc-js AppCallback app', () => {
    it('verb, query, content type and headers map onto InvokeRequest and metadata; the answer back onto HTTP', async () => {
      const res = await request(url(a, '/v1.0/invoke/raw-grpc/method/echo?a=1&b=2'), {
        method: 'PUT', headers: { 'content-type': 'text/plain', 'x-custom': 'abc' }, body: 'hello app',
      });
      expect(res.statusCode).toBe(200);
      expect(res.headers['content-type']).toBe('text/plain');
      expect(res.headers['x-app-header']).toBe('yes');
      expect(res.headers['x-app-trailer']).toBe('done');
      expect(await res.body.text()).toBe('hello app');
      expect(raw.received).toHaveLength(1);
      const got = raw.received[0]!;
      expect(got.request.method).toBe('echo');
      expect(got.request.http_extension).toEqual({ verb: 4, querystring: 'a=1&b=2' });
      expect(got.request.content_type).toBe('text/plain');
      expect(got.request.data?.value.toString()).toBe('hello app');
      expect(got.metadata['x-custom']).toBe('abc');
      expect(got.metadata['dapr-caller-app-id']).toBe('front');
      expect(got.metadata['dapr-callee-app-id']).toBe('raw-grpc');
    });

    it('an app status is an HTTP status with Dapr\'s JSON body and the status in grpc-* headers', async () => {
      const res = await request(url(a, '/v1.0/invoke/raw-grpc/method/fail'), { method: 'POST', body: 'x' });
      expect(res.statusCode).toBe(404);
      expect(await res.body.json()).toMatchObject({ code: 5, message: 'no such thing' });
      expect(res.headers['grpc-status']).toBe('5');
      expect(res.headers['x-why']).toBe('missing');
      expect(Buffer.from(res.headers['grpc-status-details-bin'] as string, 'base64')).toEqual(FAIL_DETAILS);
    });
  });

  describe('gRPC InvokeService → node A → node B → a grpc-js AppCallback app', () => {
    it('the request reaches the app unchanged: data with its type URL, content type, verb, query, metadata', async () => {
      const { err, res, headers } = await invokeRaw(rawClient, {
        id: 'raw-grpc',
        message: { method: 'echo', data: { type_url: 'type.example.com/Thing', value: Buffer.from([1, 2, 3]) }, content_type: 'application/x-thing', http_extension: { verb: 1, querystring: 'q=1' } },
      }, { 'x-custom': 'def' });
      expect(err).toBeNull();
      expect(res?.data).toEqual({ type_url: 'type.example.com/Thing', value: Buffer.from([1, 2, 3]) });
      expect(res?.content_type).toBe('application/x-thing');
      expect(headers.get('x-app-header')).toEqual(['yes']);
      const got = raw.received[0]!;
      expect(got.request.data).toEqual({ type_url: 'type.example.com/Thing', value: Buffer.from([1, 2, 3]) });
      expect(got.request.content_type).toBe('application/x-thing');
      expect(got.request.http_extension).toEqual({ verb: 1, querystring: 'q=1' });
      expect(got.metadata['x-custom']).toBe('def');
      expect(got.metadata['dapr-caller-app-id']).toBe('front');
    });

    it('the app\'s status comes back unchanged: code, message, details and trailers', async () => {
      const { err } = await invokeRaw(rawClient, { id: 'raw-grpc', message: { method: 'fail' } });
      expect(err?.code).toBe(grpc.status.NOT_FOUND);
      expect(err?.details).toBe('no such thing');
      expect(err?.metadata.get('grpc-status-details-bin')).toEqual([FAIL_DETAILS]);
      expect(err?.metadata.get('x-why')).toEqual(['missing']);
    });
  });
});
