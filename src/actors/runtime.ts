/**
 * The actor runtime of one node: placement from membership, the handoff rule, routing actor
 * calls to their owner, and serving the calls this node owns. Transport-free: the node injects
 * how to send a call to another node (`send`) and how to publish registration meta
 * (`onMetaChange`), so this module is tested without sockets.
 *
 * Membership: `resolver.watchActors(namespace)` lists the instances whose meta carries
 * `actor_types`. Every node builds the same rings from the same list (`placement.ts`).
 *
 * The handoff rule (docs/actors.md, "The handoff rule"). Each node keeps `applied`: the tables
 * it applied since its last *settled* table (that one first). A node serves `type/id` only when
 * its current table names it AND either
 *   (a) the current table is settled here: every member of every table in `applied`, other
 *       than this node, is either listed with an acknowledgement of the current fingerprint, or
 *       absent from the listing for at least `lockDelayMs`; or
 *   (b) this node owns the id under every table in `applied` (it never gave the id away since
 *       its last settled table, so nobody could have been let in).
 * Otherwise the call waits (up to its deadline) for the table to settle, or is refused as
 * WEFT_ACTOR_MOVED if the table names another node.
 * A node acknowledges fingerprint F (meta `weft_placement = F`) only after it applied F,
 * drained every actor it does not own under F, and the app has answered their DELETEs.
 * Fencing: a node whose membership source has not answered for `fenceMs` serves no actor.
 */
import { randomUUID } from 'node:crypto';
import { WeftError } from '../errors.ts';
import { ACTOR_TYPES_META, PLACEMENT_ACK_META, type Instance, type Resolver } from '../routing/resolver.ts';
import { ActorError } from './errors.ts';
import type { ActorHost } from './host.ts';
import { EMPTY_PLACEMENT, lookup, nextPlacement, type PlacementMember, type PlacementTable } from './placement.ts';
import type { LogFn } from './types.ts';
import { OFF, type Span, type Tracer } from '../observability/tracing.ts';
import { actorRouteSpan, actorTurnSpan, endActorSpan, propagate } from '../observability/tracing-spans.ts';

/** Where a call goes: a node's peer server and the app there that hosts the type. */
export interface ActorTarget {
  readonly nodeId: string;
  readonly address: string;
  readonly port: number;
  readonly appId: string;
}

export interface ActorCall {
  readonly type: string;
  readonly id: string;
  readonly method: string;
  /** Flat list, lower-case names (a `dapr-reentrancy-id` among them is the reentrancy id). */
  readonly headers: readonly string[];
  readonly body: Uint8Array | null;
  /** Absolute, ms since the epoch. */
  readonly deadline: number;
  readonly callerAppId: string;
  readonly callerNamespace: string;
  /** The span this call's routing is a child of (tracing on), e.g. the ingress span. */
  readonly trace?: Span | undefined;
}

/** An answer (any status: an app's non-2xx passes through unchanged) or weft's failure. */
export type ActorOutcome =
  | { readonly ok: true; readonly status: number; readonly headers: readonly string[]; readonly body: Uint8Array }
  | { readonly ok: false; readonly error: WeftError };

export interface ActorRuntimeOptions {
  readonly nodeId: string;
  readonly namespace: string;
  readonly resolver: Resolver;
  /** Local actor hosts, by app id (apps of `namespace`). */
  readonly hosts: ReadonlyMap<string, ActorHost>;
  /** Sends one call to another node's actor host. Never throws: failures come back as outcomes. */
  readonly send: (target: ActorTarget, call: ActorCall) => Promise<ActorOutcome>;
  /** This node's actor meta changed (types or acknowledgement): re-register. */
  readonly onMetaChange: () => void;
  /** A member absent from the listing counts as gone only after this long (default fenceMs + 1 s: a fenced node cuts its turns at once). */
  readonly lockDelayMs?: number;
  /** Serve no actor when the membership source has not answered for this long (default 5 s). */
  readonly fenceMs?: number;
  /** Attempts per call when the node reached answers moved/unavailable (default 5). */
  readonly maxAttempts?: number;
  readonly now?: () => number;
  readonly log?: LogFn;
  /** The node's tracer: a routing span per call, a turn span per call served here. */
  readonly tracer?: Tracer;
}

export interface ActorRuntimeStats {
  readonly placementVersion: number;
  readonly fingerprint: number;
  readonly settled: boolean;
  readonly rebalances: number;
  readonly members: number;
}

type Decision = 'own' | 'pending' | 'other';

