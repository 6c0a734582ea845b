/**
 * The node's one span exporter (main thread): spans made on this thread and batches the
 * workers send (`SpanBatch`) go into one bounded queue, exported over OTLP (http/protobuf or
 * gRPC: the OTel exporters' transports, weft's encoder) under the node's resource.
 *
 * The queue is the only place spans wait. It holds at most `maxQueueSize` spans; past that a
 * span is dropped and counted (`weft_tracing_spans_dropped_total`), so a collector that is down
 * costs memory up to the cap and never slows a call: adding is an array push, exporting runs on
 * a timer, one export at a time, each bounded by `exportTimeoutMs`.
 */
import { hostname } from 'node:os';
import { defaultResource, resourceFromAttributes, type Resource } from '@opentelemetry/resources';
import { ATTR_SERVICE_NAME } from '@opentelemetry/semantic-conventions';
import { Counter, Gauge, type Registry } from 'prom-client';
import type { SpanAttributes, SpanBatch, SpanData } from '../../workers/protocol.ts';
import type { SpanSink } from './tracing.ts';
import type { TracingConfig } from './tracing-config.ts';
import { SpanChunk, encodeResource, type EncodedResource, type SpanExportBatch } from './tracing-otlp.ts';

const SCOPE = { name: 'weft', version: '0.1.0' } as const;

/** OTel's ExportResultCode.SUCCESS (0); anything else failed. */
const SUCCESS = 0;

/**
 * What TraceExport sends a batch with: an OTel OTLP exporter (its transport: retries,
 * timeouts, `OTEL_EXPORTER_OTLP_HEADERS`, compression, TLS) whose serializer is weft's
 * (tracing-otlp.ts), so a batch goes from weft's span data to protobuf bytes in one pass.
 */
export interface BatchExporter {
  export(batch: SpanExportBatch, done: (result: { code: number; error?: Error }) => void): void;
  shutdown(): Promise<void>;
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

/** A resource's attributes and weft's scope, encoded once for every batch. */
export function encodedResource(resource: Resource): EncodedResource {
  const attrs: SpanAttributes = {};
  for (const [k, v] of Object.entries(resource.attributes)) {
    if (typeof v === 'string' || typeof v === 'number' || typeof v === 'boolean') attrs[k] = v;
    else if (Array.isArray(v)) attrs[k] = v.join(',');
  }
  return encodeResource(attrs, SCOPE);
}

/**
 * The OTLP exporter for the configured protocol (loaded only when tracing is on): the OTel
 * exporters' own transport and settings, with weft's serializer. The collector's answer (its
 * partial-success count) is read by the OTel serializer.
 */
export async function createExporter(config: TracingConfig): Promise<BatchExporter> {
  const [{ OTLPExporterBase }, { ProtobufTraceSerializer }] = await Promise.all([import('@opentelemetry/otlp-exporter-base'), import('@opentelemetry/otlp-transformer')]);
  const serializer = { serializeRequest: (b: SpanExportBatch) => b.bytes, deserializeResponse: (data: Uint8Array) => ProtobufTraceSerializer.deserializeResponse(data) };
  const counting = { name: 'span' as const, countItems: (b: SpanExportBatch) => b.count };
  if (config.protocol === 'grpc') {
    const [otlp, grpc] = await Promise.all([import('@opentelemetry/otlp-grpc-exporter-base'), import('@grpc/grpc-js')]);
    const secure = config.endpoint.startsWith('https:');
    const options = otlp.convertLegacyOtlpGrpcOptions({
      url: config.endpoint,
      credentials: secure ? grpc.credentials.createSsl() : grpc.credentials.createInsecure(),
      timeoutMillis: config.exportTimeoutMs,
    }, 'TRACES');
    return new OTLPExporterBase(otlp.createOtlpGrpcExportDelegate(options, serializer, 'otlp_grpc_span_exporter', counting, undefined, 'TraceExportService', '/opentelemetry.proto.collector.trace.v1.TraceService/Export'));
  }
  const http = await import('@opentelemetry/otlp-exporter-base/node-http');
  const options = http.convertLegacyHttpOptions({ url: config.endpoint, timeoutMillis: config.exportTimeoutMs, concurrencyLimit: 2 }, 'TRACES', 'v1/traces', { 'Content-Type': 'application/x-protobuf' });
  return new OTLPExporterBase(http.createOtlpHttpExportDelegate(options, serializer, 'otlp_http_span_exporter', counting, undefined));
}

export class TraceExport implements SpanSink {
  /** Spans waiting, encoded as they came (oldest chunk first; the last is being filled). */
  private chunks: SpanChunk[] = [];
  /** Spans in `chunks`: at most maxQueueSize. */
  private queued = 0;
  private exporting = false;
  private closed = false;
  private readonly timer: NodeJS.Timeout;
  private readonly config: TracingConfig;
  private readonly exporter: BatchExporter;
  private resource: EncodedResource;
  private readonly dropped: { inc(labels: { reason: string }, by?: number): void };
  private readonly exported: Counter;
  private readonly failures: Counter;

