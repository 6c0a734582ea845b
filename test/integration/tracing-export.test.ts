/**
 * The node's span exporter against real collectors on 127.0.0.1 (the OTel http/protobuf and gRPC
 * transports, an OTLP receiver in this process): a full chunk goes out without waiting for the
 * interval's tick; a slow collector gets several exports in flight at once (up to
 * `maxConcurrentExports`, which the OTel exporter's own limit does not refuse), and nothing is
 * dropped while it keeps up; a collector that is down costs the queue's cap and the exports in
 * flight, no more: the rest is dropped and counted, and adding a span never waits.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { Registry } from 'prom-client';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { tracingConfig, type TracingConfig } from '../../src/observability/tracing-config.ts';
import { TraceExport, createExporter } from '../../src/observability/tracing-export.ts';
import type { SpanData } from '../../src/observability/tracing.ts';
import { OtlpReceiver } from '../support/otlp-receiver.ts';
import { freePort } from '../support/ports.ts';

const TID = '4bf92f3577b34da6a3ce929d0e0e4736';

function span(i: number): SpanData {
  return { traceId: TID, spanId: (i + 1).toString(16).padStart(16, '0'), parentSpanId: '', traceState: '', name: `s${i}`, kind: 1, start: 1_700_000_000_000.5, endTime: 1_700_000_000_001.25, attributes: { i }, events: null, status: 0, message: '' };
}

async function metric(registry: Registry, name: string, labels = ''): Promise<number> {
  const text = await registry.metrics();
  const line = text.split('\n').find((l) => l.startsWith(`${name}${labels} `));
  return line === undefined ? 0 : Number(line.slice(line.lastIndexOf(' ') + 1));
}

/** Waits (bounded) for `check` to hold; the caller asserts what it then sees. */
async function until(check: () => boolean | Promise<boolean>, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (Date.now() < end && !(await check())) await new Promise((r) => setTimeout(r, 10));
}

const turn = (): Promise<void> => new Promise((r) => setImmediate(r));

const cleanup: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const c of cleanup.splice(0).reverse()) await c();
});

async function exporterTo(config: TracingConfig): Promise<{ q: TraceExport; registry: Registry }> {
  const registry = new Registry();
  const q = new TraceExport(config, await createExporter(config), resourceFromAttributes({ 'service.name': 'export-test' }), registry);
  cleanup.push(() => q.shutdown(200));
  return { q, registry };
}

describe.each(['http', 'grpc'] as const)('a slow collector over %s', (protocol) => {
  it('gets several exports in flight at once, each chunk as soon as it is full, and loses nothing', async () => {
    const receiver = protocol === 'http' ? await OtlpReceiver.start() : await OtlpReceiver.startGrpc();
    cleanup.push(() => receiver.close());
    receiver.hold();
    // a tick that never comes during the test: only full chunks go out
    const config = tracingConfig({ samplingRate: '1', otel: { endpointAddress: receiver.address, protocol }, maxQueueSize: 2048, exportInterval: 60_000, maxConcurrentExports: 3 }, {});
    expect(config.maxExportBatchSize).toBe(512);
    const { q, registry } = await exporterTo(config);
    // five chunks' worth and one span, a chunk per event-loop turn (as calls end at 1000/s)
    let n = 0;
    for (let c = 0; c < 5; c++) {
      for (let i = 0; i < 512; i++) q.add(span(n++));
      await turn();
    }
    q.add(span(n++));
    await until(() => receiver.held >= 3);
    // three held by the collector, more waiting for a place in flight; none refused or dropped
    expect(receiver.held).toBe(3);
    expect(await metric(registry, 'weft_tracing_exports_in_flight')).toBe(3);
    expect(await metric(registry, 'weft_tracing_queue_spans')).toBe(n - 3 * 512);
    expect(await metric(registry, 'weft_tracing_export_failures_total')).toBe(0);
    expect(await metric(registry, 'weft_tracing_spans_dropped_total', '{reason="queue_full"}')).toBe(0);
    receiver.release();
    await q.flush(10_000);
    expect(await metric(registry, 'weft_tracing_spans_exported_total')).toBe(n);
    expect(receiver.spans).toHaveLength(n);
    expect(new Set(receiver.spans.map((s) => s.name)).size).toBe(n);
    expect(await metric(registry, 'weft_tracing_spans_dropped_total', '{reason="queue_full"}')).toBe(0);
    expect(await metric(registry, 'weft_tracing_export_failures_total')).toBe(0);
  });
});

describe('a collector that is down', () => {
  it('costs the queue\'s cap and the exports in flight, no more; the rest is dropped and counted', async () => {
    const closed = await freePort();
    const config: TracingConfig = {
      ...tracingConfig({ samplingRate: '1', otel: { endpointAddress: `127.0.0.1:${closed}`, protocol: 'http' }, maxQueueSize: 100, exportInterval: 10, maxConcurrentExports: 2 }, {}),
      // the transport's retries of a refused connection end within this
      exportTimeoutMs: 1000,
    };
    const { q, registry } = await exporterTo(config);
    let added = 0;
    const spans = 10_000;
    let maxHeld = 0;
    let maxInFlight = 0;
    while (added < spans) {
      for (let i = 0; i < 250; i++) q.add(span(added++));
      await turn();
      maxHeld = Math.max(maxHeld, await metric(registry, 'weft_tracing_queue_spans'));
      maxInFlight = Math.max(maxInFlight, await metric(registry, 'weft_tracing_exports_in_flight'));
    }
    expect(maxHeld).toBeLessThanOrEqual(100);
    expect(maxInFlight).toBeLessThanOrEqual(2);
    // every span is dropped: most at once (queue full), the ones sent when their export fails
    // what is neither dropped at once nor failed yet is at most the queue's cap and the two exports in flight
    const dropped = async (): Promise<number> => (await metric(registry, 'weft_tracing_spans_dropped_total', '{reason="queue_full"}')) + (await metric(registry, 'weft_tracing_spans_dropped_total', '{reason="export_failed"}'));
    expect(await dropped()).toBeGreaterThanOrEqual(spans - 100 - 2 * 100);
    // the exports in flight fail in the end, and their spans are counted too
    await until(async () => (await dropped()) >= spans - 100);
    expect(await dropped()).toBeGreaterThanOrEqual(spans - 100);
    const failed = await metric(registry, 'weft_tracing_spans_dropped_total', '{reason="export_failed"}');
    expect(failed).toBeGreaterThan(0);
    expect(await metric(registry, 'weft_tracing_export_failures_total')).toBeGreaterThanOrEqual(failed / 100);
    expect(await metric(registry, 'weft_tracing_spans_exported_total')).toBe(0);
  });
});
