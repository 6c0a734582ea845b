/**
 * What tracing adds to one call's CPU on each node, measured in isolation (no sockets on the
 * call's path, so the figure is not lost in the noise of a two-node run on shared cores): the
 * work of weft's tracing hooks for one invocation on node A (ingress span, the task's context,
 * the attempt span and the head it goes into, the answer's traceparent) and on node B (peer
 * server span, app call span, the app's headers), plus the export of the finished spans: encoded
 * as OTLP protobuf as they finish (src/observability/tracing-otlp.ts) and sent by the real
 * OTLP http/protobuf transport to a sink in a process of its own (its CPU is not the node's).
 *
 *   node bench/tracing-cost.ts [--calls 100000] [--json] [--no-export]
 *
 * Prints µs of CPU per call per node for tracing off, at 1% and at 100% sampling, and
 * "unsampled": tracing at 100% (parent-based) for calls whose caller sent an unsampled parent
 * (`-00`), what an unsampled call costs with tracing on. The "off" figure is what the hooks cost
 * when tracing is not configured: the checks each stage makes.
 */
import { spawn } from 'node:child_process';
import type { IncomingMessage } from 'node:http';
import { createInterface } from 'node:readline';
import { parseArgs } from 'node:util';
import { Registry } from 'prom-client';
import { OFF, Tracer, sampledFlag, type Span } from '../src/observability/tracing.ts';
import { answerHeaders, appCallSpan, endAppCall, endIngress, httpIngressSpan, peerServerSpan, propagate, withTraceContext } from '../src/observability/tracing-spans.ts';
import { OutboundTrace, untraced } from '../src/observability/tracing-outbound.ts';
import { TraceExport, createExporter, nodeResource } from '../src/observability/tracing-export.ts';
import { tracingConfig } from '../src/observability/tracing-config.ts';
import type { InvokeTask, PeerAddress } from '../workers/protocol.ts';
import type { CallHead } from '../src/peer/codec.ts';

const { values } = parseArgs({ options: { calls: { type: 'string', default: '100000' }, json: { type: 'boolean', default: false }, 'no-export': { type: 'boolean', default: false } } });
/** --no-export: finished spans go nowhere (the hooks' own cost, without the exporter's). */
const NO_EXPORT = values['no-export'];
const CALLS = Number(values.calls);
const ROUNDS = 3;

const HEADERS = ['content-type', 'application/octet-stream', 'x-forwarded-for', '127.0.0.1', 'x-forwarded-host', '127.0.0.1:3500', 'x-forwarded-proto', 'http'];
const req = {
  method: 'POST', url: '/v1.0/invoke/testapp/method/test', headers: { 'content-type': 'application/octet-stream' },
  socket: { localPort: 3500, remoteAddress: '127.0.0.1' },
} as unknown as IncomingMessage;
/** The same request from a caller that traces and did not sample: its parent says `-00`. */
const unsampledReq = { ...req, headers: { ...req.headers, traceparent: '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00' } } as unknown as IncomingMessage;
const peer: PeerAddress = { nodeId: 'node-b', address: '127.0.0.1', port: 50002 };
const baseHead: CallHead = { appId: 'testapp', namespace: 'default', method: 'test', verb: 'POST', query: '', headers: HEADERS, callerAppId: 'loadgen', callerNamespace: 'default', actorType: '', actorId: '', traceparent: '', tracestate: '' };
const answer = { type: 'response', head: { status: 200, headers: ['content-type', 'application/octet-stream'] }, body: null };
const never = new AbortController().signal;

/** Node A's hooks for one call; returns the head node B would receive. */
async function nodeA(tracer: Tracer, outbound: Tracer | null, incoming: IncomingMessage = req): Promise<CallHead> {
  const span = tracer.on ? httpIngressSpan(tracer, incoming, '/v1.0/invoke/{appId}/method/{method}', { appId: 'testapp', method: 'test', callerAppId: 'loadgen' }) : undefined;
  const task = { type: 'invoke', appId: 'testapp', namespace: 'default', callerAppId: 'loadgen', method: 'test', trace: span?.traceparent, traceState: span?.traceState } as unknown as InvokeTask;
  // the outbound side builds the call head once, with the task's context
  // the outbound side (a worker's or the main thread's)
  // (the real head is built per call anyway, these two fields with it: no copy to count when off)
  const head: CallHead = task.trace === undefined ? baseHead : { ...baseHead, traceparent: task.trace, tracestate: task.traceState ?? '' };
  const trace = task.trace === undefined || outbound === null || !sampledFlag(task.trace) ? undefined : new OutboundTrace(outbound, task, undefined);
  let sent = head;
  const send = async (): Promise<{ value: unknown; failure: undefined }> => {
    const s = trace?.current;
    sent = s === undefined ? head : { ...head, traceparent: s.traceparent, tracestate: s.traceState };
    return { value: answer, failure: undefined };
  };
  const step = trace === undefined ? untraced : trace.step;
  await step(send as never)(peer, 1, never);
  trace?.finish('success', false);
  if (span !== undefined) {
    answerHeaders(['content-type', 'application/octet-stream'], span); // a fresh list per answer, as a node's is
    endIngress(span, 200);
  }
  return sent;
}

/** Node B's hooks for one call from A. */
function nodeB(tracer: Tracer, head: CallHead): void {
  const span: Span | undefined = tracer.on ? peerServerSpan(tracer, head, 'Mux') : undefined;
  let app: Span | undefined;
  if (span !== undefined && span.recording) app = appCallSpan(tracer, span, 'POST', '127.0.0.1', 3000, '/test', 'testapp');
  const headers = app !== undefined ? propagate(HEADERS, app) : head.traceparent ? withTraceContext(HEADERS, head.traceparent, head.tracestate ?? '') : HEADERS;
  if (headers.length === 0) throw new Error('unreachable');
  if (app !== undefined) endAppCall(app, 200);
  span?.set('http.response.status_code', 200).end();
}

