/**
 * The piscina worker entry: one Outbound per worker thread, fed routing snapshots and the TLS
 * identities of the node's apps over a BroadcastChannel, reporting its counters to the main thread once a second.
 *
 * Channel names carry the node's own suffix (piscina `workerData.channel`), so several nodes
 * in one process never hear each other's snapshots.
 */
import { BroadcastChannel, threadId } from 'node:worker_threads';
import { move, workerData } from 'piscina';
import { CounterBatcher } from './counters.ts';
import { Outbound, optionsFrom } from './outbound.ts';
import { CANCEL_CHANNEL, METRICS_CHANNEL, ROUTING_CHANNEL, SPANS_CHANNEL, type CancelMessage, type InvokeResult, type InvokeTaskMessage, type RoutingMessage, type SpanBatch, type WireErrorShape, type WorkerData } from './protocol.ts';
import { BatchingSink } from '../src/observability/tracing.ts';

const { channel, settings } = workerData as WorkerData;
const metrics = new BroadcastChannel(`${METRICS_CHANNEL}:${channel}`);
metrics.unref();
const counters = new CounterBatcher(threadId, (batch) => metrics.postMessage(batch));

// Spans made here go to the main thread's one exporter in batches (only tasks carrying a
// trace make any: with tracing off this channel stays silent).
const spanChannel = new BroadcastChannel(`${SPANS_CHANNEL}:${channel}`);
spanChannel.unref();
const spans = new BatchingSink((list, dropped) => spanChannel.postMessage({ type: 'spans', spans: list, dropped } satisfies SpanBatch));

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
 * Calls the main thread may cancel, by id. A cancel can overtake its task (they travel on
 * different channels), so a cancel for an id not running here is remembered for a while: the
 * task, if it comes to this worker, is abandoned at once. Bounded: the oldest are forgotten.
 */
const running = new Map<number, AbortController>();
const cancelledEarly = new Map<number, WireErrorShape>();
const MAX_EARLY_CANCELS = 1024;
const cancels = new BroadcastChannel(`${CANCEL_CHANNEL}:${channel}`);
cancels.unref();
cancels.onmessage = (event: unknown) => {
  const msg = (event as { data: CancelMessage }).data;
  const controller = running.get(msg.callId);
  if (controller !== undefined) {
    controller.abort(msg.error);
    return;
  }
  cancelledEarly.set(msg.callId, msg.error);
  if (cancelledEarly.size > MAX_EARLY_CANCELS) cancelledEarly.delete(cancelledEarly.keys().next().value as number);
};

const kTransferable = Symbol.for('Piscina.transferable');
const kValue = Symbol.for('Piscina.valueOf');

/** Hands the result back with its body or port transferred, not cloned. */
function movable(result: InvokeResult): unknown {
  const transfer = result.type === 'response' ? result.body : result.type === 'stream' ? result.port : null;
  if (transfer === null) return result;
  return move({ [kTransferable]: [transfer], [kValue]: result } as never);
}

export default async function run(task: InvokeTaskMessage): Promise<unknown> {
  if (task.type === 'ping') return { type: 'pong', routingVersion: outbound.routingVersion };
  const callId = task.callId;
  if (callId === undefined) return movable(await outbound.invoke(task));
  const controller = new AbortController();
  const early = cancelledEarly.get(callId);
  if (early !== undefined) {
    cancelledEarly.delete(callId);
    controller.abort(early);
  }
  running.set(callId, controller);
  try {
    return movable(await outbound.invoke(task, controller.signal));
  } finally {
    running.delete(callId);
  }
}
