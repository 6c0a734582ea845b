/**
 * A streamed request (Peer/InvokeStream) whose caller's stream half-closes before the frame
 * marking the body's end: the caller cancelled. grpc-js cancels with Node's
 * Http2Stream.close(CANCEL), which sends END_STREAM before RST_STREAM, so the far node sees
 * the request side end cleanly first, and on a busy host the reset arrives well after. The
 * call must count as cancelled (not as a served error) and the app must never get the cut body
 * as a complete one.
 *
 * These tests make the ordering deterministic: the caller half-closes without `end` and never
 * sends the reset. A real peer server, a real HTTP app, a real gRPC client; all on port 0.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { IncomingMessage } from 'node:http';
import * as grpc from '@grpc/grpc-js';
import { PeerServer } from '../../src/peer/server.ts';
import type { HttpAppChannel } from '../../src/appchannel/http.ts';
import { WeftError } from '../../src/errors.ts';
import { ERROR_CODE_KEY, PeerMethods, decodeStreamFrame, encodeStreamFrame, type CallHead, type StreamFrame } from '../../src/peer/codec.ts';
import { appChannel, startApp, type TestApp } from '../support/cluster.ts';

/** What the app saw of one request: its body, and whether it arrived complete. */
interface Seen {
  body: string;
  complete: boolean;
}

describe('InvokeStream: a request stream cut before its end frame', () => {
  let app: TestApp;
  let channel: HttpAppChannel;
  let server: PeerServer;
  let client: grpc.Client;
  /** Each request the app took, resolved when its request ends or is torn down. */
  let seen: Promise<Seen>;
  let arrived: Promise<void>;
  /** Told the outcome of the current call as the server's onCall hook reports it. */
  let outcome: (v: number | string) => void = () => {};

  function expectRequest(): void {
    let done!: (s: Seen) => void;
    let came!: () => void;
    seen = new Promise((r) => (done = r));
    arrived = new Promise((r) => (came = r));
    current = { done, came };
  }
  let current: { done: (s: Seen) => void; came: () => void } | undefined;

  beforeAll(async () => {
    app = await startApp((req: IncomingMessage, res) => {
      const mine = current as NonNullable<typeof current>;
      let body = '';
      req.setEncoding('utf8');
      req.on('data', (c: string) => {
        body += c;
        mine.came();
      });
      req.on('end', () => {
        mine.done({ body, complete: true });
        res.end(`got ${body.length}`);
      });
      req.on('close', () => {
        if (!req.complete) mine.done({ body, complete: false });
      });
    });
    channel = appChannel('sink', app);
    server = new PeerServer({
      lookup: (appId) => (appId === 'sink' ? channel : undefined),
      authorize: (_call, head) => ({ appId: head.callerAppId, namespace: head.callerNamespace }),
      onCall: (_head, status) => {
        const v = typeof status === 'number' ? status : (status as WeftError).code;
        outcome(v);
      },
    });
    const port = await server.bind('127.0.0.1', 0);
    client = new grpc.Client(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
  });

  afterAll(async () => {
    client.close();
    await server.close(1000);
    await channel.close();
    await app.close();
  });

  const head = (headers: string[]): CallHead => ({
    appId: 'sink', namespace: 'default', method: 'upload', verb: 'POST', query: '', headers,
    callerAppId: 'front', callerNamespace: 'default', actorType: '', actorId: '',
  });

  /** Opens a call; resolves with its gRPC status and the answer's status, if any. */
  function open(): { call: grpc.ClientDuplexStream<StreamFrame, StreamFrame>; done: Promise<{ code: grpc.status; weftCode: string; status: number; text: string }> } {
    const call = client.makeBidiStreamRequest(PeerMethods.invokeStream, encodeStreamFrame, decodeStreamFrame, new grpc.Metadata(), { deadline: Date.now() + 30_000 });
    const done = new Promise<{ code: grpc.status; weftCode: string; status: number; text: string }>((resolve) => {
      let status = 0;
      let text = '';
      call.on('data', (f: StreamFrame) => {
        if (f.status !== 0) status = f.status;
        text += Buffer.from(f.data).toString();
      });
      call.on('error', () => {});
      call.on('status', (s: grpc.StatusObject) => resolve({ code: s.code, weftCode: String(s.metadata.get(ERROR_CODE_KEY)[0] ?? ''), status, text }));
    });
    return { call, done };
  }

  function nextOutcome(): Promise<number | string> {
    return new Promise((r) => (outcome = r));
  }

  it.each([
    { form: 'with a content-length', headers: ['content-length', '100000'] },
    // no length: the app channel sends it chunked (a caller node never forwards transfer-encoding)
    { form: 'chunked', headers: [] },
  ])('$form: counts as cancelled, and the app never gets the cut body as complete', async ({ headers }) => {
    expectRequest();
    const counted = nextOutcome();
    const { call, done } = open();
    call.write({ call: head(headers), status: 0, headers: [], data: Buffer.from('first part;'), endMarked: true });
    await arrived;
    call.write({ call: null, status: 0, headers: [], data: Buffer.from('second part;') });
    // the request side ends with no frame marking the body's end, and no reset follows
    call.end();
    expect(await counted).toBe('WEFT_CANCELLED');
    expect((await seen).complete).toBe(false);
    const res = await done;
    expect(res.code).toBe(grpc.status.CANCELLED);
    expect(res.weftCode).toBe('WEFT_CANCELLED');
  });

  it('a body whose last frame carries `end` reaches the app whole, and the answer comes back', async () => {
    expectRequest();
    const counted = nextOutcome();
    const { call, done } = open();
    call.write({ call: head([]), status: 0, headers: [], data: Buffer.from('first part;'), endMarked: true });
    call.write({ call: null, status: 0, headers: [], data: Buffer.from('second part;') });
    call.end({ call: null, status: 0, headers: [], data: Buffer.from('last'), end: true });
    expect(await seen).toEqual({ body: 'first part;second part;last', complete: true });
    expect(await counted).toBe(200);
    expect(await done).toMatchObject({ code: grpc.status.OK, status: 200, text: 'got 27' });
  });

  it('an end frame with no data (the usual end) also completes the body', async () => {
    expectRequest();
    const counted = nextOutcome();
    const { call, done } = open();
    call.write({ call: head(['content-length', '4']), status: 0, headers: [], data: Buffer.from('abcd'), endMarked: true });
    call.end({ call: null, status: 0, headers: [], data: new Uint8Array(0), end: true });
    expect(await seen).toEqual({ body: 'abcd', complete: true });
    expect(await counted).toBe(200);
    expect(await done).toMatchObject({ code: grpc.status.OK, status: 200, text: 'got 4' });
  });

  it('a caller from before `end` (no endMarked on its first frame): its half-close still ends the body', async () => {
    expectRequest();
    const counted = nextOutcome();
    const { call, done } = open();
    call.write({ call: head(['content-length', '9']), status: 0, headers: [], data: Buffer.from('old ') });
    call.write({ call: null, status: 0, headers: [], data: Buffer.from('peer!') });
    call.end();
    expect(await seen).toEqual({ body: 'old peer!', complete: true });
    expect(await counted).toBe(200);
    expect(await done).toMatchObject({ code: grpc.status.OK, status: 200, text: 'got 9' });
  });
});