const REENTRANCY_HEADER = 'dapr-reentrancy-id';
/** The acknowledgement of a node that left for good: it counts for every fingerprint. */
export const RELEASED = '*';
/** Registration meta key: the node's incarnation. */
export const EPOCH_META = 'weft_epoch';
/** Codes after which the caller looks the owner up again and retries (the call never reached the app). */
const REROUTE = new Set(['WEFT_ACTOR_MOVED', 'WEFT_PEER_UNAVAILABLE', 'WEFT_NOT_SERVING', 'WEFT_SHUTTING_DOWN']);

export class ActorRuntime {
  private readonly o: ActorRuntimeOptions;
  private readonly now: () => number;
  private readonly log: LogFn;
  private readonly lockDelayMs: number;
  private readonly fenceMs: number;
  private readonly maxAttempts: number;
  private table: PlacementTable = EMPTY_PLACEMENT;
  /** Tables applied since the last settled one; [0] is the settled one. */
  private applied: PlacementTable[] = [EMPTY_PLACEMENT];
  private version = 0;
  /** The last listing: nodeId → its instances. */
  private listing = new Map<string, Instance[]>();
  /** Members of earlier tables absent from the listing, with when that was first seen. */
  private readonly goneSince = new Map<string, number>();
  /** `${nodeId}\0${type}` → the app hosting the type there. */
  private appOf = new Map<string, string>();
  private acked = '';
  /** Nodes seen acknowledging `*` (left for good, drained): their absence needs no lock delay. */
  private readonly released = new Set<string>();
  /** More tables applied than kept: serve only settled tables until the next settlement. */
  private continuityLost = false;
  private leaving = false;
  private wasFenced = false;
  /** When the runtime's own 200 ms tick last ran: a longer gap means this process stalled. */
  private lastTickAt = Date.now();
  /** This incarnation: new per process and after every fence (meta `weft_epoch`). */
  private epoch = randomUUID().slice(0, 8);
  private received = false;
  private unwatch: (() => void) | undefined;
  private settleTimer: NodeJS.Timeout | undefined;
  private changeWaiters: Array<() => void> = [];
  private closed = false;
  private rebalances = 0;
  private applying: Promise<void> = Promise.resolve();

  constructor(options: ActorRuntimeOptions) {
    this.o = options;
    this.now = options.now ?? Date.now;
    this.log = options.log ?? (() => {});
    this.fenceMs = options.fenceMs ?? 5000;
    this.lockDelayMs = options.lockDelayMs ?? this.fenceMs + 1000;
    this.maxAttempts = options.maxAttempts ?? 5;
  }

  /** Whether the membership source can place actors across nodes at all. */
  get supported(): boolean {
    return this.o.resolver.watchActors !== undefined;
  }

  start(): void {
    const watch = this.o.resolver.watchActors?.bind(this.o.resolver);
    if (watch === undefined) {
      this.log('warn', `resolver ${this.o.resolver.scheme} has no actor membership: actor calls answer WEFT_ACTOR_NOT_SUPPORTED`);
      return;
    }
    this.lastTickAt = this.now();
    this.unwatch = watch(this.o.namespace, (list) => this.onMembership(list));
    this.settleTimer = setInterval(() => this.recheck(), 200);
    this.settleTimer.unref();
  }

  /** Registration meta for a local app: the types it hosts and this node's acknowledgement. */
  meta(appId: string): Record<string, string> {
    const host = this.o.hosts.get(appId);
    if (host === undefined || host.types.length === 0 || !this.supported) return {};
    // A leaving node stays listed, hosting nothing, until its acknowledgement is out.
    return { [ACTOR_TYPES_META]: this.leaving ? '' : host.types.join(','), [PLACEMENT_ACK_META]: this.acked, [EPOCH_META]: this.epoch };
  }

  stats(): ActorRuntimeStats {
    let members = 0;
    const seen = new Set<string>();
    for (const ring of this.table.types.values()) for (const m of ring.members) if (!seen.has(m.nodeId)) seen.add(m.nodeId), members++;
    return { placementVersion: this.table.version, fingerprint: this.table.fingerprint, settled: this.isSettled(), rebalances: this.rebalances, members };
  }

  /** This node's current incarnation (meta `weft_epoch`): new per process and after every fence. */
  get incarnation(): string {
    return this.epoch;
  }

  get placementVersion(): number {
    return this.table.version;
  }

  // ---------------------------------------------------------------- membership and handoff