/**
 * The collector stand-in, in a process of its own so its CPU is not counted as the node's: it
 * reads and drops OTLP/HTTP requests and, when its stdin ends, prints the bytes it read.
 */
const SINK = `
  const { createServer } = require('node:http');
  let bytes = 0;
  const server = createServer((r, res) => {
    r.on('data', (c) => (bytes += c.length));
    r.on('end', () => res.writeHead(200, { 'content-type': 'application/x-protobuf' }).end());
  });
  server.listen(0, '127.0.0.1', () => process.stdout.write(server.address().port + '\\n'));
  process.stdin.on('end', () => { process.stdout.write(bytes + '\\n'); process.exit(0); });
  process.stdin.resume();
`;

async function sink(): Promise<{ url: string; close: () => Promise<number> }> {
  const child = spawn(process.execPath, ['-e', SINK], { stdio: ['pipe', 'pipe', 'inherit'] });
  const lines = createInterface({ input: child.stdout });
  const next = (): Promise<string> => new Promise((resolve, reject) => {
    lines.once('line', resolve);
    child.once('exit', () => reject(new Error('the OTLP sink exited')));
  });
  const port = Number(await next());
  return {
    url: `127.0.0.1:${port}`,
    close: async () => {
      const bytes = next();
      child.stdin.end();
      return Number(await bytes);
    },
  };
}

interface Figure {
  mode: string;
  nodeAUs: number;
  nodeBUs: number;
  exported: number;
}

/**
 * `ratio`: the sampling ratio (null: tracing off). `incoming`: the request node A serves (the
 * `unsampled` mode's carries an unsampled parent: what an unsampled call costs with tracing on,
 * the part a paired run's sampled-against-unsampled Δ leaves out).
 */
async function measure(mode: string, ratio: number | null, address: string, incoming: IncomingMessage = req): Promise<Figure> {
  let a: Tracer = OFF;
  let b: Tracer = OFF;
  let outbound: Tracer | null = null;
  let qa: TraceExport | null = null;
  let qb: TraceExport | null = null;
  if (ratio !== null) {
    const config = tracingConfig({ samplingRate: String(ratio), otel: { endpointAddress: address, protocol: 'http' }, maxQueueSize: 1_000_000, exportInterval: 50 }, {});
    qa = new TraceExport(config, await createExporter(config), nodeResource(config, { nodeId: 'node-a', appId: 'loadgen' }), new Registry());
    qb = new TraceExport(config, await createExporter(config), nodeResource(config, { nodeId: 'node-b', appId: 'testapp' }), new Registry());
    const nowhere = { add: (): void => {} };
    a = new Tracer(true, { ratio, parentBased: true }, NO_EXPORT ? nowhere : qa);
    outbound = new Tracer(true, { ratio: 1, parentBased: true }, NO_EXPORT ? nowhere : qa);
    b = new Tracer(true, { ratio, parentBased: true }, NO_EXPORT ? nowhere : qb);
  }
  // warm up (JIT), then measure A and B apart, each with its export flushed
  for (let i = 0; i < 5000; i++) nodeB(b, await nodeA(a, outbound, incoming));
  await qa?.flush(30_000);
  await qb?.flush(30_000);
  // The least of ROUNDS rounds: on shared cores a round only ever gets slower, never faster.
  let nodeAUs = Infinity;
  let nodeBUs = Infinity;
  for (let round = 0; round < ROUNDS; round++) {
    const heads: CallHead[] = new Array(CALLS);
    let t0 = process.cpuUsage();
    for (let i = 0; i < CALLS; i++) heads[i] = await nodeA(a, outbound, incoming);
    await qa?.flush(60_000);
    let d = process.cpuUsage(t0);
    nodeAUs = Math.min(nodeAUs, (d.user + d.system) / CALLS);
    t0 = process.cpuUsage();
    for (let i = 0; i < CALLS; i++) nodeB(b, heads[i] as CallHead);
    await qb?.flush(60_000);
    d = process.cpuUsage(t0);
    nodeBUs = Math.min(nodeBUs, (d.user + d.system) / CALLS);
  }
  await qa?.shutdown(1000);
  await qb?.shutdown(1000);
  return { mode, nodeAUs, nodeBUs, exported: 0 };
}

const s = await sink();
const figures: Figure[] = [];
const ORDER = process.env['TRACING_COST_ORDER'] === 'reverse' ? ([['100%', 1], ['1%', 0.01], ['off', null]] as const) : ([['off', null], ['1%', 0.01], ['100%', 1]] as const);
for (const [mode, ratio] of ORDER) figures.push(await measure(mode, ratio, s.url));
// tracing at 100% (parent-based), every call's parent unsampled
figures.push(await measure('unsampled', 1, s.url, unsampledReq));
const exportedBytes = await s.close();
if (values.json) {
  process.stdout.write(JSON.stringify({ calls: CALLS, figures, exportedBytes }) + '\n');
} else {
  process.stdout.write(`tracing hooks, CPU per call per node (isolated, the least of ${ROUNDS} rounds of ${CALLS} calls, ${NO_EXPORT ? 'no export' : 'export included'})\n`);
  for (const f of figures) process.stdout.write(`  ${f.mode.padEnd(5)} node A ${f.nodeAUs.toFixed(2)} µs   node B ${f.nodeBUs.toFixed(2)} µs\n`);
}
