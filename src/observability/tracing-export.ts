/**
 * The node's one span exporter (main thread): spans made on this thread and batches the
 * workers send (`SpanBatch`) go into one bounded queue, exported over OTLP (http/protobuf or
 * gRPC: the OTel exporters' transports, weft's encoder) under the node's resource.
 *
 * The queue is the only place spans wait. It holds at most `maxQueueSize` spans; past that a
 * span is dropped and counted (`weft_tracing_spans_dropped_total`), so a collector that is down
 * costs memory up to the cap and never slows a call: adding a span encodes it into the chunk being
 * filled. A chunk is exported once full (right after the call that filled it) or at the
 * interval's tick, with at most `maxConcurrentExports` exports in flight, each bounded by
 * `exportTimeoutMs`; what waits for a place in flight stays in the bounded queue.
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
      concurrencyLimit: config.maxConcurrentExports,
    }, 'TRACES');
    return new OTLPExporterBase(otlp.createOtlpGrpcExportDelegate(options, serializer, 'otlp_grpc_span_exporter', counting, undefined, 'TraceExportService', '/opentelemetry.proto.collector.trace.v1.TraceService/Export'));
  }
  const http = await import('@opentelemetry/otlp-exporter-base/node-http');
  // the exporter's own limit must not refuse what TraceExport allows in flight
  const options = http.convertLegacyHttpOptions({ url: config.endpoint, timeoutMillis: config.exportTimeoutMs, concurrencyLimit: config.maxConcurrentExports }, 'TRACES', 'v1/traces', { 'Content-Type': 'application/x-protobuf' });
  return new OTLPExporterBase(http.createOtlpHttpExportDelegate(options, serializer, 'otlp_http_span_exporter', counting, undefined));
}

export class TraceExport implements SpanSink {
  /** Spans waiting, encoded as they came (oldest chunk first; only the last is still filled). */
  private chunks: SpanChunk[] = [];
  /** Spans in `chunks`: at most maxQueueSize. */
  private queued = 0;
  /** Exports sent and not yet answered: at most maxConcurrentExports. */
  private inFlight = 0;
  /** A pump is scheduled (setImmediate) for a chunk that filled. */
  private pumping = false;
  /** The size the next chunk's buffer starts at: what the last full chunk took, so it seldom grows. */
  private chunkBytes: number;
  private closed = false;
  private readonly timer: NodeJS.Timeout;
  private readonly config: TracingConfig;
  private readonly exporter: BatchExporter;
  private resource: EncodedResource;
  private readonly dropped: { inc(labels: { reason: string }, by?: number): void };
  private readonly exported: Counter;
  private readonly failures: Counter;
  private readonly pumpFull = (): void => {
    this.pumping = false;
    this.pump(false);
  };

  /** `resource` may be replaced once the node knows its id (`identify`), before the first export. */
  constructor(config: TracingConfig, exporter: BatchExporter, resource: Resource, registry: Registry) {
    this.config = config;
    this.exporter = exporter;
    this.resource = encodedResource(resource);
    this.chunkBytes = Math.min(config.maxExportBatchSize, 64) * 384;
    const registers = [registry];
    this.dropped = new Counter({ name: 'weft_tracing_spans_dropped_total', help: 'Finished spans dropped before export, by reason (queue_full: the export queue was at tracing.maxQueueSize; worker_buffer: a worker\'s batch was full; export_failed: the collector did not take them; unencodable: a span the OTLP encoder could not write)', labelNames: ['reason'], registers });
    this.exported = new Counter({ name: 'weft_tracing_spans_exported_total', help: 'Spans the collector accepted', registers });
    this.failures = new Counter({ name: 'weft_tracing_export_failures_total', help: 'Exports that failed (their spans are dropped)', registers });
    const queue = (): number => this.queued;
    new Gauge({ name: 'weft_tracing_queue_spans', help: 'Finished spans waiting for export', registers, collect() { this.set(queue()); } });
    const inFlight = (): number => this.inFlight;
    new Gauge({ name: 'weft_tracing_exports_in_flight', help: 'Exports sent to the collector and not yet answered', registers, collect() { this.set(inFlight()); } });
    this.timer = setInterval(() => this.pump(true), config.exportIntervalMs);
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
    if (chunk === undefined || chunk.count >= this.config.maxExportBatchSize) chunk = this.newChunk(this.chunkBytes);
    if (!chunk.add(span)) {
      this.dropped.inc({ reason: 'unencodable' });
      return;
    }
    this.queued++;
    if (chunk.count >= this.config.maxExportBatchSize) this.filled(chunk);
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
      if (chunk !== undefined) this.filled(chunk);
      chunk = this.newChunk(Math.max(batch.bytes.length, this.chunkBytes));
    }
    chunk.append(batch.bytes, batch.count);
    this.queued += batch.count;
    if (chunk.count >= this.config.maxExportBatchSize) this.filled(chunk);
  }

  private newChunk(size: number): SpanChunk {
    const chunk = SpanChunk.for(this.resource, size);
    this.chunks.push(chunk);
    return chunk;
  }

  /**
   * A chunk is full: it is exported as soon as the call that filled it is done (setImmediate),
   * not at the next tick, so at any rate the queue holds about one chunk while the collector
   * keeps up.
   */
  private filled(chunk: SpanChunk): void {
    // the next chunk starts as big as this one ended (+1/8): it seldom has to grow
    this.chunkBytes = Math.max(this.chunkBytes, chunk.bytes + (chunk.bytes >>> 3));
    this.schedulePump();
  }

  private schedulePump(): void {
    if (this.pumping || this.inFlight >= this.config.maxConcurrentExports) return;
    this.pumping = true;
    setImmediate(this.pumpFull);
  }

  /**
   * Sends chunks while fewer than maxConcurrentExports exports are in flight: the full ones
   * (every chunk but the last is full), and with `all` (the interval's tick, a flush) the one
   * still being filled too.
   */
  private pump(all: boolean): void {
    while (this.inFlight < this.config.maxConcurrentExports) {
      const n = this.chunks.length;
      if (n === 0) return;
      const head = this.chunks[0] as SpanChunk;
      if (n === 1 && !all && head.count < this.config.maxExportBatchSize) return;
      this.chunks.shift();
      if (head.count === 0) continue;
      this.send(head);
    }
  }

  private send(chunk: SpanChunk): void {
    const count = chunk.count;
    this.queued -= count;
    this.inFlight++;
    const request: SpanExportBatch = { bytes: chunk.request(this.resource), count };
    // Guard against an exporter that never calls back: its place in flight is not held forever.
    let done = false;
    const guard = setTimeout(() => finish({ code: -1 }), this.config.exportTimeoutMs + 1000);
    guard.unref();
    const finish = (result: { code: number }): void => {
      if (done) return;
      done = true;
      clearTimeout(guard);
      this.inFlight--;
      if (result.code === SUCCESS) this.exported.inc(count);
      else {
        this.failures.inc();
        this.dropped.inc({ reason: 'export_failed' }, count);
      }
      // full chunks that waited for a place in flight go now (never synchronously in the exporter's callback)
      const head = this.chunks[0];
      if (head !== undefined && (this.chunks.length > 1 || head.count >= this.config.maxExportBatchSize)) this.schedulePump();
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
    while ((this.queued > 0 || this.inFlight > 0) && Date.now() < until) {
      this.pump(true);
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