  private onMembership(list: readonly Instance[]): void {
    if (this.closed) return;
    if (!this.received) {
      this.received = true;
      this.wake();
    }
    const listing = new Map<string, Instance[]>();
    for (const i of list) {
      let l = listing.get(i.nodeId);
      if (l === undefined) listing.set(i.nodeId, (l = []));
      l.push(i);
    }
    const t = this.now();
    for (const id of this.listing.keys()) if (!listing.has(id) && !this.goneSince.has(id)) this.goneSince.set(id, t);
    for (const [id, instances] of listing) {
      this.goneSince.delete(id);
      if (instances.every((i) => i.meta[PLACEMENT_ACK_META] === RELEASED)) this.released.add(id);
      else this.released.delete(id);
    }
    this.listing = listing;
    const members: PlacementMember[] = [];
    const appOf = new Map<string, string>();
    for (const [nodeId, instances] of listing) {
      const types = new Set<string>();
      for (const i of instances) {
        for (const type of (i.meta[ACTOR_TYPES_META] ?? '').split(',')) {
          if (type === '') continue;
          types.add(type);
          if (!appOf.has(`${nodeId}\0${type}`)) appOf.set(`${nodeId}\0${type}`, i.appId);
        }
      }
      const first = instances[0] as Instance;
      if (types.size > 0) members.push({ nodeId, address: first.address, port: first.port, actorTypes: [...types].sort(), epoch: first.meta[EPOCH_META] });
    }
    this.appOf = appOf;
    const next = nextPlacement(this.table, members, ++this.version);
    if (next !== this.table) this.apply(next);
    this.recheck();
  }

  private apply(next: PlacementTable): void {
    const prev = this.table;
    this.table = next;
    this.applied.push(next);
    if (this.applied.length > 64) {
      this.applied.splice(1, this.applied.length - 2);
      this.continuityLost = true;
    }
    if (prev !== EMPTY_PLACEMENT) this.rebalances++;
    this.log('info', 'actor placement changed', { version: next.version, fingerprint: next.fingerprint, types: [...next.types.keys()] });
    const self = this.o.nodeId;
    // Drain what this node no longer owns, wait for the app's DELETEs, then acknowledge.
    this.applying = this.applying.then(async () => {
      const notMine = (type: string, id: string): boolean => lookup(next, type, id)?.nodeId !== self;
      await Promise.all([...this.o.hosts.values()].map(async (h) => {
        await h.drainAndDeactivate(notMine);
        await h.settled();
      }));
      // A leaving node has acknowledged `*` (or is about to): never overwrite it.
      if (this.table === next && !this.closed && !this.leaving) {
        this.acked = String(next.fingerprint);
        this.o.onMetaChange();
      }
    }).catch((err: unknown) => this.log('error', 'actor drain failed', { err: (err as Error).message }));
    this.wake();
  }

  /** Settles the current table when its condition holds (membership or time changed); fences. */
  private recheck(): void {
    const fenced = this.fenced();
    this.lastTickAt = this.now();
    if (fenced && !this.wasFenced) {
      // Cut off from the membership source: stop everything (timers included) before the lock
      // delay lets another node take these actors over, and come back as a new incarnation:
      // nothing is served again until every member has acknowledged a table with it.
      this.log('warn', 'actor membership source unreachable: fencing, every actor is drained', { fenceMs: this.fenceMs });
      this.epoch = randomUUID().slice(0, 8);
      this.applied = [EMPTY_PLACEMENT, this.table];
      this.continuityLost = true;
      if (!this.leaving) this.o.onMetaChange();
      // At once, not after a drain under way: that one may wait for a turn this cuts.
      const fencing = Promise.all([...this.o.hosts.values()].map((h) => h.fence()));
      this.applying = Promise.all([this.applying, fencing]).then(() => {}, () => {});
    }
    this.wasFenced = fenced;
    if (this.applied.length > 1 && this.isSettled()) {
      this.applied = [this.table];
      this.continuityLost = false;
      this.log('info', 'actor placement settled', { version: this.table.version, fingerprint: this.table.fingerprint });
      this.wake();
    }
  }

  private isSettled(): boolean {
    if (this.applied.length === 1) return true;
    // A table that lists this node under an older incarnation cannot settle: acks of it are stale.
    for (const ring of this.table.types.values()) {
      for (const m of ring.members) if (m.nodeId === this.o.nodeId && m.epoch !== this.epoch) return false;
    }
    const want = String(this.table.fingerprint);
    const t = this.now();
    const required = new Set<string>();
    for (const table of this.applied) for (const ring of table.types.values()) for (const m of ring.members) required.add(m.nodeId);
    required.delete(this.o.nodeId);
    for (const nodeId of required) {
      const instances = this.listing.get(nodeId);
      if (instances === undefined) {
        if (this.released.has(nodeId)) continue;
        const since = this.goneSince.get(nodeId);
        if (since === undefined || t - since < this.lockDelayMs) return false;
        continue;
      }
      // Every registration of the node must carry the acknowledgement.
      if (!instances.every((i) => i.meta[PLACEMENT_ACK_META] === want || i.meta[PLACEMENT_ACK_META] === RELEASED)) return false;
    }
    return true;
  }

