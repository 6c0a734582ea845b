/**
 * The gRPC app channel (app protocols grpc and grpcs; see channel.ts): each call is Dapr's
 * `dapr.proto.runtime.v1.AppCallback/OnInvoke` on the app's own gRPC server, through one
 * grpc-js channel per app (HTTP/2 multiplexes the calls).
 *
 * The HTTP-shaped call maps onto `common.v1.InvokeRequest` as Dapr maps it:
 * - method → `method`, body → `data` (an Any: raw bytes with the type URL the caller gave, else
 *   none), `content-type` → `content_type`, verb and query → `http_extension` (verb, querystring);
 * - the other headers become the call's metadata (a `-bin` header is base64, as on the wire).
 *
 * And the answer back: an OK status is a 200 whose body is `data.value`, whose content type is
 * `content_type`, and whose headers are the app's response metadata and trailers. Any other
 * status is the app's answer too (never retried, never a node failure): the HTTP status Dapr
 * maps it to, a JSON body `{"code", "message"}` like Dapr's, and the status itself in
 * `grpc-status`, `grpc-message` and (when the app sent details) `grpc-status-details-bin`, so
 * that a caller on Dapr's gRPC API gets the app's status back unchanged (src/ingress/grpc.ts).
 *
 * Only a failure to reach the app (nothing answered) is a WeftError: WEFT_APP_UNAVAILABLE.
 */
import { Readable } from 'node:stream';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import type { AppConfig } from '../config.ts';
import { WeftError } from '../errors.ts';
import type { AppChannel, AppRequest, AppResponse } from './channel.ts';
import { HOP_BY_HOP } from './http.ts';
import { PROTO_ROOT } from '../paths.ts';

const APP_CALLBACK_PROTO = 'dapr/proto/runtime/v1/appcallback.proto';
export const ON_INVOKE_PATH = '/dapr.proto.runtime.v1.AppCallback/OnInvoke';

/**
 * The type URL of the request's `data` Any, carried as a header between the gRPC API and a gRPC
 * app so an InvokeService call reaches the app unchanged (and the answer's comes back the same way).
 */
export const TYPE_URL_HEADER = 'weft-data-type-url';

/** HTTPExtension.Verb by name (Dapr's numbers). */
const VERB_NUMBERS: Readonly<Record<string, number>> = {
  GET: 1, HEAD: 2, POST: 3, PUT: 4, DELETE: 5, CONNECT: 6, OPTIONS: 7, TRACE: 8, PATCH: 9,
};

/** Headers that are fields of InvokeRequest, or HTTP's own: not sent as metadata. */
const NOT_METADATA = new Set(['content-type', 'content-length', 'accept-encoding', 'expect', TYPE_URL_HEADER]);

/** HTTP status for an app's gRPC status (the usual gRPC → HTTP table; Dapr's). */
const HTTP_FROM_GRPC: readonly number[] = [200, 408, 500, 400, 504, 404, 409, 403, 429, 400, 409, 400, 501, 500, 503, 500, 401];

export function httpStatusFromGrpc(code: number): number {
  return HTTP_FROM_GRPC[code] ?? 500;
}

interface InvokeRequestMessage {
  method: string;
  data: { type_url: string; value: Buffer } | null;
  content_type: string;
  http_extension: { verb: number; querystring: string };
}
interface InvokeResponseMessage {
  data?: { type_url?: string; value?: Buffer } | null;
  content_type?: string;
}

let onInvoke: grpc.MethodDefinition<InvokeRequestMessage, InvokeResponseMessage> | undefined;

function onInvokeMethod(): grpc.MethodDefinition<InvokeRequestMessage, InvokeResponseMessage> {
  if (onInvoke === undefined) {
    const pkg = protoLoader.loadSync(APP_CALLBACK_PROTO, {
      includeDirs: [PROTO_ROOT], keepCase: true, longs: Number, enums: Number, defaults: true, oneofs: true,
    });
    const service = pkg['dapr.proto.runtime.v1.AppCallback'] as grpc.ServiceDefinition;
    onInvoke = service['OnInvoke'] as grpc.MethodDefinition<InvokeRequestMessage, InvokeResponseMessage>;
  }
  return onInvoke;
}

/** Credentials for the app: TLS without verifying its certificate (grpcs, as Dapr), else none. */
function appCredentials(app: AppConfig): grpc.ChannelCredentials {
  if (app.appProtocol !== 'grpcs') return grpc.credentials.createInsecure();
  return grpc.credentials.createSsl(null, null, null, { rejectUnauthorized: false, checkServerIdentity: () => undefined });
}

export class GrpcAppChannel implements AppChannel {
  readonly app: AppConfig;
  /** The channel to the app; proxied gRPC calls (src/peer/proxy.ts) use it with their own method paths. */
  readonly client: grpc.Client;
  private readonly method = onInvokeMethod();

  constructor(app: AppConfig) {
    if (app.appPort === undefined) throw new WeftError('WEFT_INTERNAL', `app ${app.appId} has no app port`);
    this.app = app;
    const host = app.appHost.includes(':') ? `[${app.appHost}]` : app.appHost;
    this.client = new grpc.Client(`${host}:${app.appPort}`, appCredentials(app), {
      // The node bounds bodies at its API; the app is trusted not to flood its own node.
      'grpc.max_receive_message_length': -1,
      'grpc.max_send_message_length': -1,
      'grpc.enable_retries': 0,
      'grpc.enable_channelz': 0,
      'grpc.initial_reconnect_backoff_ms': 100,
      'grpc.max_reconnect_backoff_ms': 2_000,
    });
  }

