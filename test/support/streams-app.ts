/**
 * A grpc-js service with every kind of call, for proxy-mode tests (`weft.test.Streams`, raw
 * Buffer messages: the proxy never decodes them, and neither do these tests):
 * - `Unary`: answers the request reversed; metadata `x-echo` comes back as response metadata
 *   and trailer `x-trailer`;
 * - `ServerStream`: the request is a count n (UInt32BE) and a size s (UInt32BE); answers n
 *   messages of s bytes, message i filled with i % 256;
 * - `ClientStream`: answers the number of messages and bytes received (two UInt32BE);
 * - `Bidi`: echoes each message as it comes, respecting its writer's backpressure;
 * - `Fail`: INVALID_ARGUMENT "bad thing" with `grpc-status-details-bin` = `FAIL_DETAILS` and a
 *   trailer `x-reason: because`;
 * - `Hang`: reads and never answers; every call it sees cancelled is counted in `cancelled`.
 */
import * as grpc from '@grpc/grpc-js';

const raw = (b: Buffer): Buffer => b;
const method = (name: string, requestStream: boolean, responseStream: boolean): grpc.MethodDefinition<Buffer, Buffer> => ({
  path: `/weft.test.Streams/${name}`, requestStream, responseStream,
  requestSerialize: raw, requestDeserialize: raw, responseSerialize: raw, responseDeserialize: raw,
});

export const streamsService = {
  Unary: method('Unary', false, false),
  ServerStream: method('ServerStream', false, true),
  ClientStream: method('ClientStream', true, false),
  Bidi: method('Bidi', true, true),
  Fail: method('Fail', false, false),
  Hang: method('Hang', true, true),
} satisfies grpc.ServiceDefinition;

export const StreamsClient = grpc.makeGenericClientConstructor(streamsService, 'Streams');

/** A google.rpc.Status (code 3, message "bad thing"), bytes as they go on the wire. */
export const FAIL_DETAILS = Buffer.from([0x08, 0x03, 0x12, 0x09, ...Buffer.from('bad thing')]);

export interface StreamsApp {
  readonly port: number;
  /** Calls seen, by method name, with their metadata. */
  readonly seen: Array<{ method: string; metadata: grpc.Metadata }>;
  /** `Hang` calls (and others) that saw 'cancelled'. */
  readonly cancelled: string[];
  close(): Promise<void>;
}

export async function startStreamsApp(port = 0): Promise<StreamsApp> {
  const seen: StreamsApp['seen'] = [];
  const cancelled: string[] = [];
  const server = new grpc.Server({ 'grpc.max_receive_message_length': -1, 'grpc.max_send_message_length': -1 });
  const record = (name: string, call: { metadata: grpc.Metadata; on(event: 'cancelled', cb: () => void): unknown }): void => {
    seen.push({ method: name, metadata: call.metadata });
    call.on('cancelled', () => cancelled.push(name));
  };
  server.addService(streamsService, {
    Unary: (call: grpc.ServerUnaryCall<Buffer, Buffer>, cb: grpc.sendUnaryData<Buffer>) => {
      record('Unary', call);
      const echo = call.metadata.get('x-echo')[0];
      if (echo !== undefined) {
        const md = new grpc.Metadata();
        md.set('x-echo', echo);
        call.sendMetadata(md);
      }
      const trailer = new grpc.Metadata();
      trailer.set('x-trailer', 'unary');
      cb(null, Buffer.from(call.request).reverse(), trailer);
    },
    ServerStream: (call: grpc.ServerWritableStream<Buffer, Buffer>) => {
      record('ServerStream', call);
      const n = call.request.readUInt32BE(0);
      const size = call.request.readUInt32BE(4);
      let i = 0;
      const pump = (): void => {
        while (i < n) {
          const ok = call.write(Buffer.alloc(size, i % 256));
          i++;
          if (!ok) return void call.once('drain', pump);
        }
        call.end();
      };
      pump();
    },
    ClientStream: (call: grpc.ServerReadableStream<Buffer, Buffer>, cb: grpc.sendUnaryData<Buffer>) => {
      record('ClientStream', call);
      let count = 0;
      let bytes = 0;
      call.on('data', (m: Buffer) => {
        count++;
        bytes += m.length;
      });
      call.on('end', () => {
        const out = Buffer.alloc(8);
        out.writeUInt32BE(count, 0);
        out.writeUInt32BE(bytes, 4);
        cb(null, out);
      });
    },
    Bidi: (call: grpc.ServerDuplexStream<Buffer, Buffer>) => {
      record('Bidi', call);
      call.on('data', (m: Buffer) => {
        if (!call.write(m)) {
          call.pause();
          call.once('drain', () => call.resume());
        }
      });
      call.on('end', () => call.end());
    },
    Fail: (call: grpc.ServerUnaryCall<Buffer, Buffer>, cb: grpc.sendUnaryData<Buffer>) => {
      record('Fail', call);
      const md = new grpc.Metadata();
      md.set('grpc-status-details-bin', FAIL_DETAILS);
      md.set('x-reason', 'because');
      cb({ code: grpc.status.INVALID_ARGUMENT, details: 'bad thing', metadata: md });
    },
    Hang: (call: grpc.ServerDuplexStream<Buffer, Buffer>) => {
      record('Hang', call);
      call.on('data', () => {});
    },
  });
  const bound = await new Promise<number>((resolve, reject) => {
    server.bindAsync(`127.0.0.1:${port}`, grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p)));
  });
  return {
    port: bound, seen, cancelled,
    close: () => new Promise<void>((resolve) => {
      server.forceShutdown();
      resolve();
    }),
  };
}
