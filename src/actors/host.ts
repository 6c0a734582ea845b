/**
 * The actor host: the owner node's side of one local app's actors.
 *
 * It speaks Dapr's actor callback protocol to the app through an injected `AppCaller`
 * (the node implements it on the undici app channel), and keeps the activations:
 *
 * - `start()` reads `GET /dapr/config` once the app answers (retrying with backoff; a 404
 *   means the app hosts no actors), then scans for idle actors every `actorScanInterval`.
 * - `invoke()` runs `PUT /actors/{type}/{id}/method/{m}` in the actor's turn. Ownership is
 *   checked on every call (`owns`, from the node's placement table) before anything reaches
 *   the app; a refusal is WEFT_ACTOR_MOVED, which never reached the app (retryable).
 * - An actor is active from its first call until it is retired: idle past
 *   `actorIdleTimeout`, `deactivate()`, `drainAndDeactivate()` (rebalancing) or `close()`.
 *   Retiring takes it out of the table at once (later calls make a new activation, whose
 *   first call waits for the old one's `DELETE`), lets its accepted calls finish, then sends
 *   `DELETE /actors/{type}/{id}`, but only if a call may have reached the app (answered, or
 *   failed after it may have gone out: the app may have activated it): the JS SDK fails on a
 *   DELETE of an actor it never activated.
 * - Timers live in memory with the activation and fire
 *   `PUT /actors/{type}/{id}/method/timer/{name}` inside the actor's turn. A timer whose
 *   fire the app refuses (404, 500: e.g. an unknown callback) is logged and stopped.
 * - With a state store, an activation first *claims* the actor in the store (`claim`: the
 *   store bumps the actor's owner generation) before its first call reaches the app; the
 *   activation's state writes carry that generation, so the store refuses them once another
 *   node has claimed the actor (docs/state.md, "Fencing").
 * - Reminders fire `PUT /actors/{type}/{id}/method/remind/{name}` in the actor's turn
 *   (`remind`), like a method call.
 *
 * Results inside, exceptions at the edge: every public call answers a result; nothing throws
 * to the caller.
 */
import { randomUUID } from 'node:crypto';
import { WeftError } from '../errors.ts';
import { ActorError } from './errors.ts';
import { NO_ACTORS, parseActorConfig, typeConfig } from './config.ts';
import type { ActorConfig } from './config.ts';
import { ActorTimers } from './timers.ts';
import { TurnLock } from './turns.ts';
import type { ActorResult, AppCallRequest, AppCallResponse, AppCaller, HostError, LogFn, TimerRequest } from './types.ts';

export type { ActorResult, AppCallRequest, AppCallResponse, AppCaller, HostError, LogFn, TimerRequest } from './types.ts';

export interface ActorInvokeRequest {
  readonly type: string;
  readonly id: string;
  readonly method: string;
  /** Flat list, lower-case names, already cleaned by the ingress. */
  readonly headers?: readonly string[];
  readonly body?: Uint8Array | null;
  /** The caller's `Dapr-Reentrancy-Id`, if it sent one. */
  readonly reentrancyId?: string | undefined;
  readonly signal?: AbortSignal | undefined;
}

export interface ActorHostOptions {
  readonly appId: string;
  readonly app: AppCaller;
  /** A turn running longer is released and its caller fails (default 60 s). */
  readonly callTimeoutMs?: number;
  /** Placement: does this node own `type/id` now? Checked on every call and timer creation. */
  readonly owns?: (type: string, id: string) => boolean;
  /** The placement table version `owns` answers from, stamped on WEFT_ACTOR_MOVED refusals. */
  readonly placementVersion?: () => number;
  readonly now?: () => number;
  readonly log?: LogFn;
  readonly newReentrancyId?: () => string;
  /** Backoff between `/dapr/config` attempts (default 100 ms doubling to 5 s). */
  readonly configRetry?: { readonly initialMs: number; readonly maxMs: number };
  /**
   * Records this node as the actor's owner in the state store and resolves with the owner
   * generation; run once per activation before the app sees it. Rejects with a WeftError.
   */
  readonly claim?: ((type: string, id: string) => Promise<number>) | undefined;
}

export interface ActorHostStats {
  readonly active: Readonly<Record<string, number>>;
  readonly pendingCalls: number;
  readonly deactivations: number;
  readonly rebalanced: number;
  readonly timers: number;
  readonly timerFires: number;
}

