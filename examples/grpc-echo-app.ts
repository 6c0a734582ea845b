/**
 * A small gRPC app for the benchmark and the docs (app protocol grpc):
 * - `dapr.proto.runtime.v1.AppCallback/OnInvoke`: answers with the request's data and content
 *   type (what weft's node calls for a service invocation of this app);
 * - `weft.bench.Echo/Echo`: a service of its own, unary, the request bytes back unchanged (what
 *   a proxied gRPC call reaches, by `dapr-app-id` metadata on the node's gRPC port).
 *
 * Listens on APP_PORT (default 50000) on 127.0.0.1; prints `listening on <port>` when ready.
 */
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';

const PROTO_ROOT = fileURLToPath(new URL('../proto/', import.meta.url));
const port = Number(process.env['APP_PORT'] ?? 50000);

const appCallback = protoLoader.loadSync('dapr/proto/runtime/v1/appcallback.proto', {
  includeDirs: [PROTO_ROOT], keepCase: true, longs: Number, enums: Number, defaults: false, oneofs: true,
})['dapr.proto.runtime.v1.AppCallback'] as grpc.ServiceDefinition;

const raw = (b: Buffer): Buffer => b;
const echoService: grpc.ServiceDefinition = {
  Echo: { path: '/weft.bench.Echo/Echo', requestStream: false, responseStream: false, requestSerialize: raw, requestDeserialize: raw, responseSerialize: raw, responseDeserialize: raw },
};

interface InvokeRequest {
  data?: { type_url?: string; value?: Buffer } | null;
  content_type?: string;
}

const server = new grpc.Server();
server.addService(appCallback, {
  OnInvoke: (call: grpc.ServerUnaryCall<InvokeRequest, unknown>, cb: grpc.sendUnaryData<unknown>) => {
    cb(null, { data: call.request.data ?? null, content_type: call.request.content_type ?? '' });
  },
});
server.addService(echoService, {
  Echo: (call: grpc.ServerUnaryCall<Buffer, Buffer>, cb: grpc.sendUnaryData<Buffer>) => cb(null, call.request),
});
server.bindAsync(`127.0.0.1:${port}`, grpc.ServerCredentials.createInsecure(), (err, bound) => {
  if (err !== null) {
    process.stderr.write(`cannot listen on ${port}: ${err.message}\n`);
    process.exit(1);
  }
  process.stdout.write(`listening on ${bound}\n`);
});
const stop = (): void => server.tryShutdown(() => process.exit(0));
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
