/**
 * gRPC proxy mode under load, two nodes with mTLS between them and a real grpc-js app.
 *
 * What went wrong: the receiving node read and parsed the calling node's client certificate for
 * every proxied stream (and every invocation), ~1 ms of CPU each. Node B then served a few
 * hundred proxied calls a second, fell behind under a burst, stalled its event loop for
 * seconds (its registration lapsed, so node A answered UNAVAILABLE "no instance" to every call
 * while the backlog lasted), and streams whose connection had been torn down meanwhile failed
 * reading the certificate of a closed socket ("Cannot read properties of null (reading 'raw')"),
 * reported as refused peer calls. Now the identity is read once per connection, and a closed
 * connection fails only its own stream, as cancelled.
 */
import { TLSSocket } from 'node:tls';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import * as grpc from '@grpc/grpc-js';
import { pino } from 'pino';
import type { WeftNode } from '../../src/node.ts';
import type { Logger } from '../../src/observability/log.ts';
import { Cluster, echoHandler, type TestApp } from '../support/cluster.ts';
import { StreamsClient, startStreamsApp, type StreamsApp } from '../support/streams-app.ts';

type Streams = InstanceType<typeof StreamsClient> & Record<string, (...args: unknown[]) => grpc.Call>;

function proxied(client: Streams, deadlineMs: number): Promise<grpc.ServiceError | null> {
  const md = new grpc.Metadata();
  md.set('dapr-app-id', 'streams');
  return new Promise((resolve) => {
    (client['Unary'] as (r: Buffer, m: grpc.Metadata, o: grpc.CallOptions, cb: (e: grpc.ServiceError | null) => void) => void)
      .call(client, Buffer.alloc(1024, 7), md, { deadline: Date.now() + deadlineMs }, (e) => resolve(e));
  });
}

describe('gRPC proxy mode under load (mTLS)', () => {
  const cluster = new Cluster();
  const warnings: Array<Record<string, unknown>> = [];
  let app: StreamsApp;
  let echo: TestApp;
  let a: WeftNode;
  let b: WeftNode;

  beforeAll(async () => {
    app = await startStreamsApp();
    echo = await cluster.app(echoHandler('echo'));
    const logger = pino({ level: 'warn' }, { write: (line: string) => void warnings.push(JSON.parse(line) as Record<string, unknown>) }) as unknown as Logger;
    b = await cluster.node({
      workers: 0, logger,
      apps: [{ appId: 'streams', appPort: app.port, appProtocol: 'grpc' }, { appId: 'echo', appPort: echo.port }],
    });
    a = await cluster.node({ workers: 0, apps: [{ appId: 'front' }] });
    const probe = new StreamsClient(`127.0.0.1:${a.ports.grpc}`, grpc.credentials.createInsecure()) as Streams;
    try {
      // until node A knows where "streams" is
      for (let i = 0; i < 100 && (await proxied(probe, 5000)) !== null; i++) await new Promise((r) => setTimeout(r, 100));
    } finally {
      probe.close();
    }
  });

  afterEach(() => {
    vi.restoreAllMocks();
  });

  afterAll(async () => {
    await cluster.close();
    await app?.close();
  });

  it('reads the calling node\'s certificate once per connection, not once per proxied stream or invocation', async () => {
    const client = new StreamsClient(`127.0.0.1:${a.ports.grpc}`, grpc.credentials.createInsecure()) as Streams;
    // Warm up: every connection this test uses is open before counting starts.
    expect(await proxied(client, 10_000)).toBeNull();
    const warm = await fetch(`http://127.0.0.1:${a.ports.http}/v1.0/invoke/echo/method/warm`, { method: 'POST', body: 'x' });
    expect(warm.status).toBe(200);
    await warm.text();

    const reads = vi.spyOn(TLSSocket.prototype, 'getPeerCertificate');
    const calls = 200;
    for (let i = 0; i < calls; i += 20) {
      const batch = await Promise.all(Array.from({ length: 20 }, () => proxied(client, 10_000)));
      expect(batch.filter((e) => e !== null)).toEqual([]);
    }
    for (let i = 0; i < 50; i++) {
      const res = await fetch(`http://127.0.0.1:${a.ports.http}/v1.0/invoke/echo/method/x${i}`, { method: 'POST', body: 'x' });
      expect(res.status).toBe(200);
      await res.text();
    }
    client.close();
    // 250 calls on already open connections. Before: one certificate read per call (≥ 250).
    // Now: none, or a few if a connection was replaced meanwhile (each new one reads once per side).
    expect(reads.mock.calls.length).toBeLessThanOrEqual(8);
  });

  it('a burst of proxied calls over many connections, deadlines passing mid-flight, leaves every later proxied call working', async () => {
    // 32 connections to node A, 256 calls in flight, short deadlines: A and B cancel streams
    // (RST_STREAM) as fast as they open them. Bounded: 6000 calls or 8 s, whichever comes first.
    const clients = Array.from({ length: 32 }, () => new StreamsClient(`127.0.0.1:${a.ports.grpc}`, grpc.credentials.createInsecure(), { 'grpc.use_local_subchannel_pool': 1 }) as Streams);
    const stopAt = Date.now() + 8000;
    let sent = 0;
    await Promise.all(Array.from({ length: 256 }, async (_, i) => {
      const client = clients[i % clients.length] as Streams;
      while (sent < 6000 && Date.now() < stopAt) {
        sent++;
        await proxied(client, 50 + (sent % 4) * 100);
      }
    }));
    for (const c of clients) c.close();

    // Later calls, on a fresh connection: the nodes recover by themselves (a backlog drains, a
    // dropped connection is made again), then every call succeeds.
    const client = new StreamsClient(`127.0.0.1:${a.ports.grpc}`, grpc.credentials.createInsecure()) as Streams;
    try {
      let last: grpc.ServiceError | null = null;
      for (let i = 0; i < 100; i++) {
        last = await proxied(client, 5000);
        if (last === null) break;
        await new Promise((r) => setTimeout(r, 200));
      }
      expect(last?.details ?? null).toBeNull();
      const after = await Promise.all(Array.from({ length: 50 }, () => proxied(client, 10_000)));
      expect(after.map((e) => e?.details ?? null)).toEqual(Array.from({ length: 50 }, () => null));
    } finally {
      client.close();
    }
    // No call was refused as if its caller were unknown: a connection that closed under a
    // stream is that stream's end, not an authentication failure.
    expect(warnings.filter((w) => w['msg'] === 'peer call refused')).toEqual([]);
    const denied = (await b.metrics.registry.getSingleMetric('weft_access_control_total')?.get())?.values.filter((v) => v.labels['action'] === 'deny' && v.value > 0);
    expect(denied ?? []).toEqual([]);
  }, 60_000);
});
