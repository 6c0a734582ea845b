/**
 * The load generator's gRPC target: Dapr's `InvokeService` on a node's gRPC API, sent with
 * @grpc/grpc-js over `connections` channels of their own (one HTTP/2 connection each), used
 * in turn.
 *
 * The request is encoded once, by hand (proto/dapr/proto/runtime/v1/dapr.proto and
 * common/v1/common.proto give the field numbers), and sent with an identity serializer; the
 * answer is not decoded. So the generator pays for grpc-js's call machinery and nothing more,
 * as the HTTP target pays for undici's.
 *
 * URL: `grpc://host:port/<appId>/<method>[?query]`, e.g. `grpc://127.0.0.1:50001/testapp/test`.
 * `{id}` in the method or query works as in the HTTP target (one encoded request per id).
 * Two other forms call a gRPC app's own methods, for the gRPC-app and proxy-mode paths:
 * - `grpc+oninvoke://host:port`: Dapr's `AppCallback/OnInvoke` with a pre-encoded InvokeRequest
 *   (method `test`, the body as data): a gRPC app called directly, as its node would call it;
 * - `grpc+call://host:port/<package.Service>/<Method>[?key=value...]`: that method, the body as the
 *   raw request message; the query's pairs are sent as metadata (e.g. `dapr-app-id=testapp` for
 *   Dapr's proxy mode on a node's gRPC port).
 * An OK answer counts as status 200; a gRPC error as an error whose code is `GRPC_<STATUS>`
 * (DEADLINE_EXCEEDED counts as a timeout).
 */
import * as grpc from '@grpc/grpc-js';
import { DEFAULT_IDS, expandIds, ID_PLACEHOLDER, type LoadTarget } from './target.ts';

export const INVOKE_SERVICE_PATH = '/dapr.proto.runtime.v1.Dapr/InvokeService';
export const ON_INVOKE_PATH = '/dapr.proto.runtime.v1.AppCallback/OnInvoke';

/** common.v1.HTTPExtension.Verb by name. */
export const VERB_NUMBERS: Readonly<Record<string, number>> = {
  GET: 1, HEAD: 2, POST: 3, PUT: 4, DELETE: 5, CONNECT: 6, OPTIONS: 7, TRACE: 8, PATCH: 9,
};

export interface InvokeServiceFields {
  /** The target app: `appId` or `appId.namespace` (InvokeServiceRequest.id = 1). */
  appId: string;
  /** InvokeRequest.method = 1. */
  method: string;
  /** InvokeRequest.data = 2: Any.value = 2 (type_url left empty). */
  data: Uint8Array;
  /** InvokeRequest.content_type = 3. */
  contentType: string;
  /** HTTPExtension.verb = 1 (InvokeRequest.http_extension = 4). */
  verb: string;
  /** HTTPExtension.querystring = 2, without the `?`. */
  querystring: string;
}

function varint(n: number): number[] {
  const out: number[] = [];
  while (n > 0x7f) {
    out.push((n & 0x7f) | 0x80);
    n = Math.floor(n / 128);
  }
  out.push(n);
  return out;
}

/** A length-delimited field (wire type 2); proto3 leaves an empty one out. */
function bytesField(field: number, value: Uint8Array | string): Buffer {
  const bytes = typeof value === 'string' ? Buffer.from(value, 'utf8') : value;
  if (bytes.length === 0) return Buffer.alloc(0);
  return Buffer.concat([Buffer.from([(field << 3) | 2, ...varint(bytes.length)]), bytes]);
}

/** A varint field (wire type 0); proto3 leaves 0 out. */
function varintField(field: number, value: number): Buffer {
  return value === 0 ? Buffer.alloc(0) : Buffer.from([(field << 3) | 0, ...varint(value)]);
}

/** The wire bytes of a `dapr.proto.common.v1.InvokeRequest` (what OnInvoke takes). */
export function encodeInvokeRequest(f: Omit<InvokeServiceFields, 'appId'>): Buffer {
  const verb = VERB_NUMBERS[f.verb.toUpperCase()];
  if (verb === undefined) throw new Error(`not an HTTPExtension verb: ${f.verb}`);
  const any = bytesField(2, f.data);
  const httpExtension = Buffer.concat([varintField(1, verb), bytesField(2, f.querystring)]);
  return Buffer.concat([
    bytesField(1, f.method),
    // An empty body is still an Any (with nothing in it), as the SDKs send it.
    Buffer.from([(2 << 3) | 2, ...varint(any.length)]), any,
    bytesField(3, f.contentType),
    bytesField(4, httpExtension),
  ]);
}

/** The wire bytes of a `dapr.proto.runtime.v1.InvokeServiceRequest`. */
export function encodeInvokeServiceRequest(f: InvokeServiceFields): Buffer {
  return Buffer.concat([bytesField(1, f.appId), bytesField(3, encodeInvokeRequest(f))]);
}

