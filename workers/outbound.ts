/**
 * The outbound side of a node: pooled gRPC channels to peer nodes, instance choice, deadlines
 * and retries. Runs in piscina workers (see peer-worker.ts) or, with `--workers 0`, on the
 * main thread; the code is the same.
 *
 * One `invoke` is one call from a local app to an app served by some node:
 * 1. wait until this thread has the routing snapshot the main thread used (normally at once);
 * 2. pick an instance round robin, skipping ones that already failed this call;
 * 3. call the peer's Invoke (whole body) or InvokeStream (streamed body) under the deadline;
 * 4. on a failure that surely never reached the app (connect failure, WEFT_NOT_SERVING),
 *    back off with jitter and try another instance, while the deadline allows.
 */
import * as grpc from '@grpc/grpc-js';
import { MessageChannel, type MessagePort } from 'node:worker_threads';
import {
  type CallHead, type InvokeResponse, type StreamFrame,
  ERROR_CODE_KEY, PeerMethods,
  decodeInvokeResponse, decodeStreamFrame, encodeFetchBodyRequest, encodeInvokeRequest, encodeStreamFrame,
} from '../src/peer/codec.ts';
import { bodyBytes, type IdentitySet, type InvokeResult, type InvokeTask, type OutboundSettings, type PeerAddress, type RoutingSnapshot, type WireErrorShape, type WorkloadIdentity } from './protocol.ts';
import { PortReader, PortWriter, transferable } from './port-stream.ts';
import { MuxStream } from './mux.ts';
import { CallFailure, failure } from './failure.ts';
import { WeftError } from '../src/errors.ts';
import { compose, runWithRetries, withBreaker, withOutlier, withTimeout, type AttemptResult } from '../src/resiliency/compose.ts';
import { ResiliencyPolicies } from '../src/resiliency/policy.ts';
import { fromTexts } from '../src/resiliency/load.ts';
import { RetryBudget, type RetryBudgetOptions } from '../src/resiliency/budget.ts';
import { BreakerRegistry, appBreakerKey } from '../src/resiliency/breaker.ts';
import { OutlierDetector, type OutlierOptions } from '../src/resiliency/outlier.ts';
import type { Failure } from '../src/resiliency/backoff.ts';
// TLS helpers for the worker side. src/security/tls.ts imports only grpc-js, node:tls,
// node:crypto and spiffe.ts (no node-forge: certificates are minted on the main thread by
// identity.ts/ca.ts and reach this thread as PEM text), so importing it here is cheap.
import { checkNodeIdentity, peerChannelOptions } from '../src/security/tls.ts';
import { Tracer, sampledFlag, type SpanSink } from '../src/observability/tracing.ts';
import { OutboundTrace, untraced } from '../src/observability/tracing-outbound.ts';

const EMPTY = new Uint8Array(0);
/** Calls with bodies up to this size go as messages on the peer's Mux stream. */
const MUX_BODY_LIMIT = 64 * 1024;

/** The peer method a call takes: a streamed body streams, a small whole one rides the Mux. */
function peerMethod(task: InvokeTask): 'InvokeStream' | 'Mux' | 'Invoke' {
  if (task.port !== null) return 'InvokeStream';
  return task.body === null || task.body.byteLength <= MUX_BODY_LIMIT ? 'Mux' : 'Invoke';
}
/**
 * A channel replaced by a renewed identity is closed this long after its last new call: its
 * Mux stream is half-closed at once (calls on it are answered), and grpc-js lets calls in
 * flight finish on close; the wait covers a large answer still fetched over FetchBody.
 */
const CHANNEL_DRAIN_MS = 10_000;
/**
 * With TLS the peer server caps connection age (GOAWAY, then 30 s grace: peerServerOptions), but
 * a Mux stream would live on its connection past that grace and die with calls on it. Each
 * channel's Mux stream is therefore replaced this often; the next call opens one on the current
 * connection.
 */
const MUX_MAX_AGE_MS = 20_000;
/**
 * After a renewal, calls stay on the old channel (its certificate is still valid: renewal is at
 * half life) until the successor is connected, but no longer than this.
 */
const SWAP_WAIT_MS = 10_000;
/** Actor calls' per-app guards are keyed `<namespace>/<app>#actors`. */
const ACTORS_SUFFIX = '#actors';
/** At most this many apps' guards per thread by default (a bound for those no snapshot lists). */
const MAX_TRACKED_APPS = 10_000;


