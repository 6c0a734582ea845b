/**
 * The node's actors, wired: one ActorHost per local app (Dapr's callback protocol over the
 * app's HTTP channel), the ActorRuntime (placement, handoff, routing), the transport of actor
 * calls (the outbound path, to the one node placement chose), the API the edges call, the
 * peer server's hook, metadata and metrics. node.ts only creates, starts and stops it.
 */
import { Counter, Gauge, type Registry } from 'prom-client';
import type { Transferable } from 'node:worker_threads';
import { WeftError } from '../errors.ts';
import type { AppConfig } from '../config.ts';
import type { AppChannel } from '../appchannel/channel.ts';
import { HOP_BY_HOP } from '../appchannel/http.ts';
import type { Dispatcher } from '../dispatch.ts';
import type { Resolver } from '../routing/resolver.ts';
import type { CallHead } from '../peer/codec.ts';
import { bodyBuffer, type InvokeTask } from '../../workers/protocol.ts';
import { PortReader } from '../../workers/port-stream.ts';
import type { ActorApi } from '../ingress/actors-http.ts';
import { ActorHost } from './host.ts';
import { ActorError } from './errors.ts';
import { ActorRuntime, type ActorCall, type ActorOutcome, type ActorTarget } from './runtime.ts';
import type { ActorResult, AppCallRequest, AppCallResponse, AppCaller, LogFn, TimerRequest } from './types.ts';
import { ActorStorage, type RawOperation } from './storage.ts';
import { ReminderService, type ReminderRequest, type ReminderView } from './reminders.ts';
import type { StoreChoice } from '../state/components.ts';
import { OFF, type Tracer } from '../observability/tracing.ts';
import { appCallSpanFromHeaders, endAppCall, endFailed, propagate } from '../observability/tracing-spans.ts';

export interface NodeActorsOptions {
  readonly nodeId: string;
  readonly namespace: string;
  readonly apps: readonly AppConfig[];
  readonly channels: ReadonlyMap<string, AppChannel>;
  readonly resolver: Resolver;
  readonly dispatcher: Dispatcher;
  readonly registry: Registry;
  readonly settings: { readonly callTimeoutMs: number; readonly fenceMs: number; readonly lockDelayMs: number; readonly leaveLingerMs: number };
  /** Re-register the node's apps (their meta changed). */
  readonly reannounce: () => void;
  /** The actor state store (state, reminders, owner claims), or why there is none. */
  readonly state?: StoreChoice | undefined;
  readonly log: LogFn;
  /** The node's tracer (routing, turn and app call spans). */
  readonly tracer?: Tracer;
}

export class NodeActors implements ActorApi {
  readonly runtime: ActorRuntime;
  private readonly hosts = new Map<string, ActorHost>();
  private readonly o: NodeActorsOptions;
  private readonly storage: ActorStorage;
  private readonly reminders: ReminderService | undefined;
  private leaving = false;
  private storeOpen = false;
  private storeRetry: NodeJS.Timeout | undefined;

  constructor(o: NodeActorsOptions) {
    this.o = o;
    const store = o.state?.store;
    const storeTimeoutMs = Math.min(o.settings.callTimeoutMs, 10_000);
    this.storage = new ActorStorage({
      store, unavailable: o.state?.source ?? 'no actor state store is configured', namespace: o.namespace,
      owner: () => `${o.nodeId}/${this.runtime.incarnation}`,
      hostFor: (type) => this.runtime.hostFor('', type), storeTimeoutMs,
    });
    for (const app of o.apps) {
      if (app.namespace !== o.namespace) continue; // placement is per namespace: the node's own
      const channel = o.channels.get(`${app.namespace}/${app.appId}`);
      if (channel === undefined) continue;
      this.hosts.set(app.appId, new ActorHost({
        appId: app.appId,
        app: appCaller(channel, o.settings.callTimeoutMs, o.tracer ?? OFF),
        callTimeoutMs: o.settings.callTimeoutMs,
        owns: (type, id) => this.runtime.owns(type, id),
        placementVersion: () => this.runtime.placementVersion,
        log: o.log,
        claim: store === undefined ? undefined : (type, id) => this.storage.claim(app.appId, type, id),
      }));
    }
    this.runtime = new ActorRuntime({
      nodeId: o.nodeId, namespace: o.namespace, resolver: o.resolver, hosts: this.hosts,
      send: (target, call) => this.send(target, call),
      onMetaChange: o.reannounce,
      lockDelayMs: o.settings.lockDelayMs, fenceMs: o.settings.fenceMs,
      log: o.log, tracer: o.tracer,
    });
    this.reminders = store === undefined ? undefined : new ReminderService({
      store, namespace: o.namespace, hosts: this.hosts, owns: (type, id) => this.runtime.owns(type, id),
      log: o.log, storeTimeoutMs, callTimeoutMs: o.settings.callTimeoutMs,
    });
    this.metrics(o.registry);
  }

