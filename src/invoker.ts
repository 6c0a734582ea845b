/**
 * The caller's side of one service invocation, independent of the API it came in on
 * (HTTP now, Dapr gRPC later): route it, hand it to the outbound side, and give back an
 * outcome the ingress writes out. Results inside, exceptions at the edge: failures come
 * back as WeftErrors in the outcome, never thrown.
 */
import { MessageChannel, type Transferable } from 'node:worker_threads';
import type { Readable } from 'node:stream';
import { WeftError } from './errors.ts';
import type { Dispatcher } from './dispatch.ts';
import type { RoutingTable } from './routing/table.ts';
import { UNKNOWN_TARGET, type Metrics } from './observability/metrics.ts';
import type { InvokeResult, InvokeTask, ResponseHead } from '../workers/protocol.ts';
import { PortReader, PortWriter } from '../workers/port-stream.ts';

export interface OutboundCall {
  readonly appId: string;
  readonly namespace: string;
  readonly callerAppId: string;
  readonly callerNamespace: string;
  readonly method: string;
  readonly verb: string;
  readonly query: string;
  readonly headers: readonly string[];
  /** A whole body (exact-size, transferable), a stream, or nothing. */
  readonly body: ArrayBuffer | Readable | null;
  readonly deadline: number;
}

export type Outcome =
  | { readonly type: 'response'; readonly head: ResponseHead; readonly body: Buffer | null }
  | { readonly type: 'stream'; readonly head: ResponseHead; readonly reader: PortReader }
  | { readonly type: 'error'; readonly error: WeftError };

export class Invoker {
  private readonly routing: RoutingTable;
  private readonly dispatcher: Dispatcher;
  private readonly metrics: Metrics;

  constructor(routing: RoutingTable, dispatcher: Dispatcher, metrics: Metrics) {
    this.routing = routing;
    this.dispatcher = dispatcher;
    this.metrics = metrics;
  }

  async invoke(call: OutboundCall): Promise<Outcome> {
    const started = performance.now();
    this.metrics.inflight.inc();
    let outcome: Outcome;
    try {
      outcome = await this.run(call);
    } finally {
      this.metrics.inflight.dec();
    }
    // Counted once the call ends: targets no instance is known of share one series, so
    // callers naming any number of unknown ids add no series.
    const status = outcome.type === 'error' ? outcome.error.code : String(outcome.head.status);
    const dst = status === 'WEFT_APP_NOT_FOUND' ? UNKNOWN_TARGET : call.appId;
    this.metrics.sent(call.callerAppId, dst);
    this.metrics.received(call.callerAppId, dst, status, performance.now() - started);
    return outcome;
  }

  private async run(call: OutboundCall): Promise<Outcome> {
    try {
      const v = this.routing.route(call.appId, call.namespace);
      const routingVersion = typeof v === 'number' ? v : await v;
      const whole = call.body === null || call.body instanceof ArrayBuffer;
      const channel = whole ? null : new MessageChannel();
      const task: InvokeTask = {
        type: 'invoke', routingVersion, appId: call.appId, namespace: call.namespace,
        callerAppId: call.callerAppId, callerNamespace: call.callerNamespace,
        method: call.method, verb: call.verb, query: call.query, headers: call.headers,
        body: whole ? (call.body as ArrayBuffer | null) : null,
        port: channel === null ? null : channel.port2,
        deadline: call.deadline,
      };
      const transfer: Transferable[] = [];
      if (task.body !== null) transfer.push(task.body);
      if (channel !== null) transfer.push(channel.port2);
      if (channel === null) return await this.settle(await this.dispatcher.run(task, transfer), call.appId);
      // The body streams over our end of the port while the outbound side sends it on.
      const reader = new PortReader(channel.port1);
      const writer = new PortWriter(channel.port1);
      void pump(call.body as Readable, writer);
      // The task ends only when the whole exchange has, so the answer is read meanwhile.
      this.dispatcher.run(task, transfer).then(
        (result) => {
          if (result.type === 'error') reader.fail(result.error);
        },
        (err: unknown) => reader.fail(WeftError.from(err, call.appId).toWire()),
      );
      return await this.headOf(reader, call.appId);
    } catch (err) {
      return { type: 'error', error: WeftError.from(err, call.appId) };
    }
  }

  private async settle(result: InvokeResult, appId: string): Promise<Outcome> {
    switch (result.type) {
      case 'response':
        return { type: 'response', head: result.head, body: result.body === null ? null : Buffer.from(result.body) };
      case 'error':
        return { type: 'error', error: WeftError.from(result.error, appId) };
      case 'stream':
        if (result.port === null) return { type: 'error', error: new WeftError('WEFT_INTERNAL', 'a stream without a port', { appId }) };
        return this.headOf(new PortReader(result.port), appId);
    }
  }

  /** Waits for the head of a streamed answer (or its failure). */
  private async headOf(reader: PortReader, appId: string): Promise<Outcome> {
    const first = await reader.next();
    if (first.type === 'head') return { type: 'stream', head: first.head, reader };
    reader.close();
    if (first.type === 'error') return { type: 'error', error: WeftError.from(first.error, appId) };
    return { type: 'error', error: new WeftError('WEFT_PEER_FAILED', 'the answer ended before its head', { appId }) };
  }
}

/** Sends a request body over a port; a failure of the body ends the stream with an error. */
async function pump(body: Readable, writer: PortWriter): Promise<void> {
  try {
    for await (const chunk of body) await writer.write(chunk as Buffer);
    writer.end();
  } catch (err) {
    if (!writer.isClosed) writer.error(WeftError.from(err).toWire());
    body.destroy();
  }
}
