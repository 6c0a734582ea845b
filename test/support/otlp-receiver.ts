/**
 * An OTLP trace receiver in the test process, over HTTP (`POST /v1/traces`) or gRPC (`TraceService/Export`):
 * a protobuf ExportTraceServiceRequest, decoded with protobufjs against test/fixtures/otlp/trace.proto
 * (the few messages a test reads). Spans are kept flat, with their resource's attributes.
 */
import { createServer } from 'node:http';
import * as grpc from '@grpc/grpc-js';
import type { AddressInfo } from 'node:net';
import { fileURLToPath } from 'node:url';
import protobuf from 'protobufjs';

const PROTO = fileURLToPath(new URL('../fixtures/otlp/trace.proto', import.meta.url));

/** OTLP's span kinds (the API's plus one). */
export const OtlpKind = { INTERNAL: 1, SERVER: 2, CLIENT: 3 } as const;

export interface ReceivedSpan {
  readonly traceId: string;
  readonly spanId: string;
  /** '' for a root span. */
  readonly parentSpanId: string;
  readonly traceState: string;
  readonly name: string;
  readonly kind: number;
  readonly startNs: bigint;
  readonly endNs: bigint;
  readonly attributes: Record<string, string | number | boolean>;
  readonly events: ReadonlyArray<{ name: string; attributes: Record<string, string | number | boolean> }>;
  readonly status: { code: number; message: string };
  readonly resource: Record<string, string | number | boolean>;
}

type KV = { key: string; value?: { stringValue?: string; boolValue?: boolean; intValue?: number | string; doubleValue?: number } };

function attrs(list: KV[] | undefined): Record<string, string | number | boolean> {
  const out: Record<string, string | number | boolean> = {};
  for (const kv of list ?? []) {
    const v = kv.value ?? {};
    out[kv.key] = v.stringValue ?? v.boolValue ?? (v.intValue !== undefined ? Number(v.intValue) : undefined) ?? v.doubleValue ?? '';
  }
  return out;
}

function hex(b: Uint8Array | undefined): string {
  return b === undefined || b.length === 0 ? '' : Buffer.from(b).toString('hex');
}

type Decoder = (bytes: Uint8Array) => unknown;

export class OtlpReceiver {
  readonly spans: ReceivedSpan[] = [];
  /** Export requests received (including ones the receiver refused). */
  requests = 0;
  private readonly decode: Decoder;
  private stop: () => Promise<void> = async () => {};
  /** While not null, answers wait here (a slow collector) until `release()`. */
  private waiting: Array<() => void> | null = null;
  private port = 0;

  private constructor(decode: Decoder) {
    this.decode = decode;
  }

  private static async decoder(): Promise<Decoder> {
    const root = await protobuf.load(PROTO);
    const Request = root.lookupType('weft.test.otlp.ExportTraceServiceRequest');
    return (bytes) => Request.toObject(Request.decode(bytes), { longs: String, bytes: Array, defaults: false });
  }

  /** An OTLP/HTTP receiver (`POST /v1/traces`). */
  static async start(): Promise<OtlpReceiver> {
    const r = new OtlpReceiver(await OtlpReceiver.decoder());
    const server = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        r.requests++;
        if (req.url !== '/v1/traces' || req.method !== 'POST') {
          res.writeHead(404).end();
          return;
        }
        r.ingest(Buffer.concat(chunks));
        r.answer(() => res.writeHead(200, { 'content-type': 'application/x-protobuf' }).end());
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    r.port = (server.address() as AddressInfo).port;
    r.stop = () => new Promise((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    });
    return r;
  }

  /** An OTLP/gRPC receiver (`opentelemetry.proto.collector.trace.v1.TraceService/Export`, plaintext). */
  static async startGrpc(): Promise<OtlpReceiver> {
    const r = new OtlpReceiver(await OtlpReceiver.decoder());
    const raw = (b: Buffer): Buffer => b;
    const server = new grpc.Server();
    server.addService({
      Export: { path: '/opentelemetry.proto.collector.trace.v1.TraceService/Export', requestStream: false, responseStream: false, requestSerialize: raw, requestDeserialize: raw, responseSerialize: raw, responseDeserialize: raw },
    }, {
      Export: (call: grpc.ServerUnaryCall<Buffer, Buffer>, cb: grpc.sendUnaryData<Buffer>) => {
        r.requests++;
        r.ingest(call.request);
        r.answer(() => cb(null, Buffer.alloc(0)));
      },
    });
    r.port = await new Promise<number>((resolve, reject) => server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, port) => (err ? reject(err) : resolve(port))));
    r.stop = async () => {
      server.forceShutdown();
    };
    return r;
  }

  /** From now on the receiver takes requests but holds its answers (a slow collector). */
  hold(): void {
    this.waiting ??= [];
  }

  /** Answers every held request, and answers at once again. */
  release(): void {
    const waiting = this.waiting ?? [];
    this.waiting = null;
    for (const answer of waiting) answer();
  }

  /** Requests received and not answered yet (held). */
  get held(): number {
    return this.waiting?.length ?? 0;
  }

  private answer(send: () => void): void {
    if (this.waiting !== null) this.waiting.push(send);
    else send();
  }

  private ingest(bytes: Uint8Array): void {
    const msg = this.decode(bytes) as {
      resourceSpans?: Array<{ resource?: { attributes?: KV[] }; scopeSpans?: Array<{ spans?: Array<Record<string, unknown>> }> }>;
    };
    for (const rs of msg.resourceSpans ?? []) {
      const resource = attrs(rs.resource?.attributes);
      for (const ss of rs.scopeSpans ?? []) {
        for (const s of ss.spans ?? []) {
          const status = (s['status'] ?? {}) as { code?: number; message?: string };
          this.spans.push({
            traceId: hex(Uint8Array.from(s['traceId'] as number[])),
            spanId: hex(Uint8Array.from(s['spanId'] as number[])),
            parentSpanId: hex(s['parentSpanId'] === undefined ? undefined : Uint8Array.from(s['parentSpanId'] as number[])),
            traceState: (s['traceState'] as string | undefined) ?? '',
            name: s['name'] as string,
            kind: (s['kind'] as number | undefined) ?? 0,
            startNs: BigInt(s['startTimeUnixNano'] as string),
            endNs: BigInt(s['endTimeUnixNano'] as string),
            attributes: attrs(s['attributes'] as KV[] | undefined),
            events: ((s['events'] ?? []) as Array<{ name: string; attributes?: KV[] }>).map((e) => ({ name: e.name, attributes: attrs(e.attributes) })),
            status: { code: status.code ?? 0, message: status.message ?? '' },
            resource,
          });
        }
      }
    }
  }

  /** `host:port`, as Dapr's `otel.endpointAddress` takes it. */
  get address(): string {
    return `127.0.0.1:${this.port}`;
  }

  trace(traceId: string): ReceivedSpan[] {
    return this.spans.filter((s) => s.traceId === traceId);
  }

  /** Waits (bounded) until `traceId` has at least `n` spans, and returns them. */
  async waitFor(traceId: string, n: number, ms = 10_000): Promise<ReceivedSpan[]> {
    const end = Date.now() + ms;
    for (;;) {
      const found = this.trace(traceId);
      if (found.length >= n || Date.now() > end) return found;
      await new Promise((r) => setTimeout(r, 25));
    }
  }

  close(): Promise<void> {
    return this.stop();
  }
}