  async call(req: AppRequest): Promise<AppResponse> {
    const appId = this.app.appId;
    const body = await wholeBody(req.body);
    const md = new grpc.Metadata();
    let contentType = '';
    let typeUrl = '';
    for (let i = 0; i + 1 < req.headers.length; i += 2) {
      const name = (req.headers[i] as string).toLowerCase();
      const value = req.headers[i + 1] as string;
      if (name === 'content-type') contentType = value;
      else if (name === TYPE_URL_HEADER) typeUrl = value;
      if (NOT_METADATA.has(name) || HOP_BY_HOP.has(name) || name.startsWith(':') || name.startsWith('grpc-') || !/^[0-9a-z_.-]+$/.test(name)) continue;
      if (name.endsWith('-bin')) md.add(name, Buffer.from(value, 'base64'));
      else if (/^[ -~]*$/.test(value)) md.add(name, value);
    }
    const message: InvokeRequestMessage = {
      method: req.method,
      data: body.length === 0 && typeUrl === '' ? null : { type_url: typeUrl, value: body },
      content_type: contentType,
      http_extension: { verb: VERB_NUMBERS[req.verb.toUpperCase()] ?? VERB_NUMBERS['POST'] as number, querystring: req.query },
    };
    if (req.signal.aborted) throw this.aborted(req.signal);
    return new Promise<AppResponse>((resolve, reject) => {
      let headers: grpc.Metadata | null = null;
      let answer: InvokeResponseMessage | undefined;
      // The answer is complete with the status, which brings the trailers (the callback comes first).
      const call = this.client.makeUnaryRequest(
        this.method.path, this.method.requestSerialize, this.method.responseDeserialize, message, md, {},
        (_err: grpc.ServiceError | null, res?: InvokeResponseMessage) => {
          answer = res;
        },
      );
      call.on('metadata', (m: grpc.Metadata) => {
        headers = m;
      });
      call.on('status', (status: grpc.StatusObject) => {
        req.signal.removeEventListener('abort', cancel);
        if (req.signal.aborted) return reject(this.aborted(req.signal));
        if (status.code === grpc.status.OK) {
          const out = metadataHeaders(headers, status.metadata);
          const ct = answer?.content_type ?? '';
          if (ct !== '') out.push('content-type', ct);
          const url = answer?.data?.type_url ?? '';
          if (url !== '') out.push(TYPE_URL_HEADER, url);
          return resolve({ status: 200, headers: out, body: Readable.from([answer?.data?.value ?? Buffer.alloc(0)]) });
        }
        // Nothing came back from the app itself: it was not reached.
        if (headers === null && status.code === grpc.status.UNAVAILABLE && isTransportFailure(status.details)) {
          return reject(new WeftError('WEFT_APP_UNAVAILABLE', `app ${appId} at ${this.app.appHost}:${String(this.app.appPort)} failed: ${status.details}`, { appId }));
        }
        resolve(statusAnswer(status, headers));
      });
      const cancel = (): void => call.cancel();
      req.signal.addEventListener('abort', cancel, { once: true });
    });
  }

  private aborted(signal: AbortSignal): WeftError {
    const reason: unknown = signal.reason;
    if (reason instanceof WeftError) return reason;
    return new WeftError('WEFT_DEADLINE_EXCEEDED', `app ${this.app.appId} did not answer before the deadline`, { appId: this.app.appId });
  }

  async close(): Promise<void> {
    this.client.close();
  }

  async destroy(): Promise<void> {
    this.client.close();
  }
}

/**
 * grpc-js reports a connection it could not make (refused, reset, TLS failure) as UNAVAILABLE
 * with its own wording, and an app's UNAVAILABLE with the app's: only the former means "not reached".
 * An app answering has sent response headers first, which `call` checks before this.
 */
function isTransportFailure(details: string): boolean {
  return /No connection established|Connection dropped|ECONNREFUSED|Failed to connect/.test(details);
}

/** The request body whole (OnInvoke is unary). The node's ingress bounds its size. */
async function wholeBody(body: AppRequest['body']): Promise<Buffer> {
  if (body === null) return Buffer.alloc(0);
  if (body instanceof Uint8Array) return Buffer.from(body.buffer, body.byteOffset, body.byteLength);
  const chunks: Buffer[] = [];
  for await (const c of body) chunks.push(Buffer.from(c.buffer, c.byteOffset, c.byteLength));
  return Buffer.concat(chunks);
}

/** Response metadata (and trailers) as HTTP headers: `-bin` values base64, as gRPC writes them. */
function metadataHeaders(...all: Array<grpc.Metadata | null | undefined>): string[] {
  const out: string[] = [];
  for (const md of all) {
    if (md === null || md === undefined) continue;
    for (const name of Object.keys(md.getMap())) {
      if (name.startsWith(':') || name === 'content-type' || HOP_BY_HOP.has(name)) continue;
      for (const v of md.get(name)) out.push(name, typeof v === 'string' ? v : v.toString('base64'));
    }
  }
  return out;
}

/** An app's non-OK status as its HTTP-shaped answer (see the top of this file). */
function statusAnswer(err: grpc.StatusObject, headers: grpc.Metadata | null): AppResponse {
  const out = metadataHeaders(headers, err.metadata);
  // grpc-js keeps grpc-status-details-bin in the trailers; grpc-status and grpc-message it consumes.
  out.push('grpc-status', String(err.code), 'grpc-message', encodeURIComponent(err.details), 'content-type', 'application/json');
  const body = Buffer.from(JSON.stringify({ code: err.code, message: err.details, details: [] }));
  return { status: httpStatusFromGrpc(err.code), headers: out, body: Readable.from([body]) };
}