export interface OutboundOptions {
  /** Dapr Resiliency policies; none = weft's built-in retry (see src/resiliency/policy.ts). */
  readonly resiliency?: ResiliencyPolicies;
  readonly budget?: Omit<RetryBudgetOptions, 'now'>;
  readonly outlier?: Omit<OutlierOptions, 'now' | 'onEvent'>;
  /** Counts facts for the main thread's metrics registry. */
  readonly count?: (name: string, labels: string, by?: number) => void;
  readonly random?: () => number;
  /** mTLS to peers with the identities given to setIdentities (see OutboundSettings.tls). */
  readonly tls?: boolean;
  /** A peer's certificate was refused: for the main thread's log. */
  readonly onTlsFailure?: (peer: string, message: string) => void;
  /** Where spans of traced calls go (tasks carrying `trace`); without it no span is made. */
  readonly spans?: SpanSink | undefined;
  /**
   * The results go to the thread this runs on (inline), not over a port: a whole answer is
   * handed over as the view of the bytes it came in, with no copy into a transferable buffer.
   */
  readonly sameThread?: boolean | undefined;
  /** The most apps this thread keeps per-app state for (default 10,000; the oldest go first). */
  readonly maxTrackedApps?: number;
}

/** Outbound options from the settings the main thread hands every outbound thread. */
export function optionsFrom(settings: OutboundSettings, count: OutboundOptions['count']): OutboundOptions {
  return { resiliency: fromTexts(settings.resiliency), budget: settings.budget, outlier: settings.outlier, count, tls: settings.tls };
}

/** A pooled peer channel, and what it was opened with. */
interface PeerChannel {
  readonly client: grpc.Client;
  /** `address:port`. */
  readonly peer: string;
  readonly peerAddress: PeerAddress;
  /** The calling app's identity it presents (TLS), or null (plaintext). */
  readonly identity: { readonly key: string; readonly version: number } | null;
  /** Replaces the Mux stream periodically (TLS: see MUX_MAX_AGE_MS). */
  readonly muxTimer: NodeJS.Timeout | undefined;
  /** `used` once a call was given it. */
  state: 'idle' | 'used';
  /** The channel with the renewed identity, connecting (see setIdentities). */
  successor: PeerChannel | undefined;
}

/** The identity a TLS channel presents. */
interface ChannelIdentity {
  readonly key: string;
  readonly version: number;
  readonly material: WorkloadIdentity;
}

/** What one attempt yields: the result to hand back, or the failure that ended it. */
type Attempted = AttemptResult<InvokeResult>;

/** Per target app: its retry budget and its outlier detector (shared by all calls to it). */
interface AppGuards {
  readonly budget: RetryBudget;
  readonly outlier: OutlierDetector;
}

/** A signal that never aborts: for tasks the main thread will not cancel. */
const NEVER = new AbortController().signal;

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(done, ms);
    function done(): void {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      resolve();
    }
    signal.addEventListener('abort', done, { once: true });
  });
}

/** A gRPC error from a peer as weft's `{code, message}`. */
export function fromServiceError(err: grpc.ServiceError, peer: PeerAddress): CallFailure {
  const code = err.metadata?.get(ERROR_CODE_KEY)[0];
  if (typeof code === 'string' && code !== '') return failure(code, err.details);
  const where = `node ${peer.nodeId} at ${peer.address}:${peer.port}`;
  switch (err.code) {
    case grpc.status.UNAVAILABLE:
      return failure('WEFT_PEER_UNAVAILABLE', `${where} is unreachable: ${err.details}`);
    case grpc.status.DEADLINE_EXCEEDED:
      return failure('WEFT_DEADLINE_EXCEEDED', `no answer from ${where} before the deadline`);
    case grpc.status.CANCELLED:
      return failure('WEFT_CANCELLED', `call to ${where} cancelled`);
    default:
      return failure('WEFT_PEER_FAILED', `${where} failed the call: ${grpc.status[err.code] ?? err.code} ${err.details}`);
  }
}

export class Outbound {
  private snapshot: RoutingSnapshot = { version: 0, apps: {} };
  private readonly snapshotWaiters: Array<() => void> = [];
  /**
   * Peer channels. Plaintext: one per peer (`address:port`). TLS: one per calling app and peer
   * (`ns/app|address:port`), presenting one version of that app's identity; a renewed certificate
   * is presented by a successor channel while the old one drains (see setIdentities).
   */
  private readonly clients = new Map<string, PeerChannel>();
  private identities: IdentitySet | null = null;
  private readonly draining = new Set<NodeJS.Timeout>();
  private readonly cursors = new Map<string, number>();
  private readonly muxes = new WeakMap<grpc.Client, MuxStream>();
  private readonly policies: ResiliencyPolicies;
  private readonly guards = new Map<string, AppGuards>();
  private readonly breakers: BreakerRegistry;
  private readonly options: OutboundOptions;
  private readonly count: (name: string, labels: string, by?: number) => void;
  private readonly random: () => number;
  /** Follows the decision the main thread made (the task's traceparent flags). */
  private readonly tracer: Tracer | null;

