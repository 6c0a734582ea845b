/**
 * The app channel: how a node calls an app it serves. One small interface, one implementation
 * per family of Dapr's app protocols, chosen by the app's `appProtocol`:
 * - http, https, h2c: HTTP (src/appchannel/http.ts; undici, HTTP/1.1 or HTTP/2 cleartext);
 * - grpc, grpcs: Dapr's AppCallback/OnInvoke (src/appchannel/grpc.ts; grpc-js).
 *
 * Whatever the protocol, a call is HTTP-shaped (method, verb, query, headers, body) and so is
 * its answer (status, headers, body): the rest of the node never asks which protocol it spoke.
 * With TLS (https, grpcs) the app's certificate is not verified, as Dapr does not verify it: the
 * app is on the node's own host or pod, and its certificate is typically self-signed.
 */
import type { Readable } from 'node:stream';
import type { AppConfig } from '../config.ts';
import { HttpAppChannel } from './http.ts';
import { GrpcAppChannel } from './grpc.ts';

export interface AppRequest {
  /** Path below the app's root, without the leading slash. */
  readonly method: string;
  readonly verb: string;
  readonly query: string;
  /** Flat name/value list, already cleaned of hop-by-hop headers. */
  readonly headers: readonly string[];
  readonly body: Uint8Array | AsyncIterable<Uint8Array> | null;
  readonly signal: AbortSignal;
}

export interface AppResponse {
  readonly status: number;
  readonly headers: string[];
  readonly body: Readable;
  /** The whole body, when the channel read it all before answering (then `body` reads the same bytes). */
  readonly whole?: Uint8Array;
}

export interface AppChannel {
  readonly app: AppConfig;
  /**
   * Calls the app. The app's own answers, whatever their status, resolve; a failure to reach
   * it rejects with a WeftError (WEFT_APP_UNAVAILABLE, WEFT_DEADLINE_EXCEEDED, the signal's reason).
   */
  call(req: AppRequest): Promise<AppResponse>;
  close(): Promise<void>;
  destroy(): Promise<void>;
}

/** The channel for an app with an app port, by its protocol. */
export function createAppChannel(app: AppConfig): AppChannel {
  switch (app.appProtocol) {
    case 'grpc':
    case 'grpcs':
      return new GrpcAppChannel(app);
    case 'http':
    case 'https':
    case 'h2c':
      return new HttpAppChannel(app);
  }
}

/** Whether the app speaks HTTP to the node (actor callbacks need it: they are HTTP, as in Dapr). */
export function speaksHttp(app: AppConfig): boolean {
  return app.appProtocol === 'http' || app.appProtocol === 'https' || app.appProtocol === 'h2c';
}