  /** Opens the store (tables on first use), retrying while it is down; reminders start once it is open. */
  private openStore(): void {
    const store = this.o.state?.store;
    if (store === undefined || this.storeOpen || this.leaving) return;
    store.open(Date.now() + 10_000).then(() => {
      this.storeOpen = true;
      this.o.log('info', 'actor state store open', { store: store.describe, from: this.o.state?.source });
      this.reminders?.start();
    }, (err: unknown) => {
      this.o.log('warn', 'actor state store not reachable yet; retrying', { store: store.describe, err: (err as Error).message });
      void store.close();
      this.storeRetry = setTimeout(() => this.openStore(), 1000);
      this.storeRetry.unref();
    });
  }

  /** Starts membership, then reads each app's `/dapr/config` (in the background) and announces its types. */
  start(): void {
    this.runtime.start();
    if (this.hosts.size > 0) this.openStore();
    for (const host of this.hosts.values()) {
      void host.start().then((config) => {
        if (config.entities.length > 0 && !this.leaving) this.o.reannounce();
      });
    }
  }

  /** Registration meta for one app. */
  meta(appId: string): Record<string, string> {
    return this.runtime.meta(appId);
  }

  invoke(call: ActorCall): Promise<ActorOutcome> {
    return this.runtime.invoke(call);
  }

  createTimer(type: string, id: string, name: string, spec: TimerRequest): ActorResult<void> {
    const host = this.runtime.hostFor('', type);
    if (host === undefined) return { ok: false, error: new ActorError('WEFT_ACTOR_TIMER_CREATE', `timer ${name}: no app on this node hosts actor type ${type}`) };
    return host.createTimer(type, id, name, spec);
  }

  deleteTimer(type: string, id: string, name: string): void {
    this.runtime.hostFor('', type)?.deleteTimer(type, id, name);
  }

  getState(type: string, id: string, key: string, deadline: number): Promise<ActorResult<Uint8Array | undefined>> {
    return this.storage.get(type, id, key, deadline);
  }

  transactState(type: string, id: string, ops: readonly RawOperation[], deadline: number): Promise<ActorResult<void>> {
    return this.storage.transact(type, id, ops, deadline);
  }

  registerReminder(type: string, id: string, name: string, spec: ReminderRequest, deadline: number): Promise<ActorResult<void>> {
    const r = this.reminderHost(type, 'WEFT_ACTOR_REMINDER_CREATE');
    return 'error' in r ? Promise.resolve(r) : r.service.register(r.host, type, id, name, spec, deadline);
  }

  getReminder(type: string, id: string, name: string, deadline: number): Promise<ActorResult<ReminderView>> {
    const r = this.reminderHost(type, 'WEFT_ACTOR_REMINDER_GET');
    return 'error' in r ? Promise.resolve(r) : r.service.get(r.host, type, id, name, deadline);
  }

  deleteReminder(type: string, id: string, name: string, deadline: number): Promise<ActorResult<void>> {
    const r = this.reminderHost(type, 'WEFT_ACTOR_REMINDER_DELETE');
    return 'error' in r ? Promise.resolve(r) : r.service.delete(r.host, type, id, name, deadline);
  }

