/**
 * The node's one span exporter (main thread): spans made on this thread and batches the
 * workers send (`SpanBatch`) go into one bounded queue, exported over OTLP (http/protobuf or
 * gRPC, the OTel exporters) as ReadableSpans under the node's resource.
 *
 * The queue is the only place spans wait. It holds at most `maxQueueSize` spans; past that a
 * span is dropped and counted (`weft_tracing_spans_dropped_total`), so a collector that is down
 * costs memory up to the cap and never slows a call: adding is an array push, exporting runs on
 * a timer, one export at a time, each bounded by `exportTimeoutMs`.
 */
import { hostname } from 'node:os';
import type { Attributes, HrTime, SpanContext, SpanStatus } from '@opentelemetry/api';
import { ExportResultCode, TraceState, type ExportResult } from '@opentelemetry/core';
import { defaultResource, resourceFromAttributes, type Resource } from '@opentelemetry/resources';
import type { ReadableSpan, SpanExporter, TimedEvent } from '@opentelemetry/sdk-trace';
import { ATTR_SERVICE_NAME } from '@opentelemetry/semantic-conventions';
import { Counter, Gauge, type Registry } from 'prom-client';
import type { SpanBatch, SpanData } from '../../workers/protocol.ts';
import type { SpanSink } from './tracing.ts';
import type { TracingConfig } from './tracing-config.ts';

const SCOPE = { name: 'weft', version: '0.1.0' } as const;

function hr(ms: number): HrTime {
  const s = Math.floor(ms / 1000);
  const ns = Math.min(999_999_999, Math.round((ms - s * 1000) * 1e6));
  return [s, ns];
}

/** One finished span as the OTel SDK's exporters read it. */
class ExportedSpan implements ReadableSpan {
  readonly name: string;
  readonly kind: number;
  readonly parentSpanContext: SpanContext | undefined;
  readonly startTime: HrTime;
  readonly endTime: HrTime;
  readonly duration: HrTime;
  readonly status: SpanStatus;
  readonly attributes: Attributes;
  readonly links = [];
  readonly events: TimedEvent[];
  readonly ended = true;
  readonly resource: Resource;
  readonly instrumentationScope = SCOPE;
  readonly droppedAttributesCount = 0;
  readonly droppedEventsCount = 0;
  readonly droppedLinksCount = 0;
  private readonly context: SpanContext;

  constructor(d: SpanData, resource: Resource) {
    this.name = d.name;
    this.kind = d.kind;
    const traceState = d.traceState === '' ? undefined : new TraceState(d.traceState);
    this.context = { traceId: d.traceId, spanId: d.spanId, traceFlags: 1, traceState };
    this.parentSpanContext = d.parentSpanId === '' ? undefined : { traceId: d.traceId, spanId: d.parentSpanId, traceFlags: 1, traceState, isRemote: true };
    this.startTime = hr(d.start);
    this.endTime = hr(d.end);
    this.duration = hr(Math.max(0, d.end - d.start));
    this.status = d.message === '' ? { code: d.status } : { code: d.status, message: d.message };
    this.attributes = d.attributes;
    this.events = d.events === null ? [] : d.events.map((e) => ({ name: e.name, time: hr(e.time), attributes: e.attributes ?? {}, droppedAttributesCount: 0 }));
    this.resource = resource;
  }

  spanContext(): SpanContext {
    return this.context;
  }
}

export interface ExportIdentity {
  readonly nodeId: string;
  /** The node's first app id: the default service name, as Dapr names a sidecar's traces. */
  readonly appId: string | undefined;
}

/** The node's resource: service, node and host, then OTEL_RESOURCE_ATTRIBUTES (OTEL_SERVICE_NAME wins). */
export function nodeResource(config: TracingConfig, who: ExportIdentity): Resource {
  const attrs: Record<string, string> = {
    [ATTR_SERVICE_NAME]: who.appId ?? 'weft',
    'service.namespace': 'weft',
    'service.instance.id': who.nodeId,
    'host.name': hostname(),
    'weft.node.id': who.nodeId,
    ...config.resourceAttributes,
  };
  if (config.serviceName !== undefined) attrs[ATTR_SERVICE_NAME] = config.serviceName;
  return defaultResource().merge(resourceFromAttributes(attrs));
}