  constructor(options: OutboundOptions = {}) {
    this.options = options;
    this.tracer = options.spans === undefined ? null : new Tracer(true, { ratio: 1, parentBased: true }, options.spans);
    this.policies = options.resiliency ?? ResiliencyPolicies.EMPTY;
    const count = (this.count = options.count ?? (() => {}));
    this.random = options.random ?? Math.random;
    this.breakers = new BreakerRegistry({
      now: Date.now,
      onStateChange: (key, _from, to) => count('weft_circuit_breaker_transitions_total', `breaker=${key.replace(/[,=]/g, '_')},to=${to}`),
    });
  }

  /** Apps this thread keeps per-app state for (retry budget, outlier detector), by key. */
  get trackedApps(): number {
    return this.guards.size;
  }

  private guardsOf(appKey: string, appId: string): AppGuards {
    let g = this.guards.get(appKey);
    if (g === undefined) {
      // Actor calls' guards are not in any snapshot (placement picks their node): the oldest
      // go first past the bound, as breakers do past theirs.
      if (this.guards.size >= (this.options.maxTrackedApps ?? MAX_TRACKED_APPS)) {
        const oldest = this.guards.keys().next();
        if (oldest.done !== true) this.guards.delete(oldest.value);
      }
      const count = this.count;
      g = {
        budget: new RetryBudget({ ...this.options.budget, now: Date.now }),
        outlier: new OutlierDetector({
          ...this.options.outlier,
          now: Date.now,
          onEvent: (e) => count('weft_outlier_events_total', `app_id=${appId},event=${e.type}`),
        }),
      };
      this.guards.set(appKey, g);
    }
    return g;
  }

  get routingVersion(): number {
    return this.snapshot.version;
  }

  setSnapshot(snapshot: RoutingSnapshot): void {
    if (snapshot.version <= this.snapshot.version) return;
    this.snapshot = snapshot;
    // Channels to peers that no longer serve anything are closed; the rest stay warm.
    const live = new Set<string>();
    for (const list of Object.values(snapshot.apps)) for (const p of list) live.add(`${p.address}:${p.port}`);
    for (const [key, channel] of this.clients) {
      if (!live.has(channel.peer)) {
        this.closeChannel(channel);
        this.clients.delete(key);
      }
    }
    // Instances that left an app's list are forgotten by its outlier detector: a dead node
    // ejected before it left must not keep holding a slot of maxEjectionPercent. (Guards with
    // no list of their own, the actor calls' `<app>#actors`, never filter by ejection.)
    // An app the snapshot no longer lists (the main thread stopped watching it) takes its
    // per-app state with it: callers choose the app ids, so that state must not pile up.
    for (const [key, g] of this.guards) {
      if (key.endsWith(ACTORS_SUFFIX)) continue;
      const list = snapshot.apps[key];
      if (list === undefined) this.guards.delete(key);
      else g.outlier.retain(list.map((p) => p.nodeId));
    }
    for (const key of this.cursors.keys()) if (snapshot.apps[key] === undefined) this.cursors.delete(key);
    const waiters = this.snapshotWaiters.splice(0);
    for (const w of waiters) w();
  }

