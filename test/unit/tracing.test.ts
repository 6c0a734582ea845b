/**
 * Tracing without sockets: W3C traceparent parsing, the sampling decisions, the settings from a
 * Dapr Configuration and from the OTel environment (with an error per bad field), and the export
 * queue's bound (a collector that never answers costs dropped spans, counted, never a wait).
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { Registry } from 'prom-client';
import { resourceFromAttributes } from '@opentelemetry/resources';
import type { IncomingMessage } from 'node:http';
import * as semconv from '@opentelemetry/semantic-conventions';
import { ATTR, BatchingSink, OFF, SpanKind, Tracer, formatTraceParent, newSpanId, newTraceId, ownTraceParent, parseTraceParent, ratioSampled, type EncodedSpans, type SpanData } from '../../src/observability/tracing.ts';
import { appCallSpan, endAppCall, httpIngressSpan, peerServerSpan } from '../../src/observability/tracing-spans.ts';
import { OutboundTrace } from '../../src/observability/tracing-outbound.ts';
import type { InvokeTask } from '../../workers/protocol.ts';
import { parseResourceAttributes, tracingConfig } from '../../src/observability/tracing-config.ts';
import { TraceExport, nodeResource, type BatchExporter } from '../../src/observability/tracing-export.ts';
import type { SpanExportBatch } from '../../src/observability/tracing-otlp.ts';
import { validateConfig } from '../../src/config.ts';

const TID = '4bf92f3577b34da6a3ce929d0e0e4736';
const SID = '00f067aa0ba902b7';

describe('traceparent', () => {
  it('parses a valid header and formats it back', () => {
    expect(parseTraceParent(`00-${TID}-${SID}-01`, 'a=b')).toEqual({ traceId: TID, spanId: SID, sampled: true, traceState: 'a=b' });
    expect(parseTraceParent(`00-${TID}-${SID}-00`)?.sampled).toBe(false);
    expect(parseTraceParent(`00-${TID}-${SID}-03`)?.sampled).toBe(true);
    expect(formatTraceParent(TID, SID, true)).toBe(`00-${TID}-${SID}-01`);
    // a later version is read by its first four fields
    expect(parseTraceParent(`01-${TID}-${SID}-01-extra`)?.traceId).toBe(TID);
    // surrounding white space (a header value as some clients send it)
    expect(parseTraceParent(` 00-${TID}-${SID}-01 `)?.spanId).toBe(SID);
  });

  it('reads back a traceparent this node made as it is; ids are fresh lower-case hex', () => {
    expect(ownTraceParent(formatTraceParent(TID, SID, true), 'k=v')).toEqual({ traceId: TID, spanId: SID, sampled: true, traceState: 'k=v' });
    expect(ownTraceParent(formatTraceParent(TID, SID, false), '').sampled).toBe(false);
    // ids are slices of a pooled hex string refilled as it runs out: across refills, valid and distinct
    const ids = new Set<string>();
    for (let i = 0; i < 1000; i++) {
      const t = newTraceId();
      const s = newSpanId();
      expect(t).toMatch(/^[0-9a-f]{32}$/);
      expect(s).toMatch(/^[0-9a-f]{16}$/);
      ids.add(t);
    }
    expect(ids.size).toBe(1000);
  });

  it.each([
    ['', 'empty'],
    [`00-${TID}-${SID}`, 'no flags'],
    [`00-${TID.toUpperCase()}-${SID}-01`, 'upper case'],
    [`00-${'0'.repeat(32)}-${SID}-01`, 'all-zero trace id'],
    [`00-${TID}-${'0'.repeat(16)}-01`, 'all-zero span id'],
    [`ff-${TID}-${SID}-01`, 'version ff'],
    [`00-${TID}-${SID}-01-x`, 'version 00 with more fields'],
    [`00_${TID}-${SID}-01`, 'wrong separator'],
    [`00-${TID.slice(0, 31)}g-${SID}-01`, 'not hex'],
    [`00-${TID}-${SID}-0g`, 'flags not hex'],
    [`01-${TID}-${SID}-01x`, 'a later version, more without a dash'],
    [`00-${TID}-${SID}-01`.slice(0, 54) + '-', 'cut short'],
  ])('ignores %j (%s)', (value) => {
    expect(parseTraceParent(value)).toBeUndefined();
  });
});

describe('sampling', () => {
  it('a ratio decides by the trace id, the same way every time', () => {
    expect(ratioSampled(TID, 1)).toBe(true);
    expect(ratioSampled(TID, 0)).toBe(false);
    let yes = 0;
    const tracer = new Tracer(true, { ratio: 0.25, parentBased: true }, null);
    for (let i = 0; i < 4000; i++) if (tracer.start('x', SpanKind.SERVER, undefined, null).sampled) yes++;
    expect(yes).toBeGreaterThan(800);
    expect(yes).toBeLessThan(1200);
  });

  it('parent-based: a parent\'s decision wins, both ways; otherwise the ratio decides', () => {
    const spans: SpanData[] = [];
    const sink = { add: (s: SpanData) => spans.push(s) };
    const never = new Tracer(true, { ratio: 0, parentBased: true }, sink);
    const child = never.start('s', SpanKind.SERVER, { traceId: TID, spanId: SID, sampled: true, traceState: '' }, null);
    expect(child.sampled).toBe(true);
    child.end();
    expect(spans[0]).toMatchObject({ traceId: TID, parentSpanId: SID, name: 's', kind: SpanKind.SERVER });
    const always = new Tracer(true, { ratio: 1, parentBased: true }, sink);
    const quiet = always.start('q', SpanKind.SERVER, { traceId: TID, spanId: SID, sampled: false, traceState: '' }, null);
    expect(quiet.sampled).toBe(false);
    expect(quiet.traceparent).toMatch(new RegExp(`^00-${TID}-[0-9a-f]{16}-00$`));
    quiet.set('a', 1).event('e').end();
    expect(spans).toHaveLength(1);
    // not parent-based: the ratio decides even under a sampled parent
    const own = new Tracer(true, { ratio: 0, parentBased: false }, sink);
    expect(own.start('o', SpanKind.SERVER, { traceId: TID, spanId: SID, sampled: true, traceState: '' }, null).sampled).toBe(false);
    expect(OFF.on).toBe(false);
  });

  it('the spans\' attribute names (literal keys on the hot path) are the semantic conventions\' and ATTR\'s', async () => {
    const got: SpanData[] = [];
    const tracer = new Tracer(true, { ratio: 1, parentBased: true }, { add: (d) => void got.push(d) });
    const req = { method: 'POST', url: '/v1.0/invoke/a/method/m?x=1', headers: {}, socket: { remoteAddress: '127.0.0.1' } } as unknown as IncomingMessage;
    const ingress = httpIngressSpan(tracer, req, '/v1.0/invoke/{appId}/method/{method}', { appId: 'a', method: 'm', callerAppId: 'c' });
    ingress.end();
    const server = peerServerSpan(tracer, { appId: 'a', method: 'm', callerAppId: 'c', headers: [], traceparent: ingress.traceparent }, 'Mux');
    endAppCall(appCallSpan(tracer, server, 'POST', '127.0.0.1', 3000, '/m', 'a'), 200);
    server.end();
    const task = { trace: ingress.traceparent, traceState: '' } as unknown as InvokeTask;
    const attempt = new OutboundTrace(tracer, task, undefined);
    await attempt.step(async () => ({ value: { head: { status: 200 } }, failure: undefined }) as never)({ nodeId: 'n2', address: '127.0.0.1', port: 5 }, 1, new AbortController().signal);
    attempt.finish('success', false);
    const keys = (name: string, kind: number = SpanKind.SERVER): string[] => Object.keys(got.find((d) => d.name === name && d.kind === kind)?.attributes ?? {}).sort();
    expect(keys('POST /v1.0/invoke/{appId}/method/{method}')).toEqual([semconv.ATTR_HTTP_REQUEST_METHOD, semconv.ATTR_HTTP_ROUTE, semconv.ATTR_URL_PATH, semconv.ATTR_URL_SCHEME, semconv.ATTR_CLIENT_ADDRESS, ATTR.APP_ID, ATTR.METHOD, ATTR.CALLER_APP_ID].sort());
    expect(keys('weft.peer.v1.Peer/Mux')).toEqual([ATTR.RPC_SYSTEM, ATTR.RPC_SERVICE, ATTR.RPC_METHOD, ATTR.APP_ID, ATTR.METHOD, ATTR.CALLER_APP_ID].sort());
    expect(keys('POST', SpanKind.CLIENT)).toEqual([semconv.ATTR_HTTP_REQUEST_METHOD, semconv.ATTR_SERVER_ADDRESS, semconv.ATTR_SERVER_PORT, semconv.ATTR_URL_FULL, semconv.ATTR_HTTP_RESPONSE_STATUS_CODE].sort());
    const attemptSpan = got.find((d) => d.kind === SpanKind.CLIENT && d.name.startsWith('weft.peer.v1.Peer/'));
    expect(Object.keys(attemptSpan?.attributes ?? {}).sort()).toEqual([ATTR.RPC_SYSTEM, ATTR.RPC_SERVICE, semconv.ATTR_SERVER_ADDRESS, semconv.ATTR_SERVER_PORT, ATTR.PEER_NODE_ID, ATTR.ATTEMPT, ATTR.RPC_METHOD, semconv.ATTR_HTTP_RESPONSE_STATUS_CODE].sort());
    expect(attemptSpan?.parentSpanId).toBe(ingress.spanId);
  });

  it('a span ends once; events and failure are recorded', () => {
    const spans: SpanData[] = [];
    const t = new Tracer(true, { ratio: 1, parentBased: true }, { add: (s) => spans.push(s) });
    const s = t.start('root', SpanKind.INTERNAL, undefined, { k: 'v' });
    s.event('weft.retry', { 'weft.attempt': 1 }).fail('WEFT_PEER_UNAVAILABLE', 'down');
    s.end();
    s.end();
    expect(spans).toHaveLength(1);
    expect(spans[0]).toMatchObject({ parentSpanId: '', status: 2, message: 'down', attributes: { k: 'v', 'error.type': 'WEFT_PEER_UNAVAILABLE' } });
    expect(spans[0]?.events?.[0]).toMatchObject({ name: 'weft.retry', attributes: { 'weft.attempt': 1 } });
    expect((spans[0] as SpanData).endTime).toBeGreaterThanOrEqual((spans[0] as SpanData).start);
  });

  it('a worker\'s batching sink bounds what it holds and counts what it dropped', () => {
    const sent: Array<{ n: number; dropped: number }> = [];
    const sink = new BatchingSink((batch, dropped) => sent.push({ n: batch.count, dropped }), 3, 10_000);
    const t = new Tracer(true, { ratio: 1, parentBased: true }, sink);
    for (let i = 0; i < 5; i++) t.start('s', SpanKind.CLIENT, undefined, null).end();
    sink.flush();
    expect(sent).toEqual([{ n: 3, dropped: 2 }]);
  });
});

describe('tracing settings', () => {
  const dir = mkdtempSync(join(tmpdir(), 'weft-tracing-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('is off with nothing configured', () => {
    expect(tracingConfig(undefined, {}).enabled).toBe(false);
    expect(validateConfig({}, {}).tracing.enabled).toBe(false);
  });

  it('reads a Dapr Configuration document\'s spec.tracing', () => {
    const file = join(dir, 'config.yaml');
    writeFileSync(file, [
      'apiVersion: dapr.io/v1alpha1', 'kind: Configuration', 'metadata: { name: tracing }',
      'spec:', '  tracing:', '    samplingRate: "0.5"', '    otel:', '      endpointAddress: "collector:4317"', '      protocol: grpc', '      isSecure: true',
    ].join('\n'));
    const c = tracingConfig(file, {});
    expect(c).toMatchObject({ enabled: true, ratio: 0.5, parentBased: true, protocol: 'grpc', endpoint: 'https://collector:4317' });
    expect(tracingConfig({ samplingRate: '1', otel: { endpointAddress: 'localhost:4318', protocol: 'http' } }, {})).toMatchObject({ enabled: true, protocol: 'http/protobuf', endpoint: 'http://localhost:4318/v1/traces' });
    // Dapr's "0" turns tracing off
    expect(tracingConfig({ samplingRate: '0', otel: { endpointAddress: 'localhost:4318' } }, {}).enabled).toBe(false);
  });

  it('reads the OTel environment the way OTel users expect', () => {
    const env = {
      OTEL_EXPORTER_OTLP_ENDPOINT: 'http://otel:4318/', OTEL_TRACES_SAMPLER: 'parentbased_traceidratio', OTEL_TRACES_SAMPLER_ARG: '0.01',
      OTEL_SERVICE_NAME: 'svc', OTEL_RESOURCE_ATTRIBUTES: 'deployment.environment=prod,team=a%20b',
    };
    expect(tracingConfig(undefined, env)).toMatchObject({ enabled: true, ratio: 0.01, parentBased: true, protocol: 'http/protobuf', endpoint: 'http://otel:4318/v1/traces', serviceName: 'svc', resourceAttributes: { 'deployment.environment': 'prod', team: 'a b' } });
    expect(tracingConfig(undefined, { OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: 'http://x:1/custom' }).endpoint).toBe('http://x:1/custom');
    expect(tracingConfig(undefined, { OTEL_EXPORTER_OTLP_ENDPOINT: 'http://x:4317', OTEL_EXPORTER_OTLP_PROTOCOL: 'grpc' })).toMatchObject({ protocol: 'grpc', endpoint: 'http://x:4317' });
    expect(tracingConfig(undefined, { OTEL_TRACES_EXPORTER: 'otlp' }).endpoint).toBe('http://localhost:4318/v1/traces');
    expect(tracingConfig(undefined, { OTEL_TRACES_SAMPLER: 'always_on', OTEL_EXPORTER_OTLP_ENDPOINT: 'http://x' })).toMatchObject({ ratio: 1, parentBased: false });
    expect(tracingConfig(undefined, { OTEL_EXPORTER_OTLP_ENDPOINT: 'http://x', OTEL_SDK_DISABLED: 'true' }).enabled).toBe(false);
    expect(tracingConfig(undefined, { OTEL_EXPORTER_OTLP_ENDPOINT: 'http://x', OTEL_TRACES_EXPORTER: 'none' }).enabled).toBe(false);
    // what the Configuration sets wins over the environment
    expect(tracingConfig({ samplingRate: '0.2', otel: { endpointAddress: 'a:1', protocol: 'http' } }, { OTEL_TRACES_SAMPLER: 'always_off', OTEL_EXPORTER_OTLP_ENDPOINT: 'http://b:2', OTEL_EXPORTER_OTLP_PROTOCOL: 'grpc' })).toMatchObject({ ratio: 0.2, endpoint: 'http://a:1/v1/traces', protocol: 'http/protobuf' });
    expect(parseResourceAttributes('a=1,,=x,b = 2 ')).toEqual({ a: '1', b: '2' });
  });

  it.each([
    [{ samplingRate: '2' }, {}, 'tracing.samplingRate: must be a number from 0 to 1 (got "2")'],
    [{ otel: { protocol: 'http/json' } }, {}, 'tracing.otel.protocol: must be http (http/protobuf) or grpc (got "http/json"; http/json is not supported)'],
    [{ otel: { isSecure: 'yes' } }, {}, 'tracing.otel.isSecure: must be true or false'],
    [{ otel: { endpoint: 'x' } }, {}, 'tracing.otel.endpoint: unknown field (known: endpointAddress, protocol, isSecure)'],
    [{ zipkin: { endpointAddress: 'x' } }, {}, 'tracing.zipkin: is not supported: weft exports OTLP (use otel)'],
    [{ maxConcurrentExports: 0 }, {}, 'tracing.maxConcurrentExports: must be an integer from 1 to 16'],
    [{ maxConcurrentExports: '2' }, {}, 'tracing.maxConcurrentExports: must be an integer from 1 to 16'],
    ['/nonexistent/config.yaml', {}, 'tracing: cannot read the Configuration /nonexistent/config.yaml'],
    [undefined, { OTEL_TRACES_SAMPLER: 'jaeger_remote' }, 'OTEL_TRACES_SAMPLER: "jaeger_remote" is not supported'],
    [undefined, { OTEL_TRACES_SAMPLER: 'traceidratio', OTEL_TRACES_SAMPLER_ARG: 'x' }, 'OTEL_TRACES_SAMPLER_ARG: must be a number from 0 to 1 (got "x")'],
    [undefined, { OTEL_EXPORTER_OTLP_PROTOCOL: 'http/json' }, 'OTEL_EXPORTER_OTLP_PROTOCOL: must be http'],
    [undefined, { OTEL_TRACES_EXPORTER: 'zipkin' }, 'OTEL_TRACES_EXPORTER: "zipkin" is not supported (otlp or none)'],
  ])('refuses %j %j with a clear error', (raw, env, message) => {
    expect(() => tracingConfig(raw, env as NodeJS.ProcessEnv)).toThrow(message);
  });
});

describe('the export queue', () => {
  function span(i: number): SpanData {
    return { traceId: TID, spanId: i.toString(16).padStart(16, '0'), parentSpanId: '', traceState: '', name: `s${i}`, kind: 1, start: 1_700_000_000_000.5, endTime: 1_700_000_000_001.25, attributes: { i }, events: null, status: 0, message: '' };
  }

  it('holds at most maxQueueSize spans while the collector does not answer, drops and counts the rest, and never blocks add()', async () => {
    const calls: SpanExportBatch[] = [];
    const hanging: BatchExporter = { export: (batch) => void calls.push(batch), shutdown: async () => {} };
    const registry = new Registry();
    const config = { ...tracingConfig({ samplingRate: '1', otel: { endpointAddress: 'x:1' }, maxQueueSize: 10, exportInterval: 10, maxConcurrentExports: 1 }, {}), exportTimeoutMs: 60_000 };
    const q = new TraceExport(config, hanging, resourceFromAttributes({ 'service.name': 't' }), registry);
    for (let i = 0; i < 10; i++) q.add(span(i));
    await new Promise((r) => setTimeout(r, 50));
    // one export in flight (never answered), so the queue fills again and the rest is dropped
    for (let i = 10; i < 1000; i++) q.add(span(i));
    expect(calls).toHaveLength(1);
    const text = await registry.metrics();
    expect(text).toMatch(/weft_tracing_spans_dropped_total\{reason="queue_full"\} 980/);
    expect(text).toMatch(/weft_tracing_queue_spans 10/);
    // what the exporter got: one request of the 10 spans first queued (test/unit/tracing-otlp.test.ts reads such bytes)
    expect(calls[0]?.count).toBe(10);
    expect(Buffer.from(calls[0]?.bytes ?? []).includes('s9')).toBe(true);
    await q.shutdown(50);
  });

  it('takes a worker\'s encoded batch into its queue as it is, and drops a batch that does not fit whole', async () => {
    const calls: SpanExportBatch[] = [];
    const exporter: BatchExporter = { export: (batch, cb) => { calls.push(batch); cb({ code: 0 }); }, shutdown: async () => {} };
    const registry = new Registry();
    const q = new TraceExport(tracingConfig({ samplingRate: '1', otel: { endpointAddress: 'x:1' }, maxQueueSize: 6, exportInterval: 10 }, {}), exporter, resourceFromAttributes({ 'service.name': 'main' }), registry);
    const batches: EncodedSpans[] = [];
    const worker = new BatchingSink((batch, dropped) => {
      batches.push(batch);
      q.absorb({ type: 'spans', bytes: batch.bytes, count: batch.count, dropped });
    });
    for (let i = 0; i < 4; i++) worker.add(span(i));
    worker.flush();
    q.add(span(4));
    for (let i = 5; i < 8; i++) worker.add(span(i));
    worker.flush(); // 3 more do not fit the queue's 6 with 5 in it: dropped whole
    await q.flush(1000);
    expect(batches.map((b) => b.count)).toEqual([4, 3]);
    expect(calls.reduce((n, c) => n + c.count, 0)).toBe(5);
    const bytes = Buffer.concat(calls.map((c) => Buffer.from(c.bytes)));
    for (const name of ['s0', 's3', 's4']) expect(bytes.includes(`\x2a\x02${name}`, 0, 'latin1')).toBe(true);
    expect(bytes.includes('s5')).toBe(false);
    expect(bytes.includes('main')).toBe(true);
    expect(await registry.metrics()).toMatch(/weft_tracing_spans_dropped_total\{reason="queue_full"\} 3/);
    await q.shutdown(50);
  });

  it('counts failed exports and their spans', async () => {
    const failing: BatchExporter = { export: (_s, cb) => cb({ code: 1 }), shutdown: async () => {} };
    const registry = new Registry();
    const q = new TraceExport(tracingConfig({ samplingRate: '1', otel: { endpointAddress: 'x:1' }, exportInterval: 10 }, {}), failing, resourceFromAttributes({}), registry);
    for (let i = 0; i < 5; i++) q.add(span(i));
    await q.flush(1000);
    const text = await registry.metrics();
    expect(text).toMatch(/weft_tracing_spans_dropped_total\{reason="export_failed"\} 5/);
    expect(text).toMatch(/weft_tracing_export_failures_total 1/);
    await q.shutdown(50);
  });

  it('the resource names the service, node and host; OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES apply', () => {
    const r = nodeResource(tracingConfig(undefined, { OTEL_SERVICE_NAME: 'svc', OTEL_RESOURCE_ATTRIBUTES: 'env=prod' }), { nodeId: 'n1', appId: 'orders' });
    expect(r.attributes).toMatchObject({ 'service.name': 'svc', 'service.instance.id': 'n1', 'weft.node.id': 'n1', env: 'prod' });
    expect(typeof r.attributes['host.name']).toBe('string');
    expect(nodeResource(tracingConfig(undefined, {}), { nodeId: 'n2', appId: 'orders' }).attributes['service.name']).toBe('orders');
  });
});
