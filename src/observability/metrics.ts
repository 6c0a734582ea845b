/**
 * The node's metrics, in its own prom-client registry (several nodes can share a process in
 * tests). Names follow Dapr's with a `weft_` prefix. The per-call series are fast-metrics.ts
 * families: a call adds to numbers found by map lookups, with no label hashing and no
 * allocation; the rest are prom-client's own metrics.
 *
 * Workers count their own facts (retries, channels) and send batches once a second
 * (`MetricsBatch`); `absorb` adds them here.
 */
import { Counter, Gauge, Registry, collectDefaultMetrics } from 'prom-client';
import type { MetricsBatch } from '../../workers/protocol.ts';
import { FastCounter, FastHistogram } from './fast-metrics.ts';

const LATENCY_BUCKETS_MS = [0.25, 0.5, 1, 2, 3, 5, 7.5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000];

/** The most label sets one metric keeps; past it, new ones are counted under OVERFLOW_LABEL. */
export const MAX_LABEL_SETS = 2000;
/** The label value of every label of a set counted past MAX_LABEL_SETS. */
export const OVERFLOW_LABEL = '_other';
/** The `dst_app_id` of calls to a target no instance is known of: one series for all of them. */
export const UNKNOWN_TARGET = '_unknown';

/**
 * A label value as it may go into the text format: prom-client escapes `\`, `"` and newline
 * only, so the other control characters (CR, NUL, ...) are replaced, and a value is cut at 128.
 */
export function labelValue(v: string): string {
  // eslint-disable-next-line no-control-regex
  const clean = /[\u0000-\u001f\u007f]/.test(v) ? v.replace(/[\u0000-\u001f\u007f]/g, '_') : v;
  return clean.length > 128 ? clean.slice(0, 128) : clean;
}

/** Label sets of one metric, bounded: at most MAX_LABEL_SETS, values cleaned by labelValue. */
class Cached<T> {
  private readonly cache = new Map<string, T>();
  private readonly make: (labels: string[]) => T;
  private overflow: T | undefined;

  constructor(make: (labels: string[]) => T) {
    this.make = make;
  }

  get(...labels: string[]): T {
    const key = labels.join('\u0000');
    let child = this.cache.get(key);
    if (child === undefined) {
      if (this.cache.size >= MAX_LABEL_SETS) return (this.overflow ??= this.make(labels.map(() => OVERFLOW_LABEL)));
      child = this.make(labels.map(labelValue));
      this.cache.set(key, child);
    }
    return child;
  }
}

export class Metrics {
  readonly registry = new Registry();
  private readonly reqSent: FastCounter;
  private readonly resRecv: FastCounter;
  private readonly resRecvLatency: FastHistogram;
  private readonly reqRecv: FastCounter;
  private readonly resSent: FastCounter;
  private readonly resSentLatency: FastHistogram;
  private readonly reqCancelled: FastCounter;
  private readonly recvCancelled: FastCounter;
  private readonly accessControl: FastCounter;
  private readonly renewals: Cached<{ inc(): void }>;
  private readonly certExpiry: Gauge;
  /** Counters the workers report, by name. */
  private readonly workerCounters = new Map<string, Counter>();
  /** Label sets seen per worker counter (bounded like Cached). */
  private readonly workerLabelSets = new Map<string, Set<string>>();
  /** Calls from local apps not yet over (`weft_service_invocation_inflight`, read at a scrape). */
  readonly inflight = { value: 0, inc(): void { this.value++; }, dec(): void { this.value--; } };
  private watchCount: () => number = () => 0;