  /**
   * Cut off: the resolver has not answered for `fenceMs`, or this process itself stalled that
   * long (a blocked event loop: its registration may have expired and a heartbeat run since
   * may already look like fresh contact, so the stall is judged by the runtime's own tick).
   */
  private fenced(): boolean {
    // A node that hosts no actor has nothing to fence: a caller-only node hears from its
    // resolver only once per blocking query, which says nothing about its own lease.
    if (!this.hosting()) return false;
    const now = this.now();
    if (now - this.lastTickAt > this.fenceMs) return true;
    // Contact is the lease: when this node's registrations were last renewed (sent), since only
    // a renewal keeps the others from counting it gone. A watch answer proves nothing of that.
    const status = this.o.resolver.status();
    const last = status.renewedAt ?? status.lastSuccessAt;
    return last !== undefined && now - last > this.fenceMs;
  }

  private hosting(): boolean {
    for (const h of this.o.hosts.values()) if (h.types.length > 0) return true;
    return false;
  }

  /** Whether this node may serve `type/id` now (the owner check of every call). */
  decide(type: string, id: string): Decision {
    if (this.closed || this.leaving || this.fenced()) return 'other';
    const self = this.o.nodeId;
    if (lookup(this.table, type, id)?.nodeId !== self) return 'other';
    if (this.applied.length === 1) return 'own';
    if (!this.continuityLost && this.applied.every((t) => lookup(t, type, id)?.nodeId === self)) return 'own';
    return this.isSettled() ? 'own' : 'pending';
  }

  /** For ActorHost's `owns`. */
  owns(type: string, id: string): boolean {
    return this.decide(type, id) === 'own';
  }

  private wake(): void {
    for (const w of this.changeWaiters.splice(0)) w();
  }

