/**
 * An OTLP/HTTP trace receiver in the test process: `POST /v1/traces` with a protobuf
 * ExportTraceServiceRequest, decoded with protobufjs against test/fixtures/otlp/trace.proto
 * (the few messages a test reads). Spans are kept flat, with their resource's attributes.
 */
import { createServer, type Server } from 'node:http';
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

export class OtlpReceiver {
  readonly spans: ReceivedSpan[] = [];
  /** Export requests received (including ones the receiver refused). */
  requests = 0;
  private readonly server: Server;
  private port = 0;

  private constructor(server: Server) {
    this.server = server;
  }

  static async start(): Promise<OtlpReceiver> {
    const root = await protobuf.load(PROTO);
    const Request = root.lookupType('weft.test.otlp.ExportTraceServiceRequest');
    let receiver: OtlpReceiver | undefined;
    const server = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        const r = receiver as OtlpReceiver;
        r.requests++;
        if (req.url !== '/v1/traces' || req.method !== 'POST') {
          res.writeHead(404).end();
          return;
        }
        const msg = Request.toObject(Request.decode(Buffer.concat(chunks)), { longs: String, bytes: Array, defaults: false }) as {
          resourceSpans?: Array<{ resource?: { attributes?: KV[] }; scopeSpans?: Array<{ spans?: Array<Record<string, unknown>> }> }>;
        };
        for (const rs of msg.resourceSpans ?? []) {
          const resource = attrs(rs.resource?.attributes);
          for (const ss of rs.scopeSpans ?? []) {
            for (const s of ss.spans ?? []) {
              const status = (s['status'] ?? {}) as { code?: number; message?: string };
              r.spans.push({
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
        res.writeHead(200, { 'content-type': 'application/x-protobuf' }).end();
      });
    });
    receiver = new OtlpReceiver(server);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    receiver.port = (server.address() as AddressInfo).port;
    return receiver;
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
    return new Promise((resolve) => {
      this.server.closeAllConnections();
      this.server.close(() => resolve());
    });
  }
}
