/**
 * Flow control of gRPC proxy mode end to end, with the two nodes as real processes (`weft run`,
 * mTLS between them) so each node's memory can be read on its own (Linux /proc; skipped
 * elsewhere, said below):
 * - a 100 MiB bidirectional stream (64 KiB messages, echoed by the app) arrives whole and in
 *   order, and neither node's resident memory grows by more than a bound far below the stream;
 * - a client that stops reading stalls its own writer after a bounded amount: nothing is queued
 *   without bound on either node; once it reads again, every byte arrives.
 */
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connect } from 'node:http2';
import * as grpc from '@grpc/grpc-js';
import { ProcessGroup, type NodeProcess } from '../support/processes.ts';
import { StreamsClient, startStreamsApp, type StreamsApp } from '../support/streams-app.ts';

const MESSAGE = 64 * 1024;
const TOTAL = 100 * 1024 * 1024;
/** Growth of one node's resident memory allowed while 100 MiB pass through it each way. */
const RSS_GROWTH_LIMIT = 64 * 1024 * 1024;
/** What a client that does not read may get written before its writer stalls. */
const STALL_LIMIT = 32 * 1024 * 1024;

type Streams = InstanceType<typeof StreamsClient> & Record<string, (...args: unknown[]) => grpc.Call>;

function rssOf(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m === null ? 0 : Number(m[1]) * 1024;
}

/** Samples the peak resident memory of some processes until stopped. */
function sampler(pids: number[]): { stop(): number[] } {
  const peaks = pids.map(rssOf);
  const timer = setInterval(() => {
    pids.forEach((pid, i) => {
      peaks[i] = Math.max(peaks[i] as number, rssOf(pid));
    });
  }, 25);
  return {
    stop() {
      clearInterval(timer);
      return peaks;
    },
  };
}

function grpcPort(node: NodeProcess): number {
  return (node.ready as unknown as { grpc: number }).grpc;
}

function bidi(client: Streams): grpc.ClientDuplexStream<Buffer, Buffer> {
  const md = new grpc.Metadata();
  md.set('dapr-app-id', 'streams');
  return (client['Bidi'] as (m: grpc.Metadata) => grpc.ClientDuplexStream<Buffer, Buffer>).call(client, md);
}

/** Writes `total` bytes in messages numbered by their first byte, honouring backpressure; reads the echoes. */
async function roundTrip(client: Streams, total: number): Promise<{ bytes: number; inOrder: boolean }> {
  const call = bidi(client);
  let bytes = 0;
  let next = 0;
  let inOrder = true;
  call.on('data', (m: Buffer) => {
    if (m[0] !== next % 256) inOrder = false;
    next++;
    bytes += m.length;
  });
  const ended = new Promise<grpc.StatusObject>((resolve) => call.on('status', resolve));
  call.on('error', () => {});
  for (let sent = 0, i = 0; sent < total; sent += MESSAGE, i++) {
    if (!call.write(Buffer.alloc(MESSAGE, i % 256))) await new Promise((r) => call.once('drain', r));
  }
  call.end();
  const status = await ended;
  expect(status.code).toBe(grpc.status.OK);
  return { bytes, inOrder };
}

const linux = existsSync('/proc/self/status');