interface ActiveActor {
  readonly type: string;
  readonly id: string;
  readonly turns: TurnLock;
  lastUsed: number;
  /** A call for it reached the app (answered, or failed after it may have gone out): a DELETE is due. */
  activated: boolean;
  readonly timers: ActorTimers;
  /** The previous activation of the same actor, still being deactivated. */
  barrier: Promise<void> | undefined;
  /** The owner generation the store gave this activation (undefined: not claimed yet, or no store). */
  generation: number | undefined;
  /** Aborted when the node fences itself: cuts the app call of the running turn. */
  readonly cut: AbortController;
}

type RetireReason = 'idle' | 'explicit' | 'rebalance' | 'shutdown' | 'fence';


const JSON_TYPE = 'application/json';
const REENTRANCY_HEADER = 'dapr-reentrancy-id';

export class ActorHost {
  readonly appId: string;
  private readonly app: AppCaller;
  private readonly callTimeoutMs: number;
  private readonly owns: (type: string, id: string) => boolean;
  private readonly placementVersion: () => number | undefined;
  private readonly now: () => number;
  private readonly log: LogFn;
  private readonly newReentrancyId: () => string;
  private readonly retry: { readonly initialMs: number; readonly maxMs: number };
  private readonly claim: ((type: string, id: string) => Promise<number>) | undefined;
  private readonly actors = new Map<string, Map<string, ActiveActor>>();
  private readonly deactivating = new Map<string, Promise<void>>();
  /** Activations taken out of the table whose calls are still finishing (for reentrant calls into them). */
  private readonly retiring = new Map<string, ActiveActor>();
  private cfg: ActorConfig | undefined;
  private scan: NodeJS.Timeout | undefined;
  private closed = false;
  private wakeRetry: (() => void) | undefined;
  private pending = 0;
  private deactivations = 0;
  private rebalanced = 0;
  private timerCount = 0;
  private timerFires = 0;

  constructor(options: ActorHostOptions) {
    this.appId = options.appId;
    this.app = options.app;
    this.callTimeoutMs = options.callTimeoutMs ?? 60_000;
    this.owns = options.owns ?? (() => true);
    this.placementVersion = options.placementVersion ?? (() => undefined);
    this.now = options.now ?? Date.now;
    this.log = options.log ?? (() => {});
    this.newReentrancyId = options.newReentrancyId ?? randomUUID;
    this.retry = options.configRetry ?? { initialMs: 100, maxMs: 5000 };
    this.claim = options.claim;
  }

  /** The app's actor config, once read. */
  get config(): ActorConfig | undefined {
    return this.cfg;
  }

  /** Actor types this host serves (empty until the config is read): what the node announces to placement. */
  get types(): readonly string[] {
    return this.cfg?.entities ?? [];
  }