/** The OTLP exporter for the configured protocol (loaded only when tracing is on). */
export async function createExporter(config: TracingConfig): Promise<SpanExporter> {
  if (config.protocol === 'grpc') {
    const [{ OTLPTraceExporter }, grpc] = await Promise.all([import('@opentelemetry/exporter-trace-otlp-grpc'), import('@grpc/grpc-js')]);
    const secure = config.endpoint.startsWith('https:');
    return new OTLPTraceExporter({
      url: config.endpoint,
      credentials: secure ? grpc.credentials.createSsl() : grpc.credentials.createInsecure(),
      timeoutMillis: config.exportTimeoutMs,
    });
  }
  const { OTLPTraceExporter } = await import('@opentelemetry/exporter-trace-otlp-proto');
  return new OTLPTraceExporter({ url: config.endpoint, timeoutMillis: config.exportTimeoutMs, concurrencyLimit: 2 });
}

export class TraceExport implements SpanSink {
  private queue: SpanData[] = [];
  private exporting = false;
  private closed = false;
  private readonly timer: NodeJS.Timeout;
  private readonly config: TracingConfig;
  private readonly exporter: SpanExporter;
  private resource: Resource;
  private readonly dropped: { inc(labels: { reason: string }, by?: number): void };
  private readonly exported: Counter;
  private readonly failures: Counter;

  /** `resource` may be replaced once the node knows its id (`identify`), before the first export. */
  constructor(config: TracingConfig, exporter: SpanExporter, resource: Resource, registry: Registry) {
    this.config = config;
    this.exporter = exporter;
    this.resource = resource;
    const registers = [registry];
    this.dropped = new Counter({ name: 'weft_tracing_spans_dropped_total', help: 'Finished spans dropped before export, by reason (queue_full: the export queue was at tracing.maxQueueSize; worker_buffer: a worker\'s batch was full; export_failed: the collector did not take them)', labelNames: ['reason'], registers });
    this.exported = new Counter({ name: 'weft_tracing_spans_exported_total', help: 'Spans the collector accepted', registers });
    this.failures = new Counter({ name: 'weft_tracing_export_failures_total', help: 'Exports that failed (their spans are dropped)', registers });
    const queue = (): number => this.queue.length;
    new Gauge({ name: 'weft_tracing_queue_spans', help: 'Finished spans waiting for export', registers, collect() { this.set(queue()); } });
    this.timer = setInterval(() => this.exportSome(), config.exportIntervalMs);
    this.timer.unref();
  }

  identify(resource: Resource): void {
    this.resource = resource;
  }

  add(span: SpanData): void {
    if (this.queue.length >= this.config.maxQueueSize || this.closed) {
      this.dropped.inc({ reason: 'queue_full' });
      return;
    }
    this.queue.push(span);
  }

  /** A worker's batch. */
  absorb(batch: SpanBatch): void {
    if (batch.dropped > 0) this.dropped.inc({ reason: 'worker_buffer' }, batch.dropped);
    for (const s of batch.spans) this.add(s);
  }

  private exportSome(): void {
    if (this.exporting || this.queue.length === 0) return;
    const batch = this.queue.length <= this.config.maxExportBatchSize ? this.queue : this.queue.slice(0, this.config.maxExportBatchSize);
    this.queue = batch === this.queue ? [] : this.queue.slice(batch.length);
    this.exporting = true;
    let spans: ExportedSpan[];
    try {
      spans = batch.map((d) => new ExportedSpan(d, this.resource));
    } catch {
      this.exporting = false;
      this.failures.inc();
      return;
    }
    // Guard against an exporter that never calls back: the next export is not held up forever.
    let done = false;
    const guard = setTimeout(() => finish({ code: ExportResultCode.FAILED }), this.config.exportTimeoutMs + 1000);
    guard.unref();
    const finish = (result: ExportResult): void => {
      if (done) return;
      done = true;
      clearTimeout(guard);
      this.exporting = false;
      if (result.code === ExportResultCode.SUCCESS) this.exported.inc(spans.length);
      else {
        this.failures.inc();
        this.dropped.inc({ reason: 'export_failed' }, spans.length);
      }
      // more waiting: go on at once rather than at the next tick
      if (this.queue.length >= this.config.maxExportBatchSize) setImmediate(() => this.exportSome());
    };
    try {
      this.exporter.export(spans, finish);
    } catch {
      finish({ code: ExportResultCode.FAILED });
    }
  }

  /** Exports what is queued, for up to `ms`. */
  async flush(ms = 5000): Promise<void> {
    const until = Date.now() + ms;
    while ((this.queue.length > 0 || this.exporting) && Date.now() < until) {
      this.exportSome();
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
  }

  /** Flushes (bounded), then stops the exporter. Spans added afterwards are dropped. */
  async shutdown(ms = 3000): Promise<void> {
    clearInterval(this.timer);
    await this.flush(ms);
    this.closed = true;
    await Promise.race([this.exporter.shutdown(), new Promise((resolve) => setTimeout(resolve, 1000).unref())]).catch(() => {});
  }
}
