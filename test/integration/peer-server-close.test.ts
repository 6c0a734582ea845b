/**
 * PeerServer.close (a graceful stop) with the rest of an answer waiting for its FetchBody:
 * new calls are refused with the retryable WEFT_SHUTTING_DOWN, the waiting ticket is still
 * served whole, and the close completes (not forced) once it is. A ticket nobody fetches holds
 * the close no longer than its grace. A real peer server, a real HTTP app, a real gRPC client.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as grpc from '@grpc/grpc-js';
import { PeerServer } from '../../src/peer/server.ts';
import type { HttpAppChannel } from '../../src/appchannel/http.ts';
import {
  ERROR_CODE_KEY, PeerMethods, decodeInvokeResponse, decodeStreamFrame, encodeFetchBodyRequest, encodeInvokeRequest,
  type CallHead, type InvokeResponse, type StreamFrame,
} from '../../src/peer/codec.ts';
import { appChannel, startApp, type TestApp } from '../support/cluster.ts';

const SIZE = 1024 * 1024 + 3;
const BODY = Buffer.alloc(SIZE, 0x5a);

const head: CallHead = {
  appId: 'big', namespace: 'default', method: 'download', verb: 'GET', query: '', headers: [],
  callerAppId: 'front', callerNamespace: 'default', actorType: '', actorId: '',
};

describe('PeerServer.close with an answer\'s rest waiting for FetchBody', () => {
  let app: TestApp;
  let channel: HttpAppChannel;
  const opened: Array<{ server: PeerServer; client: grpc.Client }> = [];

  beforeAll(async () => {
    app = await startApp((req, res) => {
      req.resume();
      res.writeHead(200, { 'content-length': String(SIZE) }).end(BODY);
    });
    channel = appChannel('big', app);
  });

  afterAll(async () => {
    for (const o of opened) {
      o.client.close();
      await o.server.close(0);
    }
    await channel.close();
    await app.close();
  });

  async function serve(): Promise<{ server: PeerServer; client: grpc.Client }> {
    const server = new PeerServer({
      lookup: (appId) => (appId === 'big' ? channel : undefined),
      authorize: (_call, h) => ({ appId: h.callerAppId, namespace: h.callerNamespace }),
    });
    const port = await server.bind('127.0.0.1', 0);
    const o = { server, client: new grpc.Client(`127.0.0.1:${port}`, grpc.credentials.createInsecure()) };
    opened.push(o);
    return o;
  }

  function invoke(client: grpc.Client): Promise<InvokeResponse> {
    return new Promise((resolve, reject) => {
      client.makeUnaryRequest(PeerMethods.invoke, encodeInvokeRequest, decodeInvokeResponse, { head, body: new Uint8Array(0) }, new grpc.Metadata(), { deadline: Date.now() + 30_000 },
        (err, res) => (err !== null || res === undefined ? reject(err) : resolve(res)));
    });
  }

  function fetchRest(client: grpc.Client, ticket: string): Promise<Buffer> {
    return new Promise((resolve, reject) => {
      const call = client.makeServerStreamRequest(PeerMethods.fetchBody, encodeFetchBodyRequest, decodeStreamFrame, { ticket }, new grpc.Metadata(), { deadline: Date.now() + 30_000 });
      const parts: Buffer[] = [];
      call.on('data', (f: StreamFrame) => parts.push(Buffer.from(f.data)));
      call.on('error', reject);
      call.on('end', () => resolve(Buffer.concat(parts)));
    });
  }

  it('refuses new calls as shutting down, serves the waiting ticket whole, then closes gracefully', async () => {
    const { server, client } = await serve();
    const first = await invoke(client);
    expect(first.status).toBe(200);
    expect(first.bodyTicket).not.toBe('');
    const closed = server.close(20_000);
    // a new call: refused, retryable, never reached the app
    const seenBefore = app.seen.length;
    const refused = await invoke(client).then(() => null, (err: grpc.ServiceError) => err);
    expect(refused?.code).toBe(grpc.status.UNAVAILABLE);
    expect(refused?.metadata.get(ERROR_CODE_KEY)[0]).toBe('WEFT_SHUTTING_DOWN');
    expect(app.seen.length).toBe(seenBefore);
    // the answer already begun: its rest still comes, whole
    const rest = await fetchRest(client, first.bodyTicket);
    expect(Buffer.concat([Buffer.from(first.body), rest]).equals(BODY)).toBe(true);
    expect(await closed).toBe(true);
  });

  it('a ticket nobody fetches holds the close only until its grace, which then reports it was forced', async () => {
    const { server, client } = await serve();
    const first = await invoke(client);
    expect(first.bodyTicket).not.toBe('');
    expect(await server.close(300)).toBe(false);
    const gone = await fetchRest(client, first.bodyTicket).then(() => null, (err: grpc.ServiceError) => err);
    expect(gone?.code).toBe(grpc.status.UNAVAILABLE);
  });
});
