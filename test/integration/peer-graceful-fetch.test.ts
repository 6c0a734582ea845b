/**
 * A node stopping gracefully while an answer it has begun is in flight: the rest of the answer
 * (fetched with Peer/FetchBody: an answer over 256 KiB, or a chunked one still streaming after
 * the node's 10 ms chunk wait) must still reach the caller whole. Its head has gone to the
 * client already, so nothing can be retried: before, a stopping node refused every new gRPC
 * call, FetchBody included, and the client saw its answer cut ("other side closed").
 *
 * Ordering without sleeps: the app holds its answer until node B's stop has begun (B's HTTP
 * listener, closed in the same turn as its peer server starts closing, refuses connections),
 * and a chunked answer's rest until the client has its head.
 */
import { createHash } from 'node:crypto';
import { connect } from 'node:net';
import { describe, expect, it } from 'vitest';
import { request } from 'undici';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { Cluster, url } from '../support/cluster.ts';

const SIZE = 3 * 1024 * 1024 + 17;

function pattern(size: number): Buffer {
  const b = Buffer.alloc(size);
  for (let i = 0; i < size; i++) b[i] = (i * 31 + 7) & 0xff;
  return b;
}
const BODY = pattern(SIZE);
const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

function deferred(): { promise: Promise<void>; resolve: () => void } {
  let resolve!: () => void;
  const promise = new Promise<void>((r) => (resolve = r));
  return { promise, resolve };
}

/** Resolves once nothing listens on `port` (bounded: a broken build fails, never hangs). */
async function untilRefused(port: number): Promise<void> {
  for (let i = 0; i < 400; i++) {
    const refused = await new Promise<boolean>((resolve) => {
      const s = connect(port, '127.0.0.1');
      s.once('connect', () => {
        s.destroy();
        resolve(false);
      });
      s.once('error', () => resolve(true));
    });
    if (refused) return;
    await new Promise((r) => setTimeout(r, 10));
  }
  throw new Error(`port ${port} still accepts connections`);
}

describe.each([
  { mode: 'inline', workers: 0 },
  { mode: 'workers', workers: 2 },
])('graceful stop with an answer in flight ($mode)', ({ workers }) => {
  it.each([
    { form: 'over 256 KiB with a content-length', chunked: false },
    { form: 'chunked, its rest sent after the head reached the client', chunked: true },
  ])('the caller gets the whole answer ($form); the stop is not forced', async ({ chunked }) => {
    const cluster = new Cluster();
    try {
      const arrived = deferred();
      const answer = deferred();
      const rest = deferred();
      const app = await cluster.app((req: IncomingMessage, res: ServerResponse) => {
        req.resume();
        if (req.url?.startsWith('/dapr/') === true) return void res.writeHead(404).end();
        arrived.resolve();
        void (async () => {
          await answer.promise;
          if (!chunked) {
            res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': String(SIZE) });
            res.end(BODY);
            return;
          }
          res.writeHead(200, { 'content-type': 'application/octet-stream' });
          res.write(BODY.subarray(0, 1000));
          await rest.promise;
          res.end(BODY.subarray(1000));
        })();
      });
      const a = await cluster.node({ workers, apps: [{ appId: 'front' }] });
      const b = await cluster.node({ workers, apps: [{ appId: 'big', appPort: app.port }], extra: { timeouts: { shutdown: '20s' } } });

      const pending = request(url(a, '/v1.0/invoke/big/method/download'));
      await arrived.promise;
      const stopped = b.stop();
      await untilRefused(b.ports.http);
      answer.resolve();
      const res = await pending;
      expect(res.statusCode).toBe(200);
      const chunks: Buffer[] = [];
      let first = true;
      for await (const c of res.body) {
        chunks.push(c as Buffer);
        if (first) {
          first = false;
          rest.resolve();
        }
      }
      const got = Buffer.concat(chunks);
      expect(got.length).toBe(SIZE);
      expect(sha(got)).toBe(sha(BODY));
      expect(await stopped).toEqual({ forced: [] });
    } finally {
      await cluster.close();
    }
  });
});