  /**
   * Reads `/dapr/config`, retrying with backoff until the app answers it; a 404 means the
   * app hosts no actors. Resolves with the config (NO_ACTORS if closed first).
   */
  async start(): Promise<ActorConfig> {
    let delay = this.retry.initialMs;
    while (!this.closed) {
      const config = await this.readConfig();
      if (config !== undefined) {
        this.cfg = config;
        if (config.entities.length > 0) {
          this.scan = setInterval(() => this.scanIdle(), config.scanIntervalMs);
          this.scan.unref();
        }
        return config;
      }
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, delay);
        t.unref();
        this.wakeRetry = () => {
          clearTimeout(t);
          resolve();
        };
      });
      this.wakeRetry = undefined;
      delay = Math.min(delay * 2, this.retry.maxMs);
    }
    return NO_ACTORS;
  }

  private async readConfig(): Promise<ActorConfig | undefined> {
    let res: AppCallResponse;
    try {
      res = await this.app.call({ verb: 'GET', path: '/dapr/config', headers: [], body: null, signal: AbortSignal.timeout(5000) });
    } catch (err) {
      this.log('debug', 'app did not answer /dapr/config yet', { appId: this.appId, err: (err as Error).message });
      return undefined;
    }
    if (res.status === 404) return NO_ACTORS;
    if (res.status < 200 || res.status >= 300) {
      this.log('debug', 'app answered /dapr/config with an error; retrying', { appId: this.appId, status: res.status });
      return undefined;
    }
    let doc: unknown;
    try {
      doc = JSON.parse(new TextDecoder().decode(res.body));
    } catch {
      this.log('warn', 'app\'s /dapr/config is not JSON; hosting no actors', { appId: this.appId });
      return NO_ACTORS;
    }
    const { config, warnings } = parseActorConfig(doc);
    for (const w of warnings) this.log('warn', `actor config: ${w}`, { appId: this.appId });
    this.log('info', 'actor config read', { appId: this.appId, entities: config.entities });
    return config;
  }

  hosts(type: string): boolean {
    return this.cfg !== undefined && this.cfg.entities.includes(type);
  }

  /** Why this host cannot take a call for `type/id` now, or undefined when it can. */
  private refuse(type: string, id: string): ActorError | undefined {
    if (this.closed) return new ActorError('WEFT_ACTOR_MOVED', 'the node is shutting down its actors');
    if (this.cfg === undefined) return new ActorError('WEFT_ACTOR_INSTANCE_MISSING', `app ${this.appId} has not told its actor types yet`);
    if (!this.hosts(type)) return new ActorError('WEFT_ACTOR_INSTANCE_MISSING', `app ${this.appId} does not host actor type ${type}`);
    if (id === '') return new ActorError('WEFT_ACTOR_INSTANCE_MISSING', 'the actor id is empty');
    if (!this.owns(type, id)) {
      const version = this.placementVersion();
      return new ActorError('WEFT_ACTOR_MOVED', `actor ${type}/${id} is owned by another node`, version === undefined ? undefined : { placementVersion: version });
    }
    return undefined;
  }

  /** Calls an actor method in the actor's turn. A non-2xx answer is WEFT_ACTOR_INVOKE_METHOD carrying the app's answer. */
  async invoke(req: ActorInvokeRequest): Promise<ActorResult<AppCallResponse>> {
    // A nested call of a turn still running in a retiring activation (A -> B -> A while A
    // drains) belongs to that turn: refusing or queueing it would deadlock the drain.
    const retiring = req.reentrancyId === undefined ? undefined : this.retiring.get(key(req.type, req.id));
    const reenters = retiring !== undefined && retiring.turns.runningReentrancyId === req.reentrancyId;
    if (!reenters) {
      const refused = this.refuse(req.type, req.id);
      if (refused !== undefined) return { ok: false, error: refused };
    }
    const actor = reenters ? retiring : this.activation(req.type, req.id);
    const cfg = typeConfig(this.cfg as ActorConfig, req.type);
    const reentrancyId = cfg.reentrancy.enabled ? (req.reentrancyId ?? this.newReentrancyId()) : undefined;
    const headers = appHeaders(req.headers ?? [], reentrancyId);
    const path = `${actorPath(req.type, req.id)}/method/${encodeURIComponent(req.method)}`;
    this.pending++;
    try {
      const res = await actor.turns.run(
        () => this.callApp(actor, { verb: 'PUT', path, headers, body: req.body ?? null, signal: req.signal }),
        { reentrancyId, signal: req.signal },
      );
      if (res.status < 200 || res.status >= 300) {
        return { ok: false, error: new ActorError('WEFT_ACTOR_INVOKE_METHOD', `actor ${req.type}/${req.id} method ${req.method} answered ${res.status}`, { app: res }) };
      }
      return { ok: true, value: res };
    } catch (err) {
      return { ok: false, error: asHostError(err) };
    } finally {
      this.pending--;
      actor.lastUsed = this.now();
    }
  }

  /** One call to the app for an activation, inside its turn. */
  private async callApp(actor: ActiveActor, req: AppCallRequest): Promise<AppCallResponse> {
    if (actor.barrier !== undefined) {
      await actor.barrier;
      actor.barrier = undefined;
    }
    if (this.claim !== undefined && actor.generation === undefined) actor.generation = await this.claim(actor.type, actor.id);
    actor.lastUsed = this.now();
    const signal = AbortSignal.any([req.signal ?? AbortSignal.timeout(this.callTimeoutMs), actor.cut.signal]);
    let res: AppCallResponse;
    try {
      res = await this.app.call({ ...req, signal });
    } catch (err) {
      // A call that may have reached the app (its deadline passed, it was cut, the connection
      // broke after the request went out) may have activated the actor there: the app can be
      // running it still. Only a DELETE ends that activation, and the node acknowledges a
      // table only after its DELETEs, so without one the new owner could activate the actor
      // while this app still has it. Only a call that provably never went out leaves it unknown.
      if (!neverSent(err)) actor.activated = true;
      throw err;
    }
    actor.activated = true;
    actor.lastUsed = this.now();
    return res;
  }

  private activation(type: string, id: string): ActiveActor {
    let byId = this.actors.get(type);
    if (byId === undefined) this.actors.set(type, (byId = new Map()));
    const existing = byId.get(id);
    if (existing !== undefined) return existing;
    const cfg = typeConfig(this.cfg as ActorConfig, type);
    const actor: ActiveActor = {
      type, id, lastUsed: this.now(), activated: false, barrier: this.deactivating.get(key(type, id)), generation: undefined, cut: new AbortController(),
      turns: new TurnLock({ reentrancy: cfg.reentrancy.enabled, maxStackDepth: cfg.reentrancy.maxStackDepth, turnTimeoutMs: this.callTimeoutMs, now: this.now }),
      timers: new ActorTimers({
        now: this.now,
        log: this.log,
        fields: { appId: this.appId, type, id },
        fire: (name, body) => this.fireTimer(actor, name, body),
        counted: (event) => {
          if (event === 'fired') this.timerFires++;
          else this.timerCount += event === 'started' ? 1 : -1;
        },
      }),
    };
    byId.set(id, actor);
    return actor;
  }

  /** One timer fire, in the actor's turn (with a reentrancy id of its own when reentrancy is on). */
  private fireTimer(actor: ActiveActor, name: string, body: Uint8Array): Promise<AppCallResponse> {
    const cfg = typeConfig(this.cfg ?? NO_ACTORS, actor.type);
    const reentrancyId = cfg.reentrancy.enabled ? this.newReentrancyId() : undefined;
    const path = `${actorPath(actor.type, actor.id)}/method/timer/${encodeURIComponent(name)}`;
    const req: AppCallRequest = { verb: 'PUT', path, headers: appHeaders([], reentrancyId), body };
    return actor.turns.run(() => this.callApp(actor, req), { reentrancyId });
  }

  /**
   * Fires a reminder in the actor's turn (activating it, like a method call). Resolves with
   * the app's answer (any status) and the activation's owner generation, for the follow-up
   * write in the store.
   */
  async remind(type: string, id: string, name: string, body: Uint8Array, signal?: AbortSignal): Promise<ActorResult<{ res: AppCallResponse; generation: number | undefined }>> {
    const refused = this.refuse(type, id);
    if (refused !== undefined) return { ok: false, error: refused };
    const actor = this.activation(type, id);
    const cfg = typeConfig(this.cfg as ActorConfig, type);
    const reentrancyId = cfg.reentrancy.enabled ? this.newReentrancyId() : undefined;
    const req: AppCallRequest = { verb: 'PUT', path: `${actorPath(type, id)}/method/remind/${encodeURIComponent(name)}`, headers: appHeaders([], reentrancyId), body, signal };
    this.pending++;
    try {
      const res = await actor.turns.run(() => this.callApp(actor, req), { reentrancyId, signal });
      return { ok: true, value: { res, generation: actor.generation } };
    } catch (err) {
      return { ok: false, error: asHostError(err) };
    } finally {
      this.pending--;
      actor.lastUsed = this.now();
    }
  }

  /**
   * The owner generation of the actor's activation here (also one still finishing its calls
   * while it retires), or undefined when it is not active here or not claimed yet.
   */
  generationOf(type: string, id: string): number | undefined {
    return (this.actors.get(type)?.get(id) ?? this.retiring.get(key(type, id)))?.generation;
  }

  isActive(type: string, id: string): boolean {
    return this.actors.get(type)?.has(id) === true;
  }

  /** Active actor ids per type (for placement's diff). */
  *active(): IterableIterator<[string, IterableIterator<string>]> {
    for (const [type, byId] of this.actors) yield [type, byId.keys()];
  }

  /** Deactivates one actor after its accepted calls; false when it was not active. */
  async deactivate(type: string, id: string): Promise<boolean> {
    const actor = this.actors.get(type)?.get(id);
    if (actor === undefined) return false;
    await this.retire(actor, 'explicit');
    return true;
  }

  /**
   * Rebalancing: drains every active actor `moved(type, id)` names and deactivates it. New
   * calls fail as moved at once; accepted calls get up to `drainOngoingCallTimeout` (when
   * `drainRebalancedActors`, else no time), then the ones still waiting fail as moved.
   * Resolves at handoff, with how many actors were drained: from then on the new owner may
   * take calls for them (the DELETE follows once a call still running has ended).
   */
  async drainAndDeactivate(moved: (type: string, id: string) => boolean): Promise<number> {
    const chosen: ActiveActor[] = [];
    for (const byId of this.actors.values()) for (const actor of byId.values()) if (moved(actor.type, actor.id)) chosen.push(actor);
    await Promise.all(chosen.map((a) => this.retire(a, 'rebalance')));
    return chosen.length;
  }

  /**
   * Fencing (the node may have been counted gone): deactivates every actor at once instead of
   * draining. Queued calls fail as moved (they never reached the app), the running turn's app
   * call is aborted (its caller gets WEFT_ACTOR_TIMEOUT: it may have reached the app), timers
   * stop, and the DELETE follows at once (not cut short: a node acknowledges tables only after
   * its DELETEs are answered). The lock delay then waits for the app's DELETEs, not for the
   * actor call timeout.
   */
  async fence(): Promise<number> {
    const all: ActiveActor[] = [];
    for (const byId of this.actors.values()) all.push(...byId.values());
    // Actors already draining (rebalanced away) may still run a turn: cut those too.
    for (const actor of this.retiring.values()) cutOff(actor);
    await Promise.all(all.map((a) => this.retire(a, 'fence')));
    return all.length;
  }

  /**
   * Resolves when every deactivation under way has ended (its DELETE answered or failed):
   * what the node waits for before it acknowledges a placement table.
   */
  async settled(): Promise<void> {
    while (this.deactivating.size > 0) await Promise.all([...this.deactivating.values()]);
  }

  /** Deactivates actors idle past their type's `actorIdleTimeout`. Called by the scan timer; public for tests. */
  scanIdle(): void {
    if (this.cfg === undefined) return;
    const now = this.now();
    for (const byId of this.actors.values()) {
      for (const actor of byId.values()) {
        if (actor.turns.busy) continue;
        if (now - actor.lastUsed >= typeConfig(this.cfg, actor.type).idleTimeoutMs) void this.retire(actor, 'idle');
      }
    }
  }

  /**
   * Takes an actor out of the table and deactivates it. Resolves at handoff: when no call of
   * this activation can reach the app any more, except one still running past a rebalance's
   * drain timeout. The DELETE itself waits for that call too (a DELETE overtaking the call
   * that activates the actor would crash the JS SDK); later activations wait for the DELETE.
   */
  private retire(actor: ActiveActor, reason: RetireReason): Promise<void> {
    const k = key(actor.type, actor.id);
    const byId = this.actors.get(actor.type);
    if (byId?.get(actor.id) !== actor) return this.deactivating.get(k) ?? Promise.resolve();
    byId.delete(actor.id);
    if (byId.size === 0) this.actors.delete(actor.type);
    actor.timers.clear();
    if (reason === 'rebalance') this.rebalanced++;
    this.retiring.set(k, actor);
    if (reason === 'fence') cutOff(actor);
    const drained = (actor.barrier ?? Promise.resolve()).then(() => actor.turns.drain());
    const deleted = drained.then(() => this.sendDelete(actor, reason)).finally(() => {
      if (this.deactivating.get(k) === deleted) this.deactivating.delete(k);
      if (this.retiring.get(k) === actor) this.retiring.delete(k);
    });
    this.deactivating.set(k, deleted);
    if (reason !== 'rebalance') return deleted;
    const cfg = typeConfig(this.cfg ?? NO_ACTORS, actor.type);
    const bounded = cfg.drainRebalancedActors ? within(drained, cfg.drainOngoingCallTimeoutMs) : Promise.resolve();
    return bounded.then(() => {
      actor.turns.abortQueued(new ActorError('WEFT_ACTOR_MOVED', `actor ${actor.type}/${actor.id} moved to another node`));
    });
  }

  private async sendDelete(actor: ActiveActor, reason: RetireReason): Promise<void> {
    if (!actor.activated) return;
    try {
      const res = await this.app.call({ verb: 'DELETE', path: actorPath(actor.type, actor.id), headers: [], body: null, signal: AbortSignal.timeout(this.callTimeoutMs) });
      this.deactivations++;
      if (res.status < 200 || res.status >= 300) this.log('warn', 'app refused to deactivate an actor', { type: actor.type, id: actor.id, status: res.status, reason });
    } catch (err) {
      this.log('warn', 'could not deactivate an actor', { type: actor.type, id: actor.id, reason, err: (err as Error).message });
    }
  }

  /**
   * Creates (or replaces) a timer of an active actor: the app calls this from inside one of
   * the actor's turns, so it takes no turn itself.
   */
  createTimer(type: string, id: string, name: string, spec: TimerRequest): ActorResult<void> {
    const refused = this.refuse(type, id);
    if (refused !== undefined) return { ok: false, error: refused };
    const actor = this.actors.get(type)?.get(id);
    if (actor === undefined) return { ok: false, error: new ActorError('WEFT_ACTOR_TIMER_CREATE', `timer ${name}: actor ${type}/${id} is not active`) };
    return actor.timers.create(name, spec);
  }

  /** Deletes a timer; false when there was none (Dapr answers success either way). */
  deleteTimer(type: string, id: string, name: string): boolean {
    return this.actors.get(type)?.get(id)?.timers.delete(name) === true;
  }

  stats(): ActorHostStats {
    const active: Record<string, number> = {};
    for (const [type, byId] of this.actors) active[type] = byId.size;
    return { active, pendingCalls: this.pending, deactivations: this.deactivations, rebalanced: this.rebalanced, timers: this.timerCount, timerFires: this.timerFires };
  }

  /** Stops reading the config and scanning, and deactivates every actor after its accepted calls. */
  async close(): Promise<void> {
    this.closed = true;
    this.wakeRetry?.();
    if (this.scan !== undefined) clearInterval(this.scan);
    const all: ActiveActor[] = [];
    for (const byId of this.actors.values()) all.push(...byId.values());
    await Promise.all(all.map((a) => this.retire(a, 'shutdown')));
    await Promise.all(this.deactivating.values());
  }
}