  /** The reminder service and the local host of `type` (reminders are kept per hosting app). */
  private reminderHost(type: string, code: 'WEFT_ACTOR_REMINDER_CREATE' | 'WEFT_ACTOR_REMINDER_GET' | 'WEFT_ACTOR_REMINDER_DELETE'): { service: ReminderService; host: ActorHost } | { ok: false; error: ActorError } {
    const service = this.reminders;
    if (service === undefined) return { ok: false, error: new ActorError('WEFT_ACTOR_NOT_SUPPORTED', `actor reminders: ${this.o.state?.source ?? 'no actor state store is configured'}`) };
    const host = this.runtime.hostFor('', type);
    if (host === undefined) return { ok: false, error: new ActorError(code, `no app on this node hosts actor type ${type}: reminders are registered through a node that hosts the type`) };
    return { service, host };
  }

  /** The peer server's hook: a call another node routed here. */
  async serveRemote(head: CallHead, headers: string[], body: Uint8Array, signal: AbortSignal, msLeft: number): Promise<{ status: number; headers: readonly string[]; body: Uint8Array }> {
    const deadline = Date.now() + (Number.isFinite(msLeft) ? msLeft : this.o.settings.callTimeoutMs);
    const outcome = await this.runtime.serve(head.appId, {
      type: head.actorType ?? '', id: head.actorId ?? '', method: head.method, headers,
      body: body.length === 0 ? null : body, deadline, callerAppId: head.callerAppId, callerNamespace: head.callerNamespace,
    }, signal);
    if (!outcome.ok) throw outcome.error;
    return outcome;
  }

  /** `actors: [{type, count}]` for `/v1.0/metadata`: every type hosted here, with its active count. */
  metadataList(): Array<{ type: string; count: number }> {
    const out: Array<{ type: string; count: number }> = [];
    for (const host of this.hosts.values()) {
      const active = host.stats().active;
      for (const type of host.types) out.push({ type, count: active[type] ?? 0 });
    }
    return out;
  }

  /** Graceful leave (before deregistering): drain everything and hand it over. */
  leave(): Promise<void> {
    this.leaving = true;
    void this.reminders?.close();
    return this.runtime.leave(this.o.settings.leaveLingerMs);
  }

  async close(): Promise<void> {
    if (this.storeRetry !== undefined) clearTimeout(this.storeRetry);
    await this.reminders?.close();
    await this.runtime.close();
    await this.storage.close();
  }

  /** An actor call to another node, through the outbound path, to exactly that node. */
  private async send(target: ActorTarget, call: ActorCall): Promise<ActorOutcome> {
    let body: ArrayBuffer | null = null;
    if (call.body !== null && call.body.length > 0) {
      body = new ArrayBuffer(call.body.length);
      new Uint8Array(body).set(call.body);
    }
    const task: InvokeTask = {
      type: 'invoke', routingVersion: 0, appId: target.appId, namespace: this.o.namespace,
      callerAppId: call.callerAppId, callerNamespace: call.callerNamespace,
      method: call.method, verb: 'PUT', query: '', headers: call.headers, body, port: null, deadline: call.deadline,
      target: { nodeId: target.nodeId, address: target.address, port: target.port }, actorType: call.type, actorId: call.id,
      trace: call.trace?.traceparent, traceState: call.trace?.traceState,
    };
    const transfer: Transferable[] = body === null ? [] : [body];
    try {
      const result = await this.o.dispatcher.run(task, transfer);
      if (result.type === 'error') return { ok: false, error: WeftError.from(result.error) };
      if (result.type === 'response') {
        return { ok: true, status: result.head.status, headers: result.head.headers, body: result.body === null ? new Uint8Array(0) : bodyBuffer(result.body) };
      }
      if (result.port === null) return { ok: false, error: new WeftError('WEFT_INTERNAL', 'an actor answer streamed without a port') };
      // A large answer: read it whole (actor answers are bounded by the app's own sizes).
      const reader = new PortReader(result.port);
      const first = await reader.next();
      if (first.type !== 'head') {
        reader.close();
        return { ok: false, error: first.type === 'error' ? WeftError.from(first.error) : new WeftError('WEFT_PEER_FAILED', 'the answer ended before its head') };
      }
      const chunks: Buffer[] = [];
      for (;;) {
        const e = await reader.next();
        if (e.type === 'data') chunks.push(Buffer.from(e.chunk));
        else if (e.type === 'end') break;
        else if (e.type === 'error') {
          reader.close();
          return { ok: false, error: WeftError.from(e.error) };
        }
      }
      reader.close();
      return { ok: true, status: first.head.status, headers: first.head.headers, body: Buffer.concat(chunks) };
    } catch (err) {
      return { ok: false, error: WeftError.from(err) };
    }
  }