// Resident memory per process is read from /proc: Linux only.
describe.skipIf(!linux)('gRPC proxy mode: flow control across two node processes', () => {
  const dir = mkdtempSync(join(tmpdir(), 'weft-proxy-flow-'));
  const registry = join(dir, 'registry.sqlite');
  const group = new ProcessGroup();
  let app: StreamsApp;
  let a: NodeProcess;
  let b: NodeProcess;
  let client: Streams;

  beforeAll(async () => {
    app = await startStreamsApp();
    const ports = ['--http-port', '0', '--grpc-port', '0', '--peer-port', '0', '--metrics-port', '0', '--registry', registry, '--log-level', 'warn'];
    b = await group.node(['run', '--app-id', 'streams', '--app-port', String(app.port), '--app-protocol', 'grpc', ...ports]);
    a = await group.node(['run', '--app-id', 'front', ...ports]);
    client = new StreamsClient(`127.0.0.1:${grpcPort(a)}`, grpc.credentials.createInsecure()) as Streams;
    // until node A knows where "streams" is
    for (let i = 0; i < 100; i++) {
      const { bytes } = await roundTrip(client, MESSAGE).catch(() => ({ bytes: 0 }));
      if (bytes === MESSAGE) break;
      await new Promise((r) => setTimeout(r, 100));
    }
  }, 60_000);

  afterAll(async () => {
    client?.close();
    await group.close();
    await app?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('a client that stops reading stalls its writer after a bounded amount; reading again, every byte arrives', async () => {
    // A raw HTTP/2 client speaking gRPC's framing: grpc-js's own client keeps reading into its
    // memory while its stream is paused, so it could not show where the nodes stop the writer.
    const session = connect(`http://127.0.0.1:${grpcPort(a)}`);
    session.on('error', () => {});
    const stream = session.request({
      ':method': 'POST', ':path': '/weft.test.Streams/Bidi', 'content-type': 'application/grpc', te: 'trailers', 'dapr-app-id': 'streams',
    });
    stream.pause();
    let written = 0;
    let acked = 0;
    let progress = Date.now();
    const frame = (i: number): Buffer => {
      const f = Buffer.alloc(5 + MESSAGE, i % 256);
      f[0] = 0;
      f.writeUInt32BE(MESSAGE, 1);
      return f;
    };
    // keep up to 4 MiB unacknowledged; stop when nothing is acknowledged for a second
    for (let i = 0; written < TOTAL; i++) {
      while (written - acked >= 4 * 1024 * 1024 && Date.now() - progress < 1000) await new Promise((r) => setTimeout(r, 20));
      if (written - acked >= 4 * 1024 * 1024) break;
      written += MESSAGE;
      stream.write(frame(i), () => {
        acked += MESSAGE;
        progress = Date.now();
      });
    }
    const pids = [a.child.pid as number, b.child.pid as number];
    console.log(`a client that does not read got ${(acked / 1048576).toFixed(1)} MiB taken before its writer stalled; RSS node A ${(rssOf(pids[0]!) / 1048576).toFixed(0)} MiB, node B ${(rssOf(pids[1]!) / 1048576).toFixed(0)} MiB`);
    expect(acked).toBeLessThan(STALL_LIMIT);
    // reading again: every message comes back
    let received = 0;
    stream.on('data', (d: Buffer) => {
      received += d.length;
    });
    const trailers = new Promise<Record<string, unknown>>((resolve) => stream.on('trailers', (t) => resolve(t)));
    stream.resume();
    stream.end();
    const t = await trailers;
    expect(t['grpc-status']).toBe('0');
    expect(received).toBe((written / MESSAGE) * (MESSAGE + 5));
    session.close();
  }, 120_000);

  it('a 100 MiB bidirectional stream arrives whole and in order; neither node\'s memory grows with it', async () => {
    // warm up: connections, TLS, buffers of a first stream
    await roundTrip(client, 8 * 1024 * 1024);
    const pids = [a.child.pid as number, b.child.pid as number];
    const base = pids.map(rssOf);
    const peaks = sampler(pids);
    const { bytes, inOrder } = await roundTrip(client, TOTAL);
    const peak = peaks.stop();
    expect(bytes).toBe(TOTAL);
    expect(inOrder).toBe(true);
    const growth = peak.map((p, i) => p - (base[i] as number));
    console.log(`100 MiB through two nodes: RSS growth node A ${(growth[0]! / 1048576).toFixed(1)} MiB, node B ${(growth[1]! / 1048576).toFixed(1)} MiB (limit ${RSS_GROWTH_LIMIT / 1048576} MiB)`);
    for (const g of growth) expect(g).toBeLessThan(RSS_GROWTH_LIMIT);
  }, 180_000);

});