  /** Resolves at the next table change or settlement, or after `ms`. */
  private changed(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(done, Math.max(0, ms));
      timer.unref();
      function done(): void {
        clearTimeout(timer);
        resolve();
      }
      this.changeWaiters.push(done);
    });
  }

  // ---------------------------------------------------------------- the caller's side

  /** Routes one actor call to its owner (this node or another), retrying "moved" at once, bounded. */
  async invoke(call: ActorCall): Promise<ActorOutcome> {
    const tracer = this.o.tracer ?? OFF;
    if (!tracer.on || call.trace?.sampled === false) return this.route(call, undefined);
    const span = actorRouteSpan(tracer, call.trace, call.type, call.id, call.method, call.callerAppId);
    return endActorSpan(span, await this.route({ ...call, trace: span }, span));
  }

  private async route(call: ActorCall, span: Span | undefined): Promise<ActorOutcome> {
    if (!this.supported) return fail(new ActorError('WEFT_ACTOR_NOT_SUPPORTED', `actors need a resolver with actor membership; ${this.o.resolver.scheme} has none`));
    if (call.id === '') return fail(new ActorError('WEFT_ACTOR_INSTANCE_MISSING', 'the actor id is empty'));
    // The first membership may still be on its way right after start.
    if (!this.received) await this.changed(Math.min(3000, call.deadline - this.now()));
    let last: WeftError | undefined;
    for (let attempt = 1; attempt <= this.maxAttempts; attempt++) {
      const left = call.deadline - this.now();
      if (left <= 0) break;
      const owner = lookup(this.table, call.type, call.id);
      if (owner === undefined) return fail(new ActorError('WEFT_ACTOR_INSTANCE_MISSING', `no app in namespace ${this.o.namespace} hosts actor type ${call.type}`));
      const before = this.table;
      let outcome: ActorOutcome;
      if (owner.nodeId === this.o.nodeId) {
        const appId = this.appOf.get(`${owner.nodeId}\0${call.type}`) ?? '';
        outcome = await this.serve(appId, call, undefined);
      } else {
        const appId = this.appOf.get(`${owner.nodeId}\0${call.type}`) ?? '';
        outcome = await this.o.send({ nodeId: owner.nodeId, address: owner.address, port: owner.port, appId }, call);
      }
      if (outcome.ok || !REROUTE.has(outcome.error.code)) return outcome;
      last = outcome.error;
      span?.event('weft.actor.reroute', { 'weft.attempt': attempt, 'error.type': outcome.error.code, 'weft.peer.node_id': owner.nodeId });
      // Moved or unreachable: retry at once if the table changed meanwhile, else at the next
      // change or after a short backoff (the refusing node's view may be the newer one).
      if (this.table === before) await this.changed(Math.min(50 * 2 ** (attempt - 1), call.deadline - this.now()));
    }
    const why = last === undefined ? 'its deadline passed' : `${last.code}: ${last.message}`;
    return fail(new ActorError('WEFT_ACTOR_INVOKE_METHOD', `actor ${call.type}/${call.id}: no owner took the call (${why})`));
  }

  // ---------------------------------------------------------------- the owner's side

  /**
   * Serves a call this node was sent (or routed to itself): the owner check, waiting while a
   * handoff of this id is pending, then the host (turn lock, app callback). An app's non-2xx
   * answer comes back as an answer, unchanged.
   */
  async serve(appId: string, call: ActorCall, signal: AbortSignal | undefined): Promise<ActorOutcome> {
    const tracer = this.o.tracer ?? OFF;
    if (!tracer.on) return this.serveHere(appId, call, signal);
    const turn = actorTurnSpan(tracer, call.trace, call.headers, appId, call.type, call.id, call.method);
    if (!turn.recording) return this.serveHere(appId, call, signal);
    return endActorSpan(turn, await this.serveHere(appId, { ...call, headers: propagate(call.headers, turn) }, signal));
  }

  private async serveHere(appId: string, call: ActorCall, signal: AbortSignal | undefined): Promise<ActorOutcome> {
    const host = this.hostFor(appId, call.type);
    if (host === undefined) return fail(new ActorError('WEFT_ACTOR_MOVED', `node ${this.o.nodeId} hosts no actor type ${call.type} now`));
    for (;;) {
      const d = this.decide(call.type, call.id);
      if (d === 'other') return fail(new ActorError('WEFT_ACTOR_MOVED', `actor ${call.type}/${call.id} is not owned by node ${this.o.nodeId}`, { placementVersion: this.table.version }));
      if (d === 'own') break;
      const left = call.deadline - this.now();
      if (left <= 0 || signal?.aborted === true) return fail(new ActorError('WEFT_ACTOR_MOVED', `actor ${call.type}/${call.id}: its handoff to node ${this.o.nodeId} did not settle before the deadline`));
      await this.changed(Math.min(left, 100));
    }
    const timeout = AbortSignal.timeout(Math.max(1, call.deadline - this.now()));
    const r = await host.invoke({
      type: call.type, id: call.id, method: call.method, headers: call.headers, body: call.body,
      reentrancyId: header(call.headers, REENTRANCY_HEADER),
      signal: signal === undefined ? timeout : AbortSignal.any([signal, timeout]),
    });
    if (r.ok) return { ok: true, status: r.value.status, headers: r.value.headers, body: r.value.body };
    const e = r.error;
    if (e instanceof ActorError && e.app !== undefined) return { ok: true, status: e.app.status, headers: e.app.headers, body: e.app.body };
    return fail(e instanceof WeftError ? e : WeftError.from(e));
  }

  /** The local host serving `type` (the named app's, else any that hosts it). */
  hostFor(appId: string, type: string): ActorHost | undefined {
    const named = this.o.hosts.get(appId);
    if (named !== undefined && named.hosts(type)) return named;
    for (const h of this.o.hosts.values()) if (h.hosts(type)) return h;
    return undefined;
  }

  /**
   * Graceful leave: refuse new calls, announce no types (the others compute tables without
   * this node), drain every actor and wait for the app's DELETEs, then acknowledge `*` ("I hold
   * nothing and never serve again"), which settles the others' tables without a lock delay.
   * The caller should leave the registration up for a moment (`lingerMs`) so they see it.
   */
  async leave(lingerMs: number): Promise<void> {
    if (this.leaving || this.closed) return;
    this.leaving = true;
    this.wake();
    if (!this.supported || [...this.o.hosts.values()].every((h) => h.types.length === 0)) return;
    this.o.onMetaChange();
    await Promise.all([...this.o.hosts.values()].map((h) => h.close()));
    this.acked = RELEASED;
    this.o.onMetaChange();
    await new Promise((resolve) => setTimeout(resolve, lingerMs));
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.wake();
    await Promise.all([...this.o.hosts.values()].map((h) => h.close()));
    this.unwatch?.();
    if (this.settleTimer !== undefined) clearInterval(this.settleTimer);
  }
}

function fail(error: WeftError): ActorOutcome {
  return { ok: false, error };
}

function header(headers: readonly string[], name: string): string | undefined {
  for (let i = 0; i + 1 < headers.length; i += 2) if (headers[i] === name) return headers[i + 1];
  return undefined;
}