  constructor(nodeId: string) {
    this.registry.setDefaultLabels({ node_id: nodeId });
    collectDefaultMetrics({ register: this.registry, prefix: 'weft_' });
    const reg = [this.registry];
    const limits = { maxSets: MAX_LABEL_SETS, overflow: OVERFLOW_LABEL, clean: labelValue };
    const counter = (name: string, help: string, labelNames: string[]): FastCounter => new FastCounter(this.registry, name, help, labelNames, limits);
    const histogram = (name: string, help: string, labelNames: string[]): FastHistogram => new FastHistogram(this.registry, name, help, labelNames, LATENCY_BUCKETS_MS, limits);
    this.reqSent = counter('weft_service_invocation_req_sent_total', 'Calls sent to other apps', ['app_id', 'dst_app_id']);
    this.resRecv = counter('weft_service_invocation_res_recv_total', 'Answers received from other apps, by status (HTTP status, or weft error code)', ['app_id', 'dst_app_id', 'status']);
    this.resRecvLatency = histogram('weft_service_invocation_res_recv_latency_ms', 'Time from a local app\'s call to the answer, in ms', ['app_id', 'dst_app_id', 'status']);
    this.reqRecv = counter('weft_service_invocation_req_recv_total', 'Calls received from other nodes for local apps', ['app_id', 'src_app_id']);
    this.resSent = counter('weft_service_invocation_res_sent_total', 'Answers sent to other nodes, by status', ['app_id', 'src_app_id', 'status']);
    this.resSentLatency = histogram('weft_service_invocation_res_sent_latency_ms', 'Time a local app took to answer a call from another node, in ms', ['app_id', 'src_app_id', 'status']);
    const inflight = this.inflight;
    new Gauge({
      name: 'weft_service_invocation_inflight', help: 'Calls from local apps not yet over (a streamed answer counts until its last byte)', registers: reg,
      collect() {
        this.set(inflight.value);
      },
    });
    const watchCount = (): number => this.watchCount();
    new Gauge({
      name: 'weft_routing_watches', help: 'Target apps the routing table watches now (idle ones expire)', registers: reg,
      collect() {
        this.set(watchCount());
      },
    });
    this.reqCancelled = counter('weft_service_invocation_cancelled_total', 'Calls from local apps that the caller gave up before they were over (its connection closed, its gRPC call was cancelled); counted here, not as answers received', ['app_id', 'dst_app_id']);
    this.recvCancelled = counter('weft_service_invocation_recv_cancelled_total', 'Calls from other nodes for local apps that the calling node cancelled; the app\'s request was abandoned', ['app_id', 'src_app_id']);
    this.accessControl = counter('weft_access_control_total', 'Calls from other nodes checked against the target app\'s access policy, by verified caller (app and namespace from its certificate; "unknown" when it had none) and action', ['app_id', 'src_app_id', 'src_namespace', 'action']);
    const renewals = new Counter({ name: 'weft_identity_certificates_total', help: 'Certificates this node issued for itself and its apps, by kind (node, workload) and result (issued, renewed, failed)', labelNames: ['kind', 'result'], registers: reg });
    this.certExpiry = new Gauge({ name: 'weft_identity_certificate_expiry_seconds', help: 'When the certificate currently held for an identity expires (Unix time, s)', labelNames: ['spiffe_id'], registers: reg });
    this.renewals = new Cached((l) => renewals.labels(...l));
    for (const [name, help, labelNames] of [
      ['weft_invoke_retries_total', 'Attempts retried on another instance, by the failure that caused them', ['app_id', 'reason']],
      ['weft_peer_channels_opened_total', 'gRPC channels opened to peer nodes', []],
      ['weft_retry_budget_exhausted_total', 'Calls that could not retry because the target app\'s retry budget was spent', ['app_id']],
      ['weft_circuit_breaker_transitions_total', 'Circuit breaker state changes, by breaker (app and instance) and new state', ['breaker', 'to']],
      ['weft_outlier_events_total', 'Outlier detection: instances ejected, on probation, recovered, or spared', ['app_id', 'event']],
    ] as const) {
      this.workerCounters.set(name, new Counter({ name, help, labelNames: [...labelNames], registers: reg }));
    }
  }

  sent(appId: string, dstAppId: string): void {
    this.reqSent.child2(appId, dstAppId).value++;
  }

  received(appId: string, dstAppId: string, status: string, ms: number): void {
    this.resRecv.child3(appId, dstAppId, status).value++;
    this.resRecvLatency.child3(appId, dstAppId, status).observe(ms);
  }

  /** A local app's call that its caller gave up (not a failure: nothing was answered). */
  cancelled(appId: string, dstAppId: string): void {
    this.reqCancelled.child2(appId, dstAppId).value++;
  }

  served(appId: string, srcAppId: string, status: string, ms: number): void {
    this.reqRecv.child2(appId, srcAppId).value++;
    this.resSent.child3(appId, srcAppId, status).value++;
    this.resSentLatency.child3(appId, srcAppId, status).observe(ms);
  }

  /** A call from another node that the calling node cancelled: received, never answered. */
  servedCancelled(appId: string, srcAppId: string): void {
    this.reqRecv.child2(appId, srcAppId).value++;
    this.recvCancelled.child2(appId, srcAppId).value++;
  }

  /** One access-control decision on this node (allow or deny). */
  accessChecked(appId: string, srcAppId: string, srcNamespace: string, allowed: boolean): void {
    this.accessControl.child([appId, srcAppId, srcNamespace, allowed ? 'allow' : 'deny']).value++;
  }

  /** A certificate issued, renewed, or a renewal that failed. */
  certificate(kind: 'node' | 'workload', result: 'issued' | 'renewed' | 'failed', spiffeId?: string, notAfter?: number): void {
    this.renewals.get(kind, result).inc();
    if (spiffeId !== undefined && notAfter !== undefined) this.certExpiry.labels(spiffeId).set(Math.floor(notAfter / 1000));
  }

  /** Adds a worker's batch: keys are `name|label=value,label=value`. */
  absorb(batch: MetricsBatch): void {
    for (const [key, by] of Object.entries(batch.counters)) {
      const bar = key.indexOf('|');
      const name = key.slice(0, bar);
      const counter = this.workerCounters.get(name);
      if (counter === undefined) continue;
      let seen = this.workerLabelSets.get(name);
      if (seen === undefined) this.workerLabelSets.set(name, (seen = new Set()));
      const text = key.slice(bar + 1);
      const over = !seen.has(text) && seen.size >= MAX_LABEL_SETS;
      if (!over) seen.add(text);
      const labels: Record<string, string> = {};
      if (text !== '') {
        for (const pair of text.split(',')) {
          const eq = pair.indexOf('=');
          labels[pair.slice(0, eq)] = over ? OVERFLOW_LABEL : labelValue(pair.slice(eq + 1));
        }
      }
      counter.inc(labels, by);
    }
  }

  /** What `weft_routing_watches` reads at each scrape. */
  watchRouting(count: () => number): void {
    this.watchCount = count;
  }

  text(): Promise<string> {
    return this.registry.metrics();
  }
}
