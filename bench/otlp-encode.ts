/**
 * The OTLP encoder alone: µs of CPU to encode node A's two spans of one call (the HTTP ingress
 * span and the peer attempt span, with the attributes weft gives them) into an export chunk,
 * the least of five rounds. No sockets, no export: the encoding's own cost.
 *
 *   node bench/otlp-encode.ts [--calls 200000]
 *
 * The spans are plain objects with both `endTime` and the older `end`, so the same file run
 * from an older checkout's bench/ measures that checkout's encoder.
 */
import { parseArgs } from 'node:util';
import { SpanChunk } from '../src/observability/tracing-otlp.ts';
import type { SpanData } from '../workers/protocol.ts';

const { values } = parseArgs({ options: { calls: { type: 'string', default: '200000' } } });
const CALLS = Number(values.calls);
const now = Date.now();
const traceId = '4bf92f3577b34da6a3ce929d0e0e4736';

const ingress = {
  traceId, spanId: '00f067aa0ba902b7', parentSpanId: 'a0b1c2d3e4f5a6b7', traceState: '', name: 'POST /v1.0/invoke/{appId}/method/{method}', kind: 1,
  start: now + 0.123, end: now + 1.456, endTime: now + 1.456, events: null, status: 0, message: '',
  attributes: {
    'http.request.method': 'POST', 'http.route': '/v1.0/invoke/{appId}/method/{method}', 'url.path': '/v1.0/invoke/testapp/method/test', 'url.scheme': 'http',
    'client.address': '127.0.0.1', 'weft.app_id': 'testapp', 'weft.method': 'test', 'weft.caller.app_id': 'loadgen', 'http.response.status_code': 200,
  },
} as SpanData;
const attempt = {
  traceId, spanId: '1111222233334444', parentSpanId: '00f067aa0ba902b7', traceState: '', name: 'weft.peer.v1.Peer/Mux', kind: 2,
  start: now + 0.2, end: now + 1.3, endTime: now + 1.3, events: null, status: 0, message: '',
  attributes: {
    'rpc.system': 'grpc', 'rpc.service': 'weft.peer.v1.Peer', 'rpc.method': 'Mux', 'server.address': '127.0.0.1', 'server.port': 50002,
    'weft.peer.node_id': 'node-b', 'weft.attempt': 1, 'http.response.status_code': 200,
  },
} as SpanData;

let best = Infinity;
let chunk = new SpanChunk(0);
for (let round = 0; round < 5; round++) {
  const t0 = process.cpuUsage();
  for (let i = 0; i < CALLS; i++) {
    // a chunk holds one export's worth (512 spans), as the node's do
    if (chunk.count >= 512) chunk = new SpanChunk(0);
    chunk.add(attempt);
    chunk.add(ingress);
  }
  const d = process.cpuUsage(t0);
  best = Math.min(best, (d.user + d.system) / CALLS);
}
process.stdout.write(`OTLP encoding of node A's two spans of a call: ${best.toFixed(2)} µs of CPU (the least of 5 rounds of ${CALLS}), ${(chunk.bytes / chunk.count).toFixed(0)} bytes a span\n`);
