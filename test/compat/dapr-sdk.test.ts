/**
 * Compatibility with the official Dapr JS SDK (`@dapr/dapr` 3.x), used as a black box against
 * real weft nodes: a `DaprClient` (HTTP) invoking through node A, a plain node:http app and an
 * app built with `DaprServer` behind node B. Every case runs with the worker pool and inline.
 *
 * What the SDK does on the wire (read from its source, asserted below):
 * - `client.start()` (and the lazy start before a first call) polls `GET /v1.0/metadata` every
 *   500 ms until the answer is 2xx/3xx with a truthy body; `client.health.isHealthy()` is the
 *   same call. It never calls `/v1.0/healthz` or `/v1.0/healthz/outbound`.
 * - `invoker.invoke(appId, method, verb, data, {headers})` requests
 *   `/v1.0/invoke/<appId>/method/<method>` with `method` pasted in as it is (a query string in it
 *   passes through); objects go as JSON, strings as text/plain.
 * - The answer body is JSON-parsed when it parses, else returned as text. A status outside
 *   200..399 is thrown as `Error(JSON.stringify({error: statusText, error_msg: body, status}))`.
 */
import { createServer as createHttpServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { request } from 'undici';
import { CommunicationProtocolEnum, DaprClient, DaprServer, HttpMethod, LogLevel, type DaprInvokerCallbackContent } from '@dapr/dapr';
import type { WeftNode } from '../../src/node.ts';
import { Cluster, url } from '../support/cluster.ts';
import { recordingHandler, type Received } from '../support/recording-app.ts';
import { freePort } from '../support/ports.ts';
import { probeLog } from '../support/sdk-probe-log.ts';

const QUIET = { level: LogLevel.Error };


/** What the SDK throws for a status outside 200..399. */
interface SdkHttpError {
  readonly error: string;
  readonly error_msg: string;
  readonly status: number;
}


function newClient(port: number): DaprClient {
  return new DaprClient({
    daprHost: '127.0.0.1',
    daprPort: String(port),
    communicationProtocol: CommunicationProtocolEnum.HTTP,
    logger: QUIET,
  });
}

/** Runs `fn`, which must throw the SDK's HTTP error, and returns that error parsed. */
async function sdkError(fn: () => Promise<unknown>): Promise<SdkHttpError> {
  let caught: unknown;
  try {
    await fn();
  } catch (err) {
    caught = err;
  }
  expect(caught).toBeInstanceOf(Error);
  return JSON.parse((caught as Error).message) as SdkHttpError;
}

/** A transparent HTTP proxy in front of a node that records what passes through it. */
interface Recorder {
  readonly port: number;
  readonly seen: Array<{ method: string; url: string; status: number }>;
  close(): Promise<void>;
}

async function recorder(targetPort: number): Promise<Recorder> {
  const seen: Recorder['seen'] = [];
  const server: Server = createHttpServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      request(`http://127.0.0.1:${targetPort}${req.url ?? '/'}`, {
        method: (req.method ?? 'GET') as 'GET',
        headers: { 'content-type': req.headers['content-type'] ?? 'application/octet-stream' },
        body: body.length === 0 ? null : body,
      }).then(async (up) => {
        const text = Buffer.from(await up.body.arrayBuffer());
        seen.push({ method: req.method ?? '', url: req.url ?? '', status: up.statusCode });
        const ct = up.headers['content-type'];
        res.writeHead(up.statusCode, typeof ct === 'string' ? { 'content-type': ct } : {});
        res.end(text);
      }, (err: unknown) => {
        res.writeHead(502).end(String(err));
      });
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as AddressInfo).port,
    seen,
    close: () => new Promise<void>((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    }),
  };
}