  private metrics(registry: Registry): void {
    const hosts = this.hosts;
    const runtime = this.runtime;
    const sum = (pick: (s: ReturnType<ActorHost['stats']>) => number): number => {
      let n = 0;
      for (const h of hosts.values()) n += pick(h.stats());
      return n;
    };
    const registers = [registry];
    new Gauge({
      name: 'weft_actor_active', help: 'Active actors on this node, by type', labelNames: ['type'], registers,
      collect() {
        this.reset();
        for (const h of hosts.values()) for (const [type, n] of Object.entries(h.stats().active)) this.inc({ type }, n);
      },
    });
    new Gauge({ name: 'weft_actor_pending_actor_calls', help: 'Actor calls waiting for or running in their turn', registers, collect() { this.set(sum((s) => s.pendingCalls)); } });
    const reminders = this.reminders;
    new Counter({ name: 'weft_actor_reminder_fires_total', help: 'Actor reminder fires the app answered on this node', registers, collect() { this.reset(); this.inc(reminders?.fires ?? 0); } });
    new Gauge({ name: 'weft_actor_timers', help: 'Actor timers armed on this node', registers, collect() { this.set(sum((s) => s.timers)); } });
    new Gauge({ name: 'weft_actor_placement_version', help: 'This node\'s actor placement table version (grows with every membership change)', registers, collect() { this.set(runtime.stats().placementVersion); } });
    new Gauge({ name: 'weft_actor_placement_settled', help: '1 when this node\'s placement table is settled (no handoff pending)', registers, collect() { this.set(runtime.stats().settled ? 1 : 0); } });
    new Counter({ name: 'weft_actor_rebalances_total', help: 'Placement table changes applied by this node', registers, collect() { this.reset(); this.inc(runtime.stats().rebalances); } });
    new Counter({ name: 'weft_actor_rebalanced_total', help: 'Actors drained and deactivated because they moved to another node', registers, collect() { this.reset(); this.inc(sum((s) => s.rebalanced)); } });
    new Counter({ name: 'weft_actor_deactivated_total', help: 'Actor deactivations the app answered', registers, collect() { this.reset(); this.inc(sum((s) => s.deactivations)); } });
  }
}

/** The host's AppCaller on the app's HTTP channel: the whole answer, without hop-by-hop headers. */
function appCaller(channel: AppChannel, timeoutMs: number, tracer: Tracer): AppCaller {
  return {
    async call(req: AppCallRequest): Promise<AppCallResponse> {
      const q = req.path.indexOf('?');
      // Tracing: a client span under the turn span whose context the headers carry.
      const span = tracer.on ? appCallSpanFromHeaders(tracer, req.headers, req.verb, channel.app.appHost, channel.app.appPort ?? 0, req.path, channel.app.appId) : undefined;
      let res;
      try {
        res = await channel.call({
          method: (q === -1 ? req.path : req.path.slice(0, q)).replace(/^\//, ''),
          query: q === -1 ? '' : req.path.slice(q + 1),
          verb: req.verb, headers: span === undefined || !span.recording ? req.headers : propagate(req.headers, span), body: req.body,
          signal: req.signal ?? AbortSignal.timeout(timeoutMs),
        });
      } catch (err) {
        if (span !== undefined) endFailed(span, err);
        throw err;
      }
      if (span !== undefined) endAppCall(span, res.status);
      const chunks: Buffer[] = [];
      for await (const c of res.body) chunks.push(c as Buffer);
      const headers: string[] = [];
      for (let i = 0; i + 1 < res.headers.length; i += 2) {
        const name = (res.headers[i] as string).toLowerCase();
        if (HOP_BY_HOP.has(name) || name === 'content-length') continue;
        headers.push(name, res.headers[i + 1] as string);
      }
      return { status: res.status, headers, body: Buffer.concat(chunks) };
    },
  };
}