  private async routing(version: number, deadline: number): Promise<RoutingSnapshot> {
    while (this.snapshot.version < version) {
      if (Date.now() >= deadline) throw failure('WEFT_INTERNAL', `routing snapshot ${version} never reached this thread`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, 50);
        this.snapshotWaiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
    return this.snapshot;
  }

  /**
   * The TLS identities of this node's apps (renewed ones replace the old). Make before break: a
   * channel whose identity was renewed keeps taking calls while a successor presenting the new
   * certificate connects; once the successor is ready (or SWAP_WAIT_MS passed) it takes the new
   * calls and the old channel drains. A renewal therefore never puts a channel that is still
   * handshaking, or failed to, in the path of a call: on a starved host a fresh TLS connection can
   * take seconds, and calls that met one failed.
   */
  setIdentities(set: IdentitySet): void {
    if (this.identities !== null && set.version <= this.identities.version) return;
    this.identities = set;
    for (const [key, channel] of this.clients) {
      if (channel.identity === null) continue;
      const material = set.identities[channel.identity.key];
      if (material?.version === channel.identity.version) continue;
      if (material === undefined || channel.state === 'idle') {
        // the app is gone, or the channel never connected: nothing to keep warm
        this.clients.delete(key);
        this.retire(channel);
        continue;
      }
      this.succeed(key, channel, material);
    }
  }

  /** Opens the successor of a channel whose identity was renewed, and swaps it in once ready. */
  private succeed(key: string, channel: PeerChannel, material: WorkloadIdentity): void {
    const identity = channel.identity as NonNullable<PeerChannel['identity']>;
    if (channel.successor !== undefined) {
      if (channel.successor.identity?.version === material.version) return;
      this.closeChannel(channel.successor); // renewed again before the last one was ready
    }
    const next = this.open(channel.peerAddress, { key: identity.key, version: material.version, material });
    channel.successor = next;
    const swap = (): void => {
      if (channel.successor !== next) return; // replaced or closed meanwhile
      channel.successor = undefined;
      if (this.clients.get(key) !== channel) {
        this.closeChannel(next);
        return;
      }
      this.clients.set(key, next);
      this.retire(channel);
    };
    next.client.waitForReady(Date.now() + SWAP_WAIT_MS, swap);
  }

  /** Stops new calls on a channel and closes it after CHANNEL_DRAIN_MS. */
  private retire(channel: PeerChannel): void {
    clearInterval(channel.muxTimer);
    if (channel.successor !== undefined) this.closeChannel(channel.successor);
    channel.successor = undefined;
    this.muxes.get(channel.client)?.close();
    this.muxes.delete(channel.client);
    const timer = setTimeout(() => {
      this.draining.delete(timer);
      this.closeChannel(channel);
    }, CHANNEL_DRAIN_MS);
    timer.unref();
    this.draining.add(timer);
  }

  /**
   * The channel for a call from `caller` to `peer`. With TLS it presents the calling app's
   * certificate (so the peer knows the caller from the certificate alone) and accepts only a
   * server whose certificate names `peer.nodeId`, the node the resolver returned.
   */
  private client(peer: PeerAddress, caller: Pick<InvokeTask, 'callerAppId' | 'callerNamespace'>): grpc.Client {
    const address = `${peer.address}:${peer.port}`;
    let identity: ChannelIdentity | null = null;
    let key = address;
    if (this.options.tls === true) {
      const idKey = `${caller.callerNamespace}/${caller.callerAppId}`;
      const material = this.identities?.identities[idKey];
      if (material === undefined) {
        throw failure('WEFT_PEER_UNAUTHENTICATED', `this node holds no certificate for app ${caller.callerAppId || '(none)'} in namespace ${caller.callerNamespace}: only apps the node serves can call over mTLS`);
      }
      identity = { key: idKey, version: material.version, material };
      key = `${idKey}|${address}`;
    }
    const existing = this.clients.get(key);
    if (existing !== undefined) {
      existing.state = 'used';
      return existing.client;
    }
    const channel = this.open(peer, identity);
    channel.state = 'used';
    this.clients.set(key, channel);
    return channel.client;
  }

  /** A new peer channel (TLS with `identity`, or plaintext). */
  private open(peer: PeerAddress, identity: ChannelIdentity | null): PeerChannel {
    const address = `${peer.address}:${peer.port}`;
    let credentials = grpc.credentials.createInsecure();
    let tlsOptions: grpc.ChannelOptions = {};
    if (identity !== null && this.identities !== null) {
      const expect = { expectedNodeId: peer.nodeId, trustDomain: this.identities.trustDomain };
      const check = checkNodeIdentity(expect);
      const onTlsFailure = this.options.onTlsFailure;
      credentials = grpc.credentials.createSsl(
        Buffer.from(this.identities.rootsPem), Buffer.from(identity.material.keyPem), Buffer.from(identity.material.certPem),
        {
          checkServerIdentity: (hostname, cert) => {
            const err = check(hostname, cert);
            if (err !== undefined) onTlsFailure?.(`node ${peer.nodeId} at ${address}`, err.message);
            return err;
          },
        },
      );
      tlsOptions = peerChannelOptions(expect);
    }
    const client = new grpc.Client(address, credentials, {
      'grpc.max_receive_message_length': -1,
      'grpc.max_send_message_length': -1,
      // A silently dead peer connection is noticed within ~30 s even with no call on it (a peer
      // that crashed resets its connections at once, and one that left drops out of routing).
      // The ping timeout is gRPC's default: a missed ping kills every call on the connection, and a
      // starved host (ours or the peer's) can leave an ACK unread for seconds; with 3 s, calls
      // failed with "Connection dropped" on a loaded machine while the peer was fine.
      'grpc.keepalive_time_ms': 10_000,
      'grpc.keepalive_timeout_ms': 20_000,
      'grpc.keepalive_permit_without_calls': 1,
      'grpc.initial_reconnect_backoff_ms': 200,
      'grpc.max_reconnect_backoff_ms': 5_000,
      // grpc-js's own retries stay limited to the transparent kind (no retry policy is configured):
      // a stream the server refused (REFUSED_STREAM, e.g. opened just as the peer's GOAWAY for the
      // connection's maximum age was on its way) never reached the handler and is sent again on a
      // fresh connection. weft's retries (workers/outbound.ts invoke) decide everything else; without
      // this, a FetchBody or InvokeStream started in that window failed with "Stream refused by
      // server", often on a loaded host where the window is wide.
      'grpc.enable_retries': 1,
      // channelz keeps per-call statistics nobody reads here; off, it costs nothing per call
      'grpc.enable_channelz': 0,
      ...tlsOptions,
    });
    let muxTimer: NodeJS.Timeout | undefined;
    if (identity !== null) {
      muxTimer = setInterval(() => {
        this.muxes.get(client)?.close();
        this.muxes.delete(client);
      }, MUX_MAX_AGE_MS);
      muxTimer.unref();
    }
    this.count('weft_peer_channels_opened_total', '');
    return { client, peer: address, peerAddress: peer, identity: identity === null ? null : { key: identity.key, version: identity.version }, muxTimer, state: 'idle', successor: undefined };
  }

  /**
   * The pooled channel to a peer node for calls from one local app (with mTLS it presents that
   * app's certificate). Proxied gRPC calls open their Peer/Proxy streams on it from the main
   * thread (src/ingress/grpc-proxy.ts). Throws a CallFailure when this node holds no certificate
   * for the caller.
   */
  peerChannel(peer: PeerAddress, callerAppId: string, callerNamespace: string): grpc.Client {
    return this.client(peer, { callerAppId, callerNamespace });
  }

  /** Round robin over the usable instances, skipping those that already failed this call. */
  /**
   * Only a call's first attempt moves the app's cursor: if retries moved it too, a failing
   * instance among two would take every call's first attempt until it was ejected.
   */
  private pick(appKey: string, instances: readonly PeerAddress[], failed: Set<string> | null, firstAttempt: boolean): PeerAddress | undefined {
    const n = instances.length;
    if (n === 0) return undefined;
    const start = this.cursors.get(appKey) ?? 0;
    if (firstAttempt) this.cursors.set(appKey, (start + 1) % 1_000_000_007);
    for (let i = 0; i < n; i++) {
      const p = instances[(start + i) % n] as PeerAddress;
      if (failed === null || !failed.has(p.nodeId)) return p;
    }
    // every instance failed once: try them again in order
    return instances[start % n];
  }

  /**
   * One call: the target's policy (Resiliency document or the built-in retry) decides the
   * per-attempt timeout, the retries and the circuit breaker; the app's retry budget caps
   * retries; the outlier detector keeps failing instances out of the rotation for a while.
   */
  async invoke(task: InvokeTask, signal: AbortSignal = NEVER): Promise<InvokeResult> {
    const appKey = `${task.namespace}/${task.appId}`;
    const streaming = task.port !== null;
    let lastPeer: PeerAddress | null = null;
    let attempts = 0;
    let trace: OutboundTrace | undefined;
    try {
      const snapshot = await this.routing(task.routingVersion, task.deadline);
      const instances = task.target !== undefined ? [task.target] : snapshot.apps[appKey] ?? [];
      if (instances.length === 0) {
        throw failure('WEFT_APP_NOT_FOUND', `no instance of app ${task.appId} in namespace ${task.namespace} is known`);
      }
      const head: CallHead = {
        appId: task.appId, namespace: task.namespace, method: task.method, verb: task.verb, query: task.query,
        headers: task.headers as string[], callerAppId: task.callerAppId, callerNamespace: task.callerNamespace,
        actorType: task.actorType ?? '', actorId: task.actorId ?? '',
        // the call's context as the main thread made it; a traced attempt puts its own here
        traceparent: task.trace ?? '', tracestate: task.traceState ?? '',
      };
      const policy = this.policies.forApp(task.appId, task.callerAppId);
      // Actor calls have guards of their own: a node answering "moved" during a rebalance must
      // not be ejected from the app's ordinary invocations (and the owner is never skipped).
      const guards = this.guardsOf(task.target === undefined ? appKey : `${appKey}${ACTORS_SUFFIX}`, task.appId);
      const usable = task.target === undefined ? guards.outlier.filter(instances) : instances;
      let lastCode = '';
      // Tracing: a span per attempt, its context in that attempt's head: the first attempt's in
      // the call's head, a retry's in a copy (a write a timed-out attempt left queued on a
      // stream may not be encoded yet). (an unsampled call makes no span: the head carries the
      // decision on as it came)
      trace = task.trace === undefined || this.tracer === null || !sampledFlag(task.trace) ? undefined
        : new OutboundTrace(this.tracer, task, task.target === undefined ? guards.outlier : undefined, peerMethod(task));
      const send = async (peer: PeerAddress, attemptNo: number, signal: AbortSignal): Promise<Attempted> => {
        lastPeer = peer;
        attempts = attemptNo;
        const span = trace?.current;
        let h = head;
        if (span !== undefined) {
          if (attemptNo > 1) h = { ...head };
          h.traceparent = span.traceparent;
          h.tracestate = span.traceState;
        }
        const r = await (streaming ? this.sendStream(h, task, peer, signal) : this.sendUnary(h, task, peer, attemptNo, signal));
        lastCode = r.error?.code ?? (r.failure === undefined ? '' : `HTTP_${r.failure.status}`);
        return r;
      };
      const breaker = policy.breaker;
      const attempt = compose<PeerAddress, InvokeResult>(
        trace === undefined ? untraced : trace.step,
        withTimeout(policy.timeoutMs),
        withBreaker((peer) => (breaker === undefined ? undefined : this.breakers.get(appBreakerKey(task.appId, peer.nodeId), breaker))),
        withOutlier(guards.outlier),
      )(send);
      let failed: Set<string> | null = null;
      const result = await runWithRetries(attempt, {
        policy: policy.retry,
        budget: guards.budget,
        pick: (attemptNo, previous) => {
          if (previous !== undefined) (failed ??= new Set()).add(previous.nodeId);
          // Instances whose breaker would refuse are passed over while others are left.
          if (breaker !== undefined) {
            for (const p of usable) {
              if (this.breakers.peek(appBreakerKey(task.appId, p.nodeId))?.wouldAllow() === false) (failed ??= new Set()).add(p.nodeId);
            }
          }
          return this.pick(appKey, usable, failed, attemptNo === 1);
        },
        deadline: task.deadline,
        signal,
        now: Date.now,
        random: this.random,
        sleep,
        onRetry: (attemptNo, delayMs, f) => {
          this.count('weft_invoke_retries_total', `app_id=${task.appId},reason=${lastCode}`);
          trace?.retry(attemptNo, delayMs, f, lastCode);
        },
      });
      trace?.finish(result.stop, result.failure !== undefined);
      if (result.stop === 'budget') this.count('weft_retry_budget_exhausted_total', `app_id=${task.appId}`);
      if (result.value !== undefined) return result.value;
      const error = result.error ?? new WeftError('WEFT_PEER_FAILED', 'the call failed');
      throw failure(error.code, error.message);
    } catch (err) {
      trace?.finish(undefined, true);
      const wire = err instanceof CallFailure ? err.wire : { code: 'WEFT_INTERNAL', message: (err as Error).message };
      const nodeId = (lastPeer as PeerAddress | null)?.nodeId ?? null;
      if (task.port !== null) {
        // the main thread reads outcomes of streamed calls from the port
        const writer = new PortWriter(task.port);
        writer.error(wire);
        writer.close();
        return { type: 'stream', port: null, attempts, nodeId };
      }
      return { type: 'error', error: wire, attempts, nodeId };
    }
  }

  /** One unary attempt, classified for the resiliency steps (results, not exceptions). */
  private async sendUnary(head: CallHead, task: InvokeTask, peer: PeerAddress, attemptNo: number, signal: AbortSignal): Promise<Attempted> {
    try {
      const client = this.client(peer, task);
      const { result, status } = peerMethod(task) === 'Mux'
        ? await this.muxed(client, head, task, peer, attemptNo, signal)
        : await this.unary(client, head, task, peer, attemptNo, signal);
      const ok = status >= 200 && status < 400;
      return { value: result, failure: ok ? undefined : { kind: 'http', status, neverReachedApp: false, bodyReplayable: true } };
    } catch (err) {
      const reason = signal.aborted ? wireReason(signal.reason) : undefined;
      const f = reason !== undefined ? new CallFailure(reason, false)
        : err instanceof CallFailure ? err
        : failure('WEFT_PEER_FAILED', (err as Error).message);
      return { value: undefined, failure: transportFailure(f, true), error: new WeftError(f.wire.code as 'WEFT_INTERNAL', f.wire.message) };
    }
  }

  /** A streamed call: one attempt only, its outcome (even a failure) goes over the task's port. */
  private async sendStream(head: CallHead, task: InvokeTask, peer: PeerAddress, signal: AbortSignal): Promise<Attempted> {
    await this.stream(this.client(peer, task), head, task, peer, signal);
    return { value: { type: 'stream', port: null, attempts: 1, nodeId: peer.nodeId }, failure: undefined };
  }

  /** The peer's answer as the result handed back: whole, or head now and the rest streamed. */
  private settle(client: grpc.Client, res: InvokeResponse, task: InvokeTask, peer: PeerAddress, attempts: number): { result: InvokeResult; status: number } {
    const responseHead = { status: res.status, headers: res.headers };
    if (res.bodyTicket === '') {
      return { status: res.status, result: { type: 'response', head: responseHead, body: res.body.length === 0 ? null : this.options.sameThread === true ? res.body : transferable(res.body), attempts, nodeId: peer.nodeId } };
    }
    // A large answer: its head and first bytes now, the rest streamed over a port.
    const { port1, port2 } = new MessageChannel();
    // The rest comes over a new stream: open it on the caller's current channel, not on one a
    // renewal has just retired (that one may have to reconnect with a certificate about to expire).
    let fetchOn = client;
    try {
      fetchOn = this.client(peer, task);
    } catch {
      // no identity for the caller any more: the channel the answer came on still works
    }
    void this.fetchRest(fetchOn, res, responseHead, port1, task.deadline, peer, task.appId);
    return { status: res.status, result: { type: 'stream', port: port2, attempts, nodeId: peer.nodeId } };
  }

  /** A small call as a message on the channel's Mux stream (see workers/mux.ts). */
  private async muxed(client: grpc.Client, head: CallHead, task: InvokeTask, peer: PeerAddress, attempts: number, signal: AbortSignal): Promise<{ result: InvokeResult; status: number }> {
    let mux = this.muxes.get(client);
    if (mux === undefined) {
      mux = new MuxStream(client, `node ${peer.nodeId} at ${peer.address}:${peer.port}`);
      this.muxes.set(client, mux);
    }
    const body = task.body === null ? EMPTY : bodyBytes(task.body);
    const res = await mux.invoke(head, body, task.deadline, signal === NEVER ? null : signal);
    return this.settle(client, res, task, peer, attempts);
  }

  /** Closes a peer channel and the Mux stream on it (which would otherwise keep it open). */
  private closeClient(client: grpc.Client): void {
    this.muxes.get(client)?.close();
    this.muxes.delete(client);
    client.close();
  }

  private unary(client: grpc.Client, head: CallHead, task: InvokeTask, peer: PeerAddress, attempts: number, signal: AbortSignal): Promise<{ result: InvokeResult; status: number }> {
    const body = task.body === null ? EMPTY : bodyBytes(task.body);
    return new Promise((resolve, reject) => {
      // grpc-js captures a stack trace per call (`new Error()`, for errors it may report
      // later): ~10 µs a call, a tenth of a node's budget. Its errors are rebuilt as weft
      // errors anyway, so the trace is skipped.
      const limit = Error.stackTraceLimit;
      Error.stackTraceLimit = 0;
      let call: grpc.ClientUnaryCall;
      try {
        call = client.makeUnaryRequest(
        PeerMethods.invoke, encodeInvokeRequest, decodeInvokeResponse, { head, body },
        new grpc.Metadata(), { deadline: task.deadline },
        (err: grpc.ServiceError | null, res?: InvokeResponse) => {
          signal.removeEventListener('abort', cancel);
          if (err !== null || res === undefined) {
            reject(err === null ? failure('WEFT_PEER_FAILED', 'empty answer') : fromServiceError(err, peer));
            return;
          }
          resolve(this.settle(client, res, task, peer, attempts));
        },
      );
      } finally {
        Error.stackTraceLimit = limit;
      }
      const cancel = (): void => call.cancel();
      if (signal !== NEVER) signal.addEventListener('abort', cancel, { once: true });
    });
  }

  /**
   * The rest of a large (or open-ended) answer, fetched from the peer and written to the port as
   * each part arrives. The reader closing the port (the caller went away) cancels the fetch at
   * once, and with it the app's request on the peer. A failure is never retryable (the head is
   * on its way to the client, and the app ran the call): see `answerCut`.
   */
  private async fetchRest(client: grpc.Client, res: InvokeResponse, head: { status: number; headers: string[] }, port: MessagePort, deadline: number, peer: PeerAddress, appId: string): Promise<void> {
    const writer = new PortWriter(port);
    writer.head(head);
    const call = client.makeServerStreamRequest(PeerMethods.fetchBody, encodeFetchBodyRequest, decodeStreamFrame, { ticket: res.bodyTicket }, new grpc.Metadata(), { deadline });
    const over = endOf(call);
    writer.onClose(() => {
      if (!over.ended) call.cancel();
    });
    try {
      await writer.write(res.body);
      for await (const frame of call as AsyncIterable<StreamFrame>) await writer.write(frame.data);
      writer.end();
    } catch (err) {
      if (!over.ended) call.cancel();
      writer.error(answerCut(err, peer, appId));
    } finally {
      writer.close();
    }
  }

  /**
   * A call whose request body streams from the main thread over `task.port`; the answer streams
   * back on it. The call ends, one way or another, by its deadline:
   * - the peer's answer (or its refusal: access denied, app unreachable) may come before the
   *   body has all been sent: sending stops there, and the port's close tells the main thread;
   * - the main thread cancelling (port closed, or `signal`) cancels the peer call at once;
   * - a request body that fails (too large, the client went away) cancels the peer call, and
   *   its failure is the one reported.
   */
  private async stream(client: grpc.Client, head: CallHead, task: InvokeTask, peer: PeerAddress, signal: AbortSignal): Promise<void> {
    const port = task.port as MessagePort;
    const reader = new PortReader(port);
    const writer = new PortWriter(port);
    const call = client.makeBidiStreamRequest(PeerMethods.invokeStream, encodeStreamFrame, decodeStreamFrame, new grpc.Metadata(), { deadline: task.deadline });
    const over = endOf(call);
    const cancel = (): void => {
      if (!over.ended) call.cancel();
    };
    writer.onClose(cancel);
    signal.addEventListener('abort', cancel, { once: true });
    let bodyFailure: unknown;
    const send = (async () => {
      try {
        call.write({ call: head, status: 0, headers: [], data: EMPTY, endMarked: true });
        for await (const chunk of reader.chunks()) {
          if (over.ended) return;
          if (!call.write({ call: null, status: 0, headers: [], data: chunk })) await Promise.race([once(call, 'drain'), over.promise]);
        }
        // The body is complete: said so in a frame of its own, since a half-close alone is what a
        // cancelled call also sends first (see peer.proto, InvokeStream).
        if (!over.ended) call.end({ call: null, status: 0, headers: [], data: EMPTY, end: true });
      } catch (err) {
        bodyFailure ??= err;
        cancel();
      }
    })();
    try {
      let first = true;
      for await (const frame of call as AsyncIterable<StreamFrame>) {
        if (first) {
          writer.head({ status: frame.status, headers: frame.headers });
          first = false;
        }
        await writer.write(frame.data);
      }
      if (first) throw failure('WEFT_PEER_FAILED', `${peer.nodeId} ended the call without an answer`);
      writer.end();
    } catch (err) {
      // A failed request body explains the failure better than the cancelled call it caused.
      // Never retried: part of the body may have reached the app.
      writer.error(describe(bodyFailure ?? err, peer));
    } finally {
      signal.removeEventListener('abort', cancel);
      // Stops the sender if it still waits for body chunks (the answer came first).
      reader.fail({ code: 'WEFT_CANCELLED', message: 'the call is over' });
      await send;
      reader.close();
    }
  }

  /** Closes a peer channel for good (its Mux stream, its identity's timer, the channel, a successor). */
  private closeChannel(channel: PeerChannel): void {
    clearInterval(channel.muxTimer);
    this.closeClient(channel.client);
    const next = channel.successor;
    channel.successor = undefined;
    if (next !== undefined) this.closeChannel(next);
  }

  close(): void {
    for (const c of this.clients.values()) this.closeChannel(c);
    this.clients.clear();
    for (const t of this.draining) clearTimeout(t);
    this.draining.clear();
  }
}

/** Tracks the end of a gRPC call (its status, whatever it is). */
function endOf(call: grpc.Call): { ended: boolean; readonly promise: Promise<void> } {
  const state = { ended: false, promise: Promise.resolve() };
  state.promise = new Promise<void>((resolve) => call.once('status', () => {
    state.ended = true;
    resolve();
  }));
  return state;
}

function once(emitter: NodeJS.EventEmitter, event: string): Promise<void> {
  return new Promise((resolve) => emitter.once(event, () => resolve()));
}

/** A cancellation's reason (a WeftError on this thread, `{code, message}` from the main thread). */
function wireReason(reason: unknown): WireErrorShape | undefined {
  const r = reason as { code?: unknown; message?: unknown } | undefined;
  return typeof r?.code === 'string' ? { code: r.code, message: String(r.message) } : undefined;
}

function transportFailure(f: CallFailure, replayable: boolean): Failure {
  return { kind: 'transport', status: 14, neverReachedApp: f.retryable, bodyReplayable: replayable };
}

function describe(err: unknown, peer: PeerAddress): WireErrorShape {
  if (isServiceError(err)) return fromServiceError(err, peer).wire;
  if (err instanceof CallFailure) return err.wire;
  const code = (err as { code?: unknown }).code;
  return { code: typeof code === 'string' && code.startsWith('WEFT_') ? code : 'WEFT_PEER_FAILED', message: (err as Error).message };
}

/**
 * Why the rest of an answer could not be fetched. The caller going away, the deadline and the
 * app closing its connection keep their own codes; anything else (the node stopped or failed,
 * the ticket was unknown or had expired) is WEFT_PEER_ANSWER_CUT, naming the app and the node.
 * Never a retryable code such as WEFT_PEER_UNAVAILABLE: the call reached the app.
 */
export function answerCut(err: unknown, peer: PeerAddress, appId: string): WireErrorShape {
  const wire = describe(err, peer);
  if (wire.code === 'WEFT_CANCELLED' || wire.code === 'WEFT_DEADLINE_EXCEEDED' || wire.code === 'WEFT_APP_ABORTED') return wire;
  return { code: 'WEFT_PEER_ANSWER_CUT', message: `the rest of app ${appId}'s answer could not be fetched from node ${peer.nodeId} at ${peer.address}:${peer.port} (${wire.code}): ${wire.message}` };
}

function isServiceError(err: unknown): err is grpc.ServiceError {
  return typeof err === 'object' && err !== null && 'code' in err && 'metadata' in err && typeof (err as { code: unknown }).code === 'number';
}