/** What a `grpc+oninvoke:` or `grpc+call:` URL asks for: the address, the method path, metadata pairs. */
export function parseAppCallUrl(url: string): { address: string; path: string; metadata: [string, string][]; onInvoke: boolean } {
  const onInvoke = /^grpc\+oninvoke:\/\/([^/?#]+)\/?$/.exec(url);
  if (onInvoke !== null) return { address: onInvoke[1]!, path: ON_INVOKE_PATH, metadata: [], onInvoke: true };
  const m = /^grpc\+call:\/\/([^/?#]+)(\/[^/?#]+\/[^/?#]+)(?:\?([^#]*))?$/.exec(url);
  if (m === null) throw new Error(`a gRPC app target is grpc+oninvoke://host:port or grpc+call://host:port/<package.Service>/<Method>[?key=value] (got ${url})`);
  return { address: m[1]!, path: m[2]!, metadata: [...new URLSearchParams(m[3] ?? '')], onInvoke: false };
}

/** `grpc://host:port/<appId>/<method>[?query]` → the address and the call's fields (templates kept). */
export function parseGrpcUrl(url: string): { address: string; appId: string; method: string; querystring: string } {
  const m = /^grpc:\/\/([^/?#]+)\/([^/?#]+)\/([^?#]+)(?:\?([^#]*))?$/.exec(url);
  if (m === null) throw new Error(`a gRPC target is grpc://host:port/<appId>/<method>[?query] (got ${url})`);
  return { address: m[1]!, appId: decodeURIComponent(m[2]!), method: m[3]!, querystring: m[4] ?? '' };
}

export interface GrpcTargetOptions {
  /** `grpc://host:port/<appId>/<method>[?query]`. */
  url: string;
  /** The HTTP verb the app sees (HTTPExtension.verb). Default POST. */
  method?: string;
  /** Body bytes (InvokeRequest.data). Default 1024. */
  bodySize?: number;
  /** Channels, each with its own connection, used in turn. Default 16. */
  connections?: number;
  /** Per-call deadline, ms. Default 10,000. */
  timeoutMs?: number;
  /** Sent as metadata with every call (the app sees them as headers). */
  headers?: Record<string, string>;
  /** Values of `{id}`, as for the HTTP target. */
  ids?: number;
}

const identity = (b: Buffer): Buffer => b;

export class GrpcTarget implements LoadTarget {
  readonly connections: number;
  readonly timeoutMs: number;
  /** The encoded requests, used in turn (one unless the URL has `{id}`). */
  readonly messages: Buffer[];
  readonly #clients: grpc.Client[];
  readonly #headers: [string, string][];
  readonly #path: string;
  #next = 0;
  #client = 0;

  constructor(options: GrpcTargetOptions) {
    this.connections = options.connections ?? 16;
    this.timeoutMs = options.timeoutMs ?? 10_000;
    const bodySize = options.bodySize ?? 1024;
    const data = Buffer.alloc(bodySize, 'x');
    let address: string;
    let metadata: [string, string][] = [];
    if (options.url.startsWith('grpc+')) {
      const app = parseAppCallUrl(options.url);
      address = app.address;
      metadata = app.metadata;
      this.#path = app.path;
      this.messages = [app.onInvoke
        ? encodeInvokeRequest({ method: 'test', data, contentType: bodySize > 0 ? 'application/octet-stream' : '', verb: options.method ?? 'POST', querystring: '' })
        : data];
    } else {
      const target = parseGrpcUrl(options.url);
      address = target.address;
      this.#path = INVOKE_SERVICE_PATH;
      const ids = options.ids ?? DEFAULT_IDS;
      // One template for method and query together, so that one {id} counter drives both.
      const SEP = '\u0000';
      const calls = expandIds(target.method + SEP + target.querystring, ids);
      this.messages = calls.map((call) => {
        const [method = '', querystring = ''] = call.split(SEP);
        return encodeInvokeServiceRequest({
          appId: target.appId, method: decodeURIComponent(method), data, contentType: bodySize > 0 ? 'application/octet-stream' : '',
          verb: options.method ?? 'POST', querystring,
        });
      });
      if (target.appId.includes(ID_PLACEHOLDER)) throw new Error('{id} is not supported in the app id');
    }
    this.#headers = [...metadata, ...Object.entries(options.headers ?? {})];
    this.#clients = [];
    for (let i = 0; i < this.connections; i++) {
      // A local subchannel pool per client: otherwise grpc-js shares one connection among them all.
      this.#clients.push(new grpc.Client(address, grpc.credentials.createInsecure(), {
        'grpc.use_local_subchannel_pool': 1,
        'grpc.max_receive_message_length': -1,
        'grpc.enable_retries': 0,
      }));
    }
  }

  send(done: (status: number, err: Error | null) => void): void {
    const message = this.messages[this.#next]!;
    if (++this.#next === this.messages.length) this.#next = 0;
    const client = this.#clients[this.#client]!;
    if (++this.#client === this.#clients.length) this.#client = 0;
    const metadata = new grpc.Metadata();
    for (const [k, v] of this.#headers) metadata.set(k, v);
    client.makeUnaryRequest(this.#path, identity, identity, message, metadata, { deadline: Date.now() + this.timeoutMs }, (err) => {
      if (err === null || err === undefined) done(200, null);
      else done(0, grpcError(err));
    });
  }

  async close(): Promise<void> {
    for (const c of this.#clients) c.close();
  }
}

/** A grpc-js ServiceError as an error the tally files by its `GRPC_<STATUS>` code. */
function grpcError(err: grpc.ServiceError): Error {
  const out = new Error(err.details || err.message) as Error & { code: string };
  out.code = `GRPC_${grpc.status[err.code] ?? err.code}`;
  return out;
}