  /** `resource` may be replaced once the node knows its id (`identify`), before the first export. */
  constructor(config: TracingConfig, exporter: BatchExporter, resource: Resource, registry: Registry) {
    this.config = config;
    this.exporter = exporter;
    this.resource = encodedResource(resource);
    const registers = [registry];
    this.dropped = new Counter({ name: 'weft_tracing_spans_dropped_total', help: 'Finished spans dropped before export, by reason (queue_full: the export queue was at tracing.maxQueueSize; worker_buffer: a worker\'s batch was full; export_failed: the collector did not take them; unencodable: a span the OTLP encoder could not write)', labelNames: ['reason'], registers });
    this.exported = new Counter({ name: 'weft_tracing_spans_exported_total', help: 'Spans the collector accepted', registers });
    this.failures = new Counter({ name: 'weft_tracing_export_failures_total', help: 'Exports that failed (their spans are dropped)', registers });
    const queue = (): number => this.queued;
    new Gauge({ name: 'weft_tracing_queue_spans', help: 'Finished spans waiting for export', registers, collect() { this.set(queue()); } });
    this.timer = setInterval(() => this.exportSome(), config.exportIntervalMs);
    this.timer.unref();
  }

  identify(resource: Resource): void {
    this.resource = encodedResource(resource);
  }

  add(span: SpanData): void {
    if (this.queued >= this.config.maxQueueSize || this.closed) {
      this.dropped.inc({ reason: 'queue_full' });
      return;
    }
    let chunk = this.chunks.at(-1);
    if (chunk === undefined || chunk.count >= this.config.maxExportBatchSize) {
      chunk = SpanChunk.for(this.resource, Math.min(this.config.maxExportBatchSize, 64) * 384);
      this.chunks.push(chunk);
    }
    if (chunk.add(span)) this.queued++;
    else this.dropped.inc({ reason: 'unencodable' });
  }

  /**
   * A worker's batch, encoded there: its bytes join the queue as they are. A batch that does not
   * fit the queue whole is dropped whole.
   */
  absorb(batch: SpanBatch): void {
    if (batch.dropped > 0) this.dropped.inc({ reason: 'worker_buffer' }, batch.dropped);
    if (batch.count === 0) return;
    if (this.queued + batch.count > this.config.maxQueueSize || this.closed) {
      this.dropped.inc({ reason: 'queue_full' }, batch.count);
      return;
    }
    let chunk = this.chunks.at(-1);
    if (chunk === undefined || chunk.count + batch.count > this.config.maxExportBatchSize) {
      chunk = SpanChunk.for(this.resource, batch.bytes.length);
      this.chunks.push(chunk);
    }
    chunk.append(batch.bytes, batch.count);
    this.queued += batch.count;
  }

  private exportSome(): void {
    if (this.exporting) return;
    const chunk = this.chunks.shift();
    if (chunk === undefined) return;
    const count = chunk.count;
    this.queued -= count;
    this.exporting = true;
    const request: SpanExportBatch = { bytes: chunk.request(this.resource), count };
    // Guard against an exporter that never calls back: the next export is not held up forever.
    let done = false;
    const guard = setTimeout(() => finish({ code: -1 }), this.config.exportTimeoutMs + 1000);
    guard.unref();
    const finish = (result: { code: number }): void => {
      if (done) return;
      done = true;
      clearTimeout(guard);
      this.exporting = false;
      if (result.code === SUCCESS) this.exported.inc(count);
      else {
        this.failures.inc();
        this.dropped.inc({ reason: 'export_failed' }, count);
      }
      // a full chunk waiting: go on at once rather than at the next tick
      if (this.chunks.length > 1) setImmediate(() => this.exportSome());
    };
    try {
      this.exporter.export(request, finish);
    } catch {
      finish({ code: -1 });
    }
  }

  /** Exports what is queued, for up to `ms`. */
  async flush(ms = 5000): Promise<void> {
    const until = Date.now() + ms;
    while ((this.queued > 0 || this.exporting) && Date.now() < until) {
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