function key(type: string, id: string): string {
  return `${type}\u0000${id}`;
}

export function actorPath(type: string, id: string): string {
  return `/actors/${encodeURIComponent(type)}/${encodeURIComponent(id)}`;
}

/** The caller's headers, plus `content-type: application/json` unless it sent one, plus the reentrancy id. */
function appHeaders(headers: readonly string[], reentrancyId: string | undefined): string[] {
  const out: string[] = [];
  let hasType = false;
  for (let i = 0; i + 1 < headers.length; i += 2) {
    const name = headers[i] as string;
    if (name === REENTRANCY_HEADER) continue;
    if (name === 'content-type') hasType = true;
    out.push(name, headers[i + 1] as string);
  }
  if (!hasType) out.push('content-type', JSON_TYPE);
  if (reentrancyId !== undefined) out.push(REENTRANCY_HEADER, reentrancyId);
  return out;
}

function asHostError(err: unknown): HostError {
  if (err instanceof ActorError) return err;
  if (err instanceof WeftError) return err;
  return new ActorError('WEFT_ACTOR_INVOKE_METHOD', err instanceof Error ? err.message : String(err), { cause: err });
}

/** App-channel failures that prove the request never went out to the app (nothing to deactivate). */
const NEVER_SENT = new Set(['WEFT_APP_REFUSED', 'WEFT_APP_UNHEALTHY', 'WEFT_APP_UNAVAILABLE', 'WEFT_BAD_REQUEST']);

function neverSent(err: unknown): boolean {
  return err instanceof WeftError && NEVER_SENT.has(err.code);
}

/** Fencing: fails the queued calls of an activation as moved and aborts its running app call. */
function cutOff(actor: ActiveActor): void {
  actor.turns.abortQueued(new ActorError('WEFT_ACTOR_MOVED', `actor ${actor.type}/${actor.id}: its node fenced itself`));
  actor.cut.abort(new ActorError('WEFT_ACTOR_TIMEOUT', `actor ${actor.type}/${actor.id}: the call was cut off, its node fenced itself (membership source unreachable)`));
}

/** Resolves when `p` does or after `ms`, whichever comes first. */
function within(p: Promise<void>, ms: number): Promise<void> {
  return new Promise((resolve) => {
    const t = setTimeout(resolve, ms);
    t.unref();
    void p.then(() => {
      clearTimeout(t);
      resolve();
    });
  });
}
