/**
 * How the outbound side hands a whole answer's body back. From a pool's worker it crosses to the
 * main thread, so it must be an exact-size ArrayBuffer of its own (transferred, never a view of
 * a bigger buffer). Inline (`sameThread`) nothing crosses, so the bytes as they came off the
 * peer stream are handed over as a view, with no copy; either way the caller gets the same bytes.
 * A real peer server in front of a real HTTP app, called over a real gRPC connection.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PeerServer } from '../../src/peer/server.ts';
import type { HttpAppChannel } from '../../src/appchannel/http.ts';
import { Outbound } from '../../workers/outbound.ts';
import { bodyBuffer, type InvokeTask, type PeerAddress } from '../../workers/protocol.ts';
import { appChannel, startApp, type TestApp } from '../support/cluster.ts';

const ANSWER = Buffer.from(Array.from({ length: 3000 }, (_, i) => i % 251));

describe('a whole answer handed back by the outbound side', () => {
  let app: TestApp;
  let channel: HttpAppChannel;
  let server: PeerServer;
  let peer: PeerAddress;

  beforeAll(async () => {
    app = await startApp((req, res) => {
      req.resume();
      res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': String(ANSWER.length) }).end(ANSWER);
    });
    channel = appChannel('svc', app);
    server = new PeerServer({
      lookup: (appId) => (appId === 'svc' ? channel : undefined),
      authorize: (_call, h) => ({ appId: h.callerAppId, namespace: h.callerNamespace }),
    });
    peer = { nodeId: 'b', address: '127.0.0.1', port: await server.bind('127.0.0.1', 0) };
  });

  afterAll(async () => {
    await server.close(0);
    await channel.close();
    await app.close();
  });

  const task = (): InvokeTask => ({
    type: 'invoke', routingVersion: 1, appId: 'svc', namespace: 'default', callerAppId: 'front', callerNamespace: 'default',
    method: 'get', verb: 'GET', query: '', headers: [], body: null, port: null, deadline: Date.now() + 10_000,
  });

  async function answer(sameThread: boolean): Promise<ArrayBuffer | Uint8Array> {
    const outbound = new Outbound({ tls: false, sameThread });
    try {
      outbound.setSnapshot({ version: 1, apps: { 'default/svc': [peer] } });
      const result = await outbound.invoke(task());
      if (result.type !== 'response' || result.body === null) throw new Error(`expected a whole answer, got ${JSON.stringify(result)}`);
      expect(result.head.status).toBe(200);
      return result.body;
    } finally {
      outbound.close();
    }
  }

  it('for a worker: an exact-size ArrayBuffer of its own, fit to transfer', async () => {
    const body = await answer(false);
    expect(body).toBeInstanceOf(ArrayBuffer);
    expect(body.byteLength).toBe(ANSWER.length);
    expect(bodyBuffer(body).equals(ANSWER)).toBe(true);
  });

  it('inline: the received bytes themselves, not a copy', async () => {
    const body = await answer(true);
    expect(body).toBeInstanceOf(Uint8Array);
    const buf = bodyBuffer(body);
    expect(buf.equals(ANSWER)).toBe(true);
    // bodyBuffer is a view over the same memory: a write through it shows in the original
    const view = body as Uint8Array;
    buf[0] = (ANSWER[0] as number) ^ 0xff;
    expect(view[0]).toBe((ANSWER[0] as number) ^ 0xff);
  });
});
