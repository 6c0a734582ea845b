/**
 * Compatibility with the official Dapr JS SDK (`@dapr/dapr` 3.x) over gRPC: a `DaprClient`
 * with `communicationProtocol: GRPC` on node A's gRPC port, invoking a plain node:http app
 * behind node B. Every case runs with the worker pool and inline.
 *
 * What the SDK does on the wire over gRPC (read from its source, asserted below):
 * - It speaks gRPC through ConnectRPC's Node transport (`@connectrpc/connect-node`), not grpc-js.
 * - `client.start()` (and the lazy start before a first call) calls `GetMetadata` with a
 *   `GetMetadataRequest` every 500 ms until one succeeds; `health.isHealthy()` is the same call.
 * - `invoker.invoke(appId, method, verb, data)` sends `InvokeService` with `id`, `method` as given
 *   (a query string stays inside it; `http_extension.querystring` is never set), the verb in
 *   `http_extension.verb`, and `data` as `Any{value}` with an empty `type_url`. `data` defaults
 *   to `{}`, so even a GET carries the body `{}` as application/json. The options' headers are
 *   ignored: no metadata but the API token reaches the node.
 * - The answer's `data.value` is JSON-parsed; an answer that is not JSON (text, or an empty
 *   body such as a 204's) is thrown as `Error(JSON.stringify({error: "COULD_NOT_PARSE_RESULT",
 *   error_msg}))`. A gRPC error is thrown as it is (a ConnectError: code, rawMessage, metadata
 *   with headers and trailers, details).
 */
import { createServer as createNetServer, type AddressInfo } from 'node:net';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { CommunicationProtocolEnum, DaprClient, HttpMethod, LogLevel, type LoggerOptions } from '@dapr/dapr';
import { Code, ConnectError } from '@connectrpc/connect';
import type { WeftNode } from '../../src/node.ts';
import { Cluster } from '../support/cluster.ts';
import { recordingHandler, type Received } from '../support/recording-app.ts';
import { probeLog } from '../support/sdk-probe-log.ts';

const QUIET = { level: LogLevel.Error };


function newClient(port: number | null, token?: string, logger: LoggerOptions = QUIET): DaprClient {
  return new DaprClient({
    daprHost: '127.0.0.1',
    daprPort: String(port),
    communicationProtocol: CommunicationProtocolEnum.GRPC,
    logger,
    ...(token === undefined ? {} : { daprApiToken: token }),
  });
}

/** Runs `fn`, which must throw, and returns what it threw. */
async function thrown(fn: () => Promise<unknown>): Promise<unknown> {
  try {
    await fn();
  } catch (err) {
    return err;
  }
  throw new Error('expected a failure');
}

async function connectError(fn: () => Promise<unknown>): Promise<ConnectError> {
  const err = await thrown(fn);
  expect(err).toBeInstanceOf(ConnectError);
  return err as ConnectError;
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createNetServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as AddressInfo;
      s.close(() => resolve(port));
    });
  });
}

/** The SDK's transport without its start-up polling or token interceptor (DaprClient internals). */
interface RawSdkClient {
  getMetadata(req: object): Promise<unknown>;
  invokeService(req: object): Promise<unknown>;
  invokeActor(req: object): Promise<unknown>;
}
function rawTransport(client: DaprClient): Promise<RawSdkClient> {
  return (client.daprClient as unknown as { getClient(init: boolean): Promise<RawSdkClient> }).getClient(false);
}