describe.each([
  { mode: 'workers', workers: 2 },
  { mode: 'inline', workers: 0 },
])('the official Dapr JS SDK against weft ($mode)', ({ workers }) => {
  const cluster = new Cluster();
  const received: Received[] = [];
  let a: WeftNode; // serves "front", the caller-only app the DaprClient stands for
  let b: WeftNode; // serves "sdk-app" (a DaprServer, primary) and "plain" (node:http)
  let client: DaprClient;
  let server: DaprServer;
  const clients: DaprClient[] = [];

  /** The one request the plain app received since the last `beforeEach`. */
  function only(): Received {
    expect(received).toHaveLength(1);
    return received[0] as Received;
  }

  beforeAll(async () => {
    const plain = await cluster.app(recordingHandler(received));

    const sdkPort = await freePort();
    a = await cluster.node({ workers, apps: [{ appId: 'front' }] });
    b = await cluster.node({ workers, apps: [{ appId: 'sdk-app', appPort: sdkPort }, { appId: 'plain', appPort: plain.port }] });

    server = new DaprServer({
      serverHost: '127.0.0.1',
      serverPort: String(sdkPort),
      communicationProtocol: CommunicationProtocolEnum.HTTP,
      clientOptions: { daprHost: '127.0.0.1', daprPort: String(b.ports.http), communicationProtocol: CommunicationProtocolEnum.HTTP, logger: QUIET },
      logger: QUIET,
    });
    await server.invoker.listen('hello', async (data: DaprInvokerCallbackContent) => {
      const parsed = JSON.parse(data.body ?? 'null') as { name?: string };
      return {
        greeting: `hello ${parsed.name ?? '?'}`,
        caller: data.headers?.['dapr-caller-app-id'] ?? null,
        contentType: data.metadata?.contentType ?? null,
      };
    }, { method: HttpMethod.POST });
    await server.invoker.listen('status', async (data: DaprInvokerCallbackContent) => ({
      ok: true,
      query: data.query ?? null,
      caller: data.headers?.['dapr-caller-app-id'] ?? null,
    }), { method: HttpMethod.GET });
    // An SDK app calling out through its own node: the server's client, node B, then "plain".
    await server.invoker.listen('relay', async (data: DaprInvokerCallbackContent) => {
      const inner = await server.client.invoker.invoke('plain', 'json/relayed', HttpMethod.POST, JSON.parse(data.body ?? '{}') as object);
      return { relayed: inner };
    }, { method: HttpMethod.POST });
    await server.start();

    client = newClient(a.ports.http);
    clients.push(client);
  });

  afterAll(async () => {
    for (const c of clients) await c.stop().catch(() => {});
    await server?.stop().catch(() => {});
    await server?.client.stop().catch(() => {});
    await cluster.close();
  });

  beforeEach(() => {
    received.length = 0;
  });

  describe('readiness', () => {
    it('client.start() is satisfied by GET /v1.0/metadata on the first probe, with no healthz call', async () => {
      const proxy = await recorder(a.ports.http);
      const probe = newClient(proxy.port);
      clients.push(probe);
      try {
        expect(probe.getIsInitialized()).toBe(false);
        await probe.start();
        // One probe, answered 200: the recorder below sees exactly that call.
        expect(probe.getIsInitialized()).toBe(true);
        expect(proxy.seen).toEqual([{ method: 'GET', url: '/v1.0/metadata', status: 200 }]);
        expect(await probe.health.isHealthy()).toBe(true);
        expect(proxy.seen.map((s) => s.url)).toEqual(['/v1.0/metadata', '/v1.0/metadata']);
      } finally {
        await proxy.close();
      }
    });

    it('a client that was never started starts itself on its first call', async () => {
      const lazy = newClient(a.ports.http);
      clients.push(lazy);
      expect(lazy.getIsInitialized()).toBe(false);
      const out = await lazy.invoker.invoke('plain', 'json/lazy', HttpMethod.GET);
      expect(out).toMatchObject({ method: 'GET', url: '/json/lazy' });
      expect(lazy.getIsInitialized()).toBe(true);
    });

    it('metadata.get() returns weft\'s metadata for the node\'s primary app', async () => {
      const md = await client.metadata.get() as unknown as Record<string, unknown>;
      expect(md['id']).toBe('front');
      expect(typeof md['runtimeVersion']).toBe('string');
      expect(Array.isArray(md['actors'])).toBe(true);
      const sdkMd = await server.client.metadata.get() as unknown as Record<string, unknown>;
      expect(sdkMd['id']).toBe('sdk-app');
    });

    it('the SDK server started: its client is initialized against node B', () => {
      expect(server.client.getIsInitialized()).toBe(true);
    });

    it('a DaprServer started before its node waits for the node, then serves calls', async () => {
      const appPort = await freePort();
      const nodePort = await freePort();
      const late = new DaprServer({
        serverHost: '127.0.0.1',
        serverPort: String(appPort),
        communicationProtocol: CommunicationProtocolEnum.HTTP,
        clientOptions: { daprHost: '127.0.0.1', daprPort: String(nodePort), communicationProtocol: CommunicationProtocolEnum.HTTP, logger: QUIET },
        logger: QUIET,
      });
      await late.invoker.listen('ping', async (data: DaprInvokerCallbackContent) => ({ pong: data.headers?.['dapr-caller-app-id'] ?? null }), { method: HttpMethod.GET });
      try {
        let settled = false;
        const starting = late.start().finally(() => {
          settled = true;
        });
        // Nothing listens on nodePort yet: the SDK keeps polling and has not started.
        await new Promise((resolve) => setTimeout(resolve, 700));
        expect(settled).toBe(false);
        expect(late.client.getIsInitialized()).toBe(false);
        await cluster.node({ workers, apps: [{ appId: 'late-app', appPort }], extra: { http: { port: nodePort } } });
        await starting;
        expect(late.client.getIsInitialized()).toBe(true);
        expect(await client.invoker.invoke('late-app', 'ping', HttpMethod.GET)).toEqual({ pong: 'front' });
      } finally {
        await late.stop();
        await late.client.stop();
      }
    });
  });

  describe('DaprClient → weft → plain node:http app', () => {
    it('POST with a JSON body', async () => {
      const out = await client.invoker.invoke('plain', 'json/post', HttpMethod.POST, { n: 1, s: 'x', nested: { ok: true } });
      const got = only();
      expect(got.method).toBe('POST');
      expect(got.url).toBe('/json/post');
      expect(JSON.parse(got.body)).toEqual({ n: 1, s: 'x', nested: { ok: true } });
      expect(got.headers['content-type']).toBe('application/json');
      expect(got.headers['dapr-caller-app-id']).toBe('front');
      expect(got.headers['dapr-callee-app-id']).toBe('plain');
      expect(got.headers['user-agent']).toMatch(/^dapr-sdk-js\//);
      expect(out).toEqual({ method: 'POST', url: '/json/post', body: '{"n":1,"s":"x","nested":{"ok":true}}', contentType: 'application/json' });
    });

    it('POST with a text body, answered with text', async () => {
      const out = await client.invoker.invoke('plain', 'text', HttpMethod.POST, 'hello weft' as unknown as object);
      const got = only();
      expect(got.method).toBe('POST');
      expect(got.url).toBe('/text');
      expect(got.body).toBe('hello weft');
      expect(got.headers['content-type']).toBe('text/plain');
      expect(got.headers['dapr-caller-app-id']).toBe('front');
      expect(out).toBe('got POST hello weft');
    });

    it('GET with a query string in the method name and a nested path', async () => {
      const out = await client.invoker.invoke('plain', 'json/a/b?x=1&y=two%20words', HttpMethod.GET);
      const got = only();
      expect(got.method).toBe('GET');
      expect(got.url).toBe('/json/a/b?x=1&y=two%20words');
      expect(got.body).toBe('');
      expect(got.headers['dapr-caller-app-id']).toBe('front');
      expect(out).toEqual({ method: 'GET', url: '/json/a/b?x=1&y=two%20words', body: '', contentType: null });
    });

    it('PUT with a JSON body and custom headers', async () => {
      const out = await client.invoker.invoke('plain', 'json/put', HttpMethod.PUT, { v: 2 }, { headers: { 'x-request-id': 'req-7', 'x-tenant': 'acme' } });
      const got = only();
      expect(got.method).toBe('PUT');
      expect(got.url).toBe('/json/put');
      expect(JSON.parse(got.body)).toEqual({ v: 2 });
      expect(got.headers['x-request-id']).toBe('req-7');
      expect(got.headers['x-tenant']).toBe('acme');
      expect(got.headers['dapr-caller-app-id']).toBe('front');
      expect(out).toMatchObject({ method: 'PUT', body: '{"v":2}' });
    });

    it('a caller cannot spoof dapr-caller-app-id through the SDK\'s headers', async () => {
      await client.invoker.invoke('plain', 'json/spoof', HttpMethod.POST, { a: 1 }, { headers: { 'dapr-caller-app-id': 'admin' } });
      expect(only().headers['dapr-caller-app-id']).toBe('front');
    });

    it('an explicit Content-Type header chooses the serialization', async () => {
      const out = await client.invoker.invoke('plain', 'text', HttpMethod.POST, 'a,b,c' as unknown as object, { headers: { 'Content-Type': 'text/csv' } });
      const got = only();
      expect(got.headers['content-type']).toBe('text/csv');
      expect(got.body).toBe('a,b,c');
      expect(out).toBe('got POST a,b,c');
    });

    it('DELETE without a body', async () => {
      const out = await client.invoker.invoke('plain', 'json/item/42', HttpMethod.DELETE);
      const got = only();
      expect(got.method).toBe('DELETE');
      expect(got.url).toBe('/json/item/42');
      expect(got.body).toBe('');
      expect(got.headers['dapr-caller-app-id']).toBe('front');
      expect(out).toMatchObject({ method: 'DELETE', url: '/json/item/42' });
    });

    it('POST without a body (content-length: 0)', async () => {
      const out = await client.invoker.invoke('plain', 'json/nobody', HttpMethod.POST);
      const got = only();
      expect(got.method).toBe('POST');
      expect(got.body).toBe('');
      expect(got.headers['dapr-caller-app-id']).toBe('front');
      expect(out).toMatchObject({ method: 'POST', url: '/json/nobody', body: '' });
    });

    it('PATCH with a JSON body', async () => {
      const out = await client.invoker.invoke('plain', 'json/patch', HttpMethod.PATCH, { p: true });
      expect(only().method).toBe('PATCH');
      expect(out).toMatchObject({ method: 'PATCH', body: '{"p":true}' });
    });

    it('a 204 from the app comes back as an empty string', async () => {
      const out = await client.invoker.invoke('plain', 'empty', HttpMethod.POST, { x: 1 });
      expect(only().url).toBe('/empty');
      expect(out).toBe('');
    });

    it('an app error status is thrown by the SDK with the app\'s status and body', async () => {
      const err = await sdkError(() => client.invoker.invoke('plain', 'teapot', HttpMethod.GET));
      expect(only().url).toBe('/teapot');
      expect(err.status).toBe(418);
      expect(JSON.parse(err.error_msg)).toEqual({ reason: 'short and stout' });
    });

    it('an unknown app id is thrown as weft\'s 500 ERR_DIRECT_INVOKE', async () => {
      const err = await sdkError(() => client.invoker.invoke('no-such-app', 'json/x', HttpMethod.POST, { a: 1 }));
      expect(err.status).toBe(500);
      expect(err.error).toBe('Internal Server Error');
      const body = JSON.parse(err.error_msg) as { errorCode: string; message: string };
      expect(body.errorCode).toBe('ERR_DIRECT_INVOKE');
      expect(body.message).toMatch(/^failed to invoke, id: no-such-app, err: /);
      expect(received).toHaveLength(0);
    });

    it('an invalid app id (two dots) is thrown as a 400 ERR_DIRECT_INVOKE', async () => {
      const err = await sdkError(() => client.invoker.invoke('a.b.c', 'json/x', HttpMethod.GET));
      expect(err.status).toBe(400);
      expect((JSON.parse(err.error_msg) as { errorCode: string }).errorCode).toBe('ERR_DIRECT_INVOKE');
    });

    it('answers concurrent SDK calls each with its own result', async () => {
      const outs = await Promise.all(Array.from({ length: 40 }, (_, i) =>
        client.invoker.invoke('plain', `json/c${i}`, HttpMethod.POST, { i })));
      outs.forEach((out, i) => expect(out).toMatchObject({ url: `/json/c${i}`, body: `{"i":${i}}` }));
      expect(received).toHaveLength(40);
    });
  });

  describe('with an API token (DAPR_API_TOKEN)', () => {
    let guarded: WeftNode;

    beforeAll(async () => {
      guarded = await cluster.node({ workers, apps: [{ appId: 'guarded' }], extra: { apiToken: 's3cret' } });
    });

    it('the SDK sends daprApiToken on its probe and calls; weft consumes it and never forwards it', async () => {
      const log = probeLog();
      const tokenClient = new DaprClient({
        daprHost: '127.0.0.1', daprPort: String(guarded.ports.http), communicationProtocol: CommunicationProtocolEnum.HTTP,
        daprApiToken: 's3cret', logger: log.logger,
      });
      clients.push(tokenClient);
      await tokenClient.start();
      // A probe refused for want of the token would have made the SDK wait and poll again.
      expect(log.waited).toBe(false);
      const out = await tokenClient.invoker.invoke('plain', 'json/guarded', HttpMethod.POST, { t: 1 });
      const got = only();
      expect(got.headers['dapr-caller-app-id']).toBe('guarded');
      expect(got.headers['dapr-api-token']).toBeUndefined();
      expect(out).toMatchObject({ url: '/json/guarded', body: '{"t":1}' });
    });

    it('without the token the SDK\'s probe endpoint and invocation are refused, health is not', async () => {
      const md = await request(url(guarded, '/v1.0/metadata'));
      expect(md.statusCode).toBe(401);
      await md.body.text();
      const inv = await request(url(guarded, '/v1.0/invoke/plain/method/json/x'), { headers: { 'dapr-api-token': 'wrong' } });
      expect(inv.statusCode).toBe(401);
      await inv.body.text();
      const health = await request(url(guarded, '/v1.0/healthz'));
      expect(health.statusCode).toBe(204);
      await health.body.text();
      expect(received).toHaveLength(0);
    });
  });

  describe('a DaprServer app behind node B', () => {
    it('DaprClient → node A → node B → DaprServer POST method', async () => {
      const out = await client.invoker.invoke('sdk-app', 'hello', HttpMethod.POST, { name: 'weft' });
      expect(out).toEqual({ greeting: 'hello weft', caller: 'front', contentType: 'application/json' });
    });

    it('DaprClient → DaprServer GET method with a query string', async () => {
      const out = await client.invoker.invoke('sdk-app', 'status?verbose=1', HttpMethod.GET);
      expect(out).toEqual({ ok: true, query: '/status?verbose=1', caller: 'front' });
    });

    it('plain HTTP → node A → DaprServer, by path and by dapr-app-id header', async () => {
      const byPath = await request(url(a, '/v1.0/invoke/sdk-app/method/hello'), {
        method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ name: 'curl' }),
      });
      expect(byPath.statusCode).toBe(200);
      expect(await byPath.body.json()).toEqual({ greeting: 'hello curl', caller: 'front', contentType: 'application/json' });

      const byHeader = await request(url(a, '/status?x=1'), { headers: { 'dapr-app-id': 'sdk-app' } });
      expect(byHeader.statusCode).toBe(200);
      expect(await byHeader.body.json()).toEqual({ ok: true, query: '/status?x=1', caller: 'front' });
    });

    it('a method the DaprServer does not register is Express\'s 404, passed through', async () => {
      const res = await request(url(a, '/v1.0/invoke/sdk-app/method/nope'));
      expect(res.statusCode).toBe(404);
      expect(await res.body.text()).toContain('Cannot GET /nope');
      const err = await sdkError(() => client.invoker.invoke('sdk-app', 'hello', HttpMethod.GET));
      expect(err.status).toBe(404);
    });

    it('the DaprServer\'s own client calls out through node B as sdk-app', async () => {
      const out = await client.invoker.invoke('sdk-app', 'relay', HttpMethod.POST, { hop: 2 });
      const got = only();
      expect(got.url).toBe('/json/relayed');
      expect(got.headers['dapr-caller-app-id']).toBe('sdk-app');
      expect(JSON.parse(got.body)).toEqual({ hop: 2 });
      expect(out).toEqual({ relayed: { method: 'POST', url: '/json/relayed', body: '{"hop":2}', contentType: 'application/json' } });
    });
  });
});
