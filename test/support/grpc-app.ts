/**
 * A gRPC app for tests, on grpc-js: Dapr's AppCallback/OnInvoke (built from weft's own
 * proto/…/appcallback.proto) that records what it receives and answers by method:
 * - `echo`: OK, the request's data (type URL and value) and content type back, with response
 *   metadata `x-app-header: yes` and a trailer `x-app-trailer: done`;
 * - `fail`: NOT_FOUND "no such thing" with a `google.rpc.Status` in `grpc-status-details-bin`
 *   (see `FAIL_DETAILS`);
 * - `hang`: never answers; records its cancellation in `cancelled`.
 */
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';

export const PROTO_ROOT = fileURLToPath(new URL('../../proto/', import.meta.url));

export interface OnInvokeRequest {
  method: string;
  data: { type_url: string; value: Buffer } | null;
  content_type: string;
  http_extension: { verb: number; querystring: string } | null;
}

export interface ReceivedCall {
  readonly request: OnInvokeRequest;
  readonly metadata: Record<string, string>;
}

/** The details the `fail` method sends: a google.rpc.Status, bytes as they go on the wire. */
export const FAIL_DETAILS = Buffer.from([0x08, 0x05, 0x12, 0x0d, ...Buffer.from('no such thing')]);

export interface GrpcTestApp {
  readonly port: number;
  readonly received: ReceivedCall[];
  readonly cancelled: string[];
  close(): Promise<void>;
}

export function appCallbackService(): grpc.ServiceDefinition {
  const pkg = protoLoader.loadSync('dapr/proto/runtime/v1/appcallback.proto', {
    includeDirs: [PROTO_ROOT], keepCase: true, longs: Number, enums: Number, defaults: true, oneofs: true,
  });
  return pkg['dapr.proto.runtime.v1.AppCallback'] as grpc.ServiceDefinition;
}

export async function startGrpcApp(credentials: grpc.ServerCredentials = grpc.ServerCredentials.createInsecure()): Promise<GrpcTestApp> {
  const received: ReceivedCall[] = [];
  const cancelled: string[] = [];
  const server = new grpc.Server({ 'grpc.max_receive_message_length': -1 });
  server.addService(appCallbackService(), {
    OnInvoke: (call: grpc.ServerUnaryCall<OnInvokeRequest, unknown>, cb: grpc.sendUnaryData<unknown>) => {
      const metadata: Record<string, string> = {};
      for (const [k, v] of Object.entries(call.metadata.getMap())) metadata[k] = typeof v === 'string' ? v : v.toString('base64');
      received.push({ request: call.request, metadata });
      const { method } = call.request;
      if (method === 'echo') {
        const md = new grpc.Metadata();
        md.set('x-app-header', 'yes');
        call.sendMetadata(md);
        const trailer = new grpc.Metadata();
        trailer.set('x-app-trailer', 'done');
        cb(null, { data: call.request.data, content_type: call.request.content_type }, trailer);
      } else if (method === 'fail') {
        const md = new grpc.Metadata();
        md.set('grpc-status-details-bin', FAIL_DETAILS);
        md.set('x-why', 'missing');
        cb({ code: grpc.status.NOT_FOUND, details: 'no such thing', metadata: md });
      } else if (method === 'hang') {
        call.on('cancelled', () => cancelled.push(method));
      } else {
        cb({ code: grpc.status.UNIMPLEMENTED, details: `no method ${method}` });
      }
    },
  });
  const port = await new Promise<number>((resolve, reject) => {
    server.bindAsync('127.0.0.1:0', credentials, (err, p) => (err ? reject(err) : resolve(p)));
  });
  return {
    port, received, cancelled,
    close: () => new Promise<void>((resolve) => {
      server.tryShutdown(() => resolve());
      setTimeout(() => {
        server.forceShutdown();
        resolve();
      }, 500).unref();
    }),
  };
}
