/**
 * gRPC proxy mode, the parts both nodes share (Dapr's proxying by `dapr-app-id` metadata).
 *
 * A proxied call crosses three gRPC calls, each relayed into the next without decoding a message:
 *
 *   client ──(any method, on node A's API port)──▶ node A ──Peer/Proxy (mTLS)──▶ node B ──(same method)──▶ app
 *
 * The hop between the nodes is itself a transparent gRPC call (`weft.peer.v1.Peer/Proxy`): its
 * messages are the client's and the app's own bytes; the call's head (target app, method path)
 * travels as metadata beside the client's; the app's response metadata, messages, status and
 * trailers come back as that call's own. So grpc-js carries framing, flow control, deadlines and
 * cancellation on every hop, and each hop relays four things: messages (both ways), the
 * request's half-close, the response metadata, and the final status.
 *
 * Flow control: a message is read from one side only when the other side's writer has room
 * (`write()` returned true, or 'drain' came), so on each node at most a writer's high-water
 * mark of messages waits per direction, and a slow reader anywhere slows the writer at the far
 * end through HTTP/2 flow control. Cancellation and deadlines: a cancelled inbound call cancels
 * the outbound one; each outbound call carries the inbound deadline.
 */
import * as grpc from '@grpc/grpc-js';

/** Metadata keys of the Peer/Proxy call's head (set by node A; any a client sends is dropped). */
export const PROXY_APP_KEY = 'weft-proxy-app-id';
export const PROXY_NAMESPACE_KEY = 'weft-proxy-namespace';
export const PROXY_PATH_KEY = 'weft-proxy-path';
/** Plaintext between nodes only: the calling app, as node A vouches for it. */
export const PROXY_CALLER_KEY = 'weft-proxy-caller-app-id';
export const PROXY_CALLER_NAMESPACE_KEY = 'weft-proxy-caller-namespace';

/** Messages pass as they are: never decoded. */
export function identity(b: Buffer): Buffer {
  return b;
}

/**
 * Metadata of one hop that must not reach the next: HTTP/2's and gRPC's own (each hop sets
 * them itself; the deadline travels as the call's deadline), and weft's and Dapr's routing keys.
 */
const HOP_KEYS = new Set([
  'content-type', 'te', 'user-agent', 'host', 'connection', 'grpc-timeout', 'grpc-encoding', 'grpc-accept-encoding',
  'grpc-status', 'grpc-message', 'accept-encoding', 'dapr-api-token', 'dapr-app-id', 'dapr-stream',
  'dapr-caller-app-id', 'dapr-caller-namespace', 'dapr-callee-app-id',
]);

/** A copy of `md` without the hop's own keys (and without any `weft-` key, which weft sets itself). */
export function relayable(md: grpc.Metadata, keepWeft = false): grpc.Metadata {
  const out = new grpc.Metadata();
  for (const key of Object.keys(md.getMap())) {
    if (key.startsWith(':') || HOP_KEYS.has(key) || (!keepWeft && key.startsWith('weft-'))) continue;
    for (const v of md.get(key)) out.add(key, v);
  }
  return out;
}

export interface SpliceResult {
  /** The status the inbound call was ended with (the outbound's, or CANCELLED when the inbound caller went away). */
  readonly code: grpc.status;
  /** True when the inbound side cancelled (client cancel, deadline passed, connection lost). */
  readonly cancelled: boolean;
}

/**
 * Relays an inbound server call into an outbound client call and back until the outbound
 * status arrives (passed to the inbound call unchanged) or the inbound call is cancelled (the
 * outbound call is cancelled). `onHeaders` may change the response metadata before it is sent.
 */
export function splice(
  inbound: grpc.ServerDuplexStream<Buffer, Buffer>,
  outbound: grpc.ClientDuplexStream<Buffer, Buffer>,
  onHeaders: (md: grpc.Metadata) => grpc.Metadata = relayable,
): Promise<SpliceResult> {
  return new Promise((resolve) => {
    let done = false;
    let cancelled = false;
    const finish = (code: grpc.status): void => {
      if (done) return;
      done = true;
      resolve({ code, cancelled });
    };

    // Requests: inbound → outbound, paused while the outbound writer is full.
    inbound.on('data', (msg: Buffer) => {
      if (!outbound.write(msg)) {
        inbound.pause();
        outbound.once('drain', () => inbound.resume());
      }
    });
    inbound.on('end', () => outbound.end());
    const cancel = (): void => {
      if (done) return;
      cancelled = true;
      outbound.cancel();
      finish(grpc.status.CANCELLED);
    };
    // Client cancel, deadline passed, connection lost: grpc-js reports each as 'cancelled'.
    inbound.on('cancelled', cancel);

    // Answers: outbound → inbound, paused while the inbound writer is full.
    outbound.on('metadata', (md: grpc.Metadata) => {
      if (!inbound.cancelled) inbound.sendMetadata(onHeaders(md));
    });
    outbound.on('data', (msg: Buffer) => {
      if (!inbound.write(msg)) {
        outbound.pause();
        inbound.once('drain', () => outbound.resume());
      }
    });
    // grpc-js reports a non-OK status as 'error' as well as 'status': 'status' alone decides.
    // It may come while answers still wait in the outbound reader (paused by a full inbound
    // writer): the inbound call ends only once they are all passed on ('end', which grpc-js
    // always signals before the status).
    outbound.on('error', () => {});
    let status: grpc.StatusObject | null = null;
    let drained = false;
    const close = (): void => {
      if (done || status === null || !drained) return;
      finish(status.code);
      const trailers = relayable(status.metadata, true);
      if (status.code === grpc.status.OK) {
        inbound.end(trailers);
      } else {
        // grpc-js ends the call once the messages already written are out, then sends this status.
        inbound.emit('error', { code: status.code, details: status.details, metadata: trailers } satisfies Partial<grpc.StatusObject>);
      }
    };
    outbound.on('end', () => {
      drained = true;
      close();
    });
    outbound.on('status', (s: grpc.StatusObject) => {
      status = s;
      close();
    });
  });
}

export interface ProxyHead {
  readonly appId: string;
  readonly namespace: string;
  /** The gRPC method path, `/package.Service/Method`. */
  readonly path: string;
  readonly callerAppId: string;
  readonly callerNamespace: string;
}

function first(md: grpc.Metadata, key: string): string {
  const v = md.get(key)[0];
  return typeof v === 'string' ? v : '';
}

/** The head node A put in the Peer/Proxy call's metadata. */
export function proxyHead(md: grpc.Metadata): ProxyHead {
  return {
    appId: first(md, PROXY_APP_KEY), namespace: first(md, PROXY_NAMESPACE_KEY), path: first(md, PROXY_PATH_KEY),
    callerAppId: first(md, PROXY_CALLER_KEY), callerNamespace: first(md, PROXY_CALLER_NAMESPACE_KEY),
  };
}