describe.each([
  { mode: 'workers', workers: 2 },
  { mode: 'inline', workers: 0 },
])('the official Dapr JS SDK over gRPC against weft ($mode)', ({ workers }) => {
  const cluster = new Cluster();
  const received: Received[] = [];
  const clients: DaprClient[] = [];
  let a: WeftNode; // serves "front", the caller-only app the DaprClient stands for
  let client: DaprClient;

  function only(): Received {
    expect(received).toHaveLength(1);
    return received[0] as Received;
  }

  beforeAll(async () => {
    const plain = await cluster.app(recordingHandler(received));
    a = await cluster.node({ workers, apps: [{ appId: 'front' }] });
    await cluster.node({ workers, apps: [{ appId: 'plain', appPort: plain.port }] });
    client = newClient(a.ports.grpc);
    clients.push(client);
  });

  afterAll(async () => {
    for (const c of clients) await c.stop().catch(() => {});
    await cluster.close();
  });

  beforeEach(() => {
    received.length = 0;
  });

  describe('readiness and metadata', () => {
    it('client.start() is satisfied by GetMetadata on the first probe', async () => {
      const log = probeLog();
      const probe = newClient(a.ports.grpc, undefined, log.logger);
      clients.push(probe);
      expect(probe.getIsInitialized()).toBe(false);
      await probe.start();
      // A first probe that failed would have made the SDK say it is waiting and poll again.
      expect(log.waited).toBe(false);
      expect(probe.getIsInitialized()).toBe(true);
      expect(await probe.health.isHealthy()).toBe(true);
    });

    it('metadata.get() returns the node\'s facts, extended as strings', async () => {
      const md = await client.metadata.get();
      expect(md.id).toBe('front');
      expect(md.actors).toEqual([]);
      expect(md.components).toEqual([]);
      expect(md.extended['nodeId']).toBe(a.nodeId);
      expect(md.extended['namespace']).toBe('default');
      expect(JSON.parse(md.extended['apps'] as string)).toEqual(['front']);
    });

    it('a client started before its node waits for it, then calls through it', async () => {
      const port = await freePort();
      const late = newClient(port);
      clients.push(late);
      let settled = false;
      const starting = late.start().finally(() => {
        settled = true;
      });
      await new Promise((resolve) => setTimeout(resolve, 700));
      expect(settled).toBe(false);
      await cluster.node({ workers, apps: [{ appId: 'late' }], extra: { grpc: { port } } });
      await starting;
      expect(late.getIsInitialized()).toBe(true);
      const out = await late.invoker.invoke('plain', 'json/late', HttpMethod.POST, { x: 1 });
      expect(out).toMatchObject({ url: '/json/late', body: '{"x":1}' });
      expect(only().headers['dapr-caller-app-id']).toBe('late');
    });
  });

  describe('DaprClient (gRPC) → weft → plain node:http app', () => {
    it('POST with a JSON body', async () => {
      const out = await client.invoker.invoke('plain', 'json/post', HttpMethod.POST, { n: 1, s: 'x', nested: { ok: true } });
      const got = only();
      expect(got.method).toBe('POST');
      expect(got.url).toBe('/json/post');
      expect(JSON.parse(got.body)).toEqual({ n: 1, s: 'x', nested: { ok: true } });
      expect(got.headers['content-type']).toBe('application/json');
      expect(got.headers['dapr-caller-app-id']).toBe('front');
      expect(got.headers['dapr-callee-app-id']).toBe('plain');
      expect(got.headers['x-forwarded-for']).toBe('127.0.0.1');
      // gRPC's own metadata stays on the gRPC hop.
      expect(Object.keys(got.headers).filter((h) => h.startsWith('grpc-') || h === 'te')).toEqual([]);
      expect(out).toEqual({ method: 'POST', url: '/json/post', body: '{"n":1,"s":"x","nested":{"ok":true}}', contentType: 'application/json' });
    });

    it('POST with a text body: the app gets text/plain', async () => {
      const out = await client.invoker.invoke('plain', 'json/text', HttpMethod.POST, 'hello weft' as unknown as object);
      const got = only();
      expect(got.body).toBe('hello weft');
      expect(got.headers['content-type']).toBe('text/plain');
      expect(out).toMatchObject({ body: 'hello weft', contentType: 'text/plain' });
    });

    it('an answer that is not JSON is thrown by the SDK as COULD_NOT_PARSE_RESULT, with the text', async () => {
      const err = await thrown(() => client.invoker.invoke('plain', 'text', HttpMethod.POST, 'hi' as unknown as object));
      expect(only().body).toBe('hi');
      const parsed = JSON.parse((err as Error).message) as { error: string; error_msg: string };
      expect(parsed.error).toBe('COULD_NOT_PARSE_RESULT');
      expect(parsed.error_msg).toContain('got POST hi');
    });

    it('an empty answer (204) is thrown by the SDK as COULD_NOT_PARSE_RESULT too', async () => {
      const err = await thrown(() => client.invoker.invoke('plain', 'empty', HttpMethod.POST, { x: 1 }));
      expect(only().url).toBe('/empty');
      expect((JSON.parse((err as Error).message) as { error: string }).error).toBe('COULD_NOT_PARSE_RESULT');
    });

    it('GET with a query string in the method name and a nested path; the SDK sends {} as the body', async () => {
      const out = await client.invoker.invoke('plain', 'json/a/b?x=1&y=two%20words', HttpMethod.GET);
      const got = only();
      expect(got.method).toBe('GET');
      expect(got.url).toBe('/json/a/b?x=1&y=two%20words');
      expect(got.body).toBe('{}');
      expect(out).toMatchObject({ method: 'GET', url: '/json/a/b?x=1&y=two%20words' });
    });

    it('PUT, PATCH and DELETE reach the app with their verbs', async () => {
      expect(await client.invoker.invoke('plain', 'json/put', HttpMethod.PUT, { v: 2 })).toMatchObject({ method: 'PUT', body: '{"v":2}' });
      expect(await client.invoker.invoke('plain', 'json/patch', HttpMethod.PATCH, { p: true })).toMatchObject({ method: 'PATCH', body: '{"p":true}' });
      expect(await client.invoker.invoke('plain', 'json/item/42', HttpMethod.DELETE)).toMatchObject({ method: 'DELETE', url: '/json/item/42' });
      expect(received.map((r) => `${r.method} ${r.url}`)).toEqual(['PUT /json/put', 'PATCH /json/patch', 'DELETE /json/item/42']);
    });

    it('an app\'s 404 is thrown as NOT_FOUND, with Dapr\'s status text, ErrorInfo and dapr-http-status', async () => {
      const err = await connectError(() => client.invoker.invoke('plain', 'status/404', HttpMethod.GET));
      expect(only().url).toBe('/status/404');
      expect(err.code).toBe(Code.NotFound);
      expect(err.rawMessage).toBe('Not Found');
      expect(err.metadata.get('dapr-http-status')).toBe('404');
      expect(err.details.map((d) => (d as { type: string }).type)).toEqual(['google.rpc.ErrorInfo']);
      const info = Buffer.from((err.details[0] as { value: Uint8Array }).value).toString('utf8');
      expect(info).toContain('http.error_message');
      expect(info).toContain('{"reason":"status 404 from the app"}');
    });

    it('an app\'s 503 is UNAVAILABLE and its 500 UNKNOWN', async () => {
      expect((await connectError(() => client.invoker.invoke('plain', 'status/503', HttpMethod.GET))).code).toBe(Code.Unavailable);
      expect((await connectError(() => client.invoker.invoke('plain', 'status/500', HttpMethod.GET))).code).toBe(Code.Unknown);
    });

    it('an unknown app id is thrown as UNAVAILABLE with Dapr\'s message and weft\'s code', async () => {
      const err = await connectError(() => client.invoker.invoke('no-such-app', 'json/x', HttpMethod.POST, { a: 1 }));
      expect(err.code).toBe(Code.Unavailable);
      expect(err.rawMessage).toMatch(/^failed to invoke, id: no-such-app, err: /);
      expect(err.metadata.get('weft-code')).toBe('WEFT_APP_NOT_FOUND');
      expect(received).toHaveLength(0);
    });

    it('an invalid app id (two dots) is thrown as INVALID_ARGUMENT', async () => {
      const err = await connectError(() => client.invoker.invoke('a.b.c', 'json/x', HttpMethod.GET));
      expect(err.code).toBe(Code.InvalidArgument);
      expect(err.metadata.get('weft-code')).toBe('WEFT_BAD_APP_ID');
    });

    it('answers concurrent SDK calls each with its own result', async () => {
      const outs = await Promise.all(Array.from({ length: 40 }, (_, i) =>
        client.invoker.invoke('plain', `json/c${i}`, HttpMethod.POST, { i })));
      outs.forEach((out, i) => expect(out).toMatchObject({ url: `/json/c${i}`, body: `{"i":${i}}` }));
      expect(received).toHaveLength(40);
    });

    it('InvokeActor for a type no app hosts is INVALID_ARGUMENT with a clear message', async () => {
      // The SDK's gRPC client has no actor invoke of its own (its actor proxies are built per
      // class): the RPC is called through its transport.
      const raw = await rawTransport(client);
      const err = await connectError(() => raw.invokeActor({ actorType: 'Counter', actorId: 'c1', method: 'increment' }));
      expect(err.code).toBe(Code.InvalidArgument);
      expect(err.rawMessage).toMatch(/hosts actor type Counter/);
    });
  });

  describe('with an API token (DAPR_API_TOKEN)', () => {
    let guarded: WeftNode;

    beforeAll(async () => {
      guarded = await cluster.node({ workers, apps: [{ appId: 'guarded' }], extra: { apiToken: 's3cret' } });
    });

    it('the SDK sends daprApiToken as metadata on its probe and calls; weft never forwards it', async () => {
      const log = probeLog();
      const tokenClient = newClient(guarded.ports.grpc, 's3cret', log.logger);
      clients.push(tokenClient);
      await tokenClient.start();
      expect(log.waited).toBe(false);
      const out = await tokenClient.invoker.invoke('plain', 'json/guarded', HttpMethod.POST, { t: 1 });
      const got = only();
      expect(got.headers['dapr-caller-app-id']).toBe('guarded');
      expect(got.headers['dapr-api-token']).toBeUndefined();
      expect(out).toMatchObject({ url: '/json/guarded', body: '{"t":1}' });
    });

    it('without the token (or with a wrong one) GetMetadata and InvokeService are UNAUTHENTICATED', async () => {
      for (const token of [undefined, 'wrong']) {
        const c = newClient(guarded.ports.grpc, token);
        clients.push(c);
        const raw = await rawTransport(c);
        // With a wrong token the SDK's interceptor sends it; without one, nothing.
        const md = await connectError(() => raw.getMetadata({}));
        expect(md.code).toBe(Code.Unauthenticated);
        // (invoke() would first wait for start(), which never succeeds: the RPC is called directly.)
        const inv = await connectError(() => raw.invokeService({ id: 'plain', message: { method: 'json/x' } }));
        expect(inv.code).toBe(Code.Unauthenticated);
      }
      expect(received).toHaveLength(0);
    });
  });
});
