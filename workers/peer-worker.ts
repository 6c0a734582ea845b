/**
 * The piscina worker entry: one Outbound per worker thread, fed routing snapshots and the TLS
 * identities of the node's apps over a BroadcastChannel, taking calls over a port of its own,
 * reporting its counters to the main thread once a second.
 *
 * Channel names carry the node's own suffix (piscina `workerData.channel`), so several nodes
 * in one process never hear each other's snapshots.
 */
import { BroadcastChannel, MessageChannel, parentPort, threadId, type Transferable } from 'node:worker_threads';
import { workerData } from 'piscina';
import { CounterBatcher } from './counters.ts';
import { Outbound, optionsFrom } from './outbound.ts';
import {
  CANCEL, ERROR, METRICS_CHANNEL, RESPONSE, ROUTING_CHANNEL, SPANS_CHANNEL, STREAM, TASK_FIELDS,
  type CallMessage, type InvokeResult, type InvokeTask, type ResultMessage, type ResultTuple, type RoutingMessage, type SpanBatch, type WireErrorShape, type WorkerData, type WorkerHello,
} from './protocol.ts';
import { BatchingSink } from '../src/observability/tracing.ts';

const { channel, settings } = workerData as WorkerData;
const metrics = new BroadcastChannel(`${METRICS_CHANNEL}:${channel}`);
metrics.unref();
const counters = new CounterBatcher(threadId, (batch) => metrics.postMessage(batch));

// Spans made here go to the main thread's one exporter in batches (only tasks carrying a
// trace make any: with tracing off this channel stays silent).
const spanChannel = new BroadcastChannel(`${SPANS_CHANNEL}:${channel}`);
spanChannel.unref();
const spans = new BatchingSink((batch, dropped) => spanChannel.postMessage({ type: 'spans', bytes: batch.bytes, count: batch.count, dropped } satisfies SpanBatch));

const routing = new BroadcastChannel(`${ROUTING_CHANNEL}:${channel}`);
routing.unref();
const outbound = new Outbound({
  ...optionsFrom(settings, counters.count),
  spans,
  // The main thread logs it (workers have no logger of their own).
  onTlsFailure: (peer, message) => routing.postMessage({ type: 'tls-failure', peer, message } satisfies RoutingMessage),
});
routing.onmessage = (event: unknown) => {
  const msg = (event as { data: RoutingMessage }).data;
  // Identities come before the snapshots that need them (same channel, same sender: in order).
  if (msg.type === 'identities') outbound.setIdentities(msg.identities);
  else if (msg.type === 'snapshot') outbound.setSnapshot(msg.snapshot);
};
routing.postMessage({ type: 'snapshot-request' } satisfies RoutingMessage);

/**
 * The call port: this worker's own channel to the main thread (see CallMessage and ResultMessage
 * in protocol.ts). A cancel follows its call on the same port, so it finds the call running (or
 * finished, and then there is nothing to cancel).
 */
const { port1: calls, port2: mainEnd } = new MessageChannel();
const running = new Map<number, AbortController>();
calls.on('message', (msg: CallMessage) => {
  if (msg[0] === CANCEL) {
    running.get(msg[1])?.abort({ code: msg[2], message: msg[3] } satisfies WireErrorShape);
    return;
  }
  const task = taskOf(msg);
  const id = msg[1];
  if (msg[2] === 0) {
    outbound.invoke(task).then((result) => answer(id, result), (err: unknown) => answer(id, internal(err)));
    return;
  }
  const controller = new AbortController();
  running.set(id, controller);
  outbound.invoke(task, controller.signal).then(
    (result) => {
      running.delete(id);
      answer(id, result);
    },
    (err: unknown) => {
      running.delete(id);
      answer(id, internal(err));
    },
  );
});
parentPort?.postMessage({ type: 'weft-worker-port', port: mainEnd } satisfies WorkerHello, [mainEnd]);

function taskOf(msg: readonly unknown[]): InvokeTask {
  const task: Record<string, unknown> = { type: 'invoke' };
  for (let i = 0; i < TASK_FIELDS.length; i++) {
    const v = msg[i + 3];
    if (v !== undefined) task[TASK_FIELDS[i] as string] = v;
  }
  return task as unknown as InvokeTask;
}

function internal(err: unknown): InvokeResult {
  return { type: 'error', error: { code: 'WEFT_INTERNAL', message: (err as Error).message }, attempts: 0, nodeId: null };
}

/**
 * Results finished in one turn of this thread's loop go to the main thread as one message:
 * each message costs the main thread a wake-up, more than the clone of a few results.
 */
let outbox: ResultTuple[] = [];
let outboxTransfer: Transferable[] = [];
function answer(id: number, result: InvokeResult): void {
  switch (result.type) {
    case 'response': {
      // a worker's outbound copies answers into buffers of their own (never `sameThread`)
      const body = result.body as ArrayBuffer | null;
      outbox.push([id, RESPONSE, result.head.status, result.head.headers, body, result.attempts, result.nodeId]);
      if (body !== null) outboxTransfer.push(body);
      break;
    }
    case 'stream':
      outbox.push([id, STREAM, result.port, result.attempts, result.nodeId]);
      if (result.port !== null) outboxTransfer.push(result.port);
      break;
    case 'error':
      outbox.push([id, ERROR, result.error.code, result.error.message, result.attempts, result.nodeId]);
      break;
  }
  if (outbox.length === 1) setImmediate(flush);
}

function flush(): void {
  const batch = outbox;
  const transfer = outboxTransfer;
  outbox = [];
  outboxTransfer = [];
  calls.postMessage(batch satisfies ResultMessage, transfer);
}

/** piscina wants a task handler; calls never come this way (they come over the call port). */
export default function run(): never {
  throw new Error('weft workers take calls over their call port, not as piscina tasks');
}
