/**
 * Actor reminders: persisted in the state store, fired by the actor's current owner.
 *
 * - `register` validates the schedule (the same rules as timers: Go, ISO 8601 and `R<n>/PT…`
 *   periods, RFC 3339 times, ttl counted from the first fire) and upserts the row; re-registering
 *   a name replaces it (a new revision). Any node may register or delete a reminder of any actor.
 * - Firing: one scheduler per node pages through the store's due-time index (never a timer or a
 *   closure per reminder: 100,000 reminders cost rows in the store, not memory here). For each
 *   due row of an actor this node owns *now* (the placement owner check), it fires
 *   `PUT /actors/{type}/{id}/method/remind/{name}` with `{data, dueTime, period}` in the actor's
 *   turn, at most `concurrency` at once and never the same reminder twice at once. Then, fenced
 *   by the activation's owner generation and the row's revision, it reschedules the row one
 *   period on (skipping periods missed while nobody could fire it: a reminder that fell due
 *   during downtime fires once), counts down its repetitions, or deletes it (last repetition,
 *   ttl, no period, or the app answered `X-DaprReminderCancel: true`).
 * - At least once: the row moves only after the app answered, so a fire lost with its node is
 *   repeated by the next owner. Never from two nodes at once: only the owner fires, and a former
 *   owner's follow-up is refused by the store.
 * - A fire that failed before the app answered (moved, timeout, store down) is retried after
 *   `retryMs`; an app's error answer counts as a fire (logged), as a reminder must not spin.
 * - The scheduler sleeps until the earliest due time, and looks again at least every `pollMs`
 *   (reminders registered through other nodes, ownership that moved here).
 */
import { parseSchedule } from './schedule.ts';
import { ActorError } from './errors.ts';
import type { ActorHost } from './host.ts';
import type { ActorResult, LogFn } from './types.ts';
import { StoreError, type ActorRef, type DueCursor, type ReminderNext, type ReminderRecord, type StateStore } from '../state/store.ts';

export interface ReminderRequest {
  readonly data?: unknown;
  readonly dueTime?: unknown;
  readonly period?: unknown;
  readonly ttl?: unknown;
}

/** What `GET …/reminders/{name}` answers. */
export interface ReminderView {
  readonly dueTime: string;
  readonly period: string;
  readonly ttl?: string;
  readonly data?: unknown;
}

export interface ReminderServiceOptions {
  readonly store: StateStore;
  readonly namespace: string;
  readonly hosts: ReadonlyMap<string, ActorHost>;
  /** Whether this node owns `type/id` now (placement's owner check). */
  readonly owns: (type: string, id: string) => boolean;
  readonly log: LogFn;
  readonly storeTimeoutMs: number;
  /** The app's answer to one fire, at most (ms). */
  readonly callTimeoutMs: number;
  readonly pollMs?: number;
  readonly retryMs?: number;
  readonly pageSize?: number;
  readonly concurrency?: number;
  /** At most this many rows read per look (bounds a look while many due rows belong to other nodes). */
  readonly maxScan?: number;
}

const CANCEL_HEADER = 'x-daprremindercancel';
const enc = new TextEncoder();

export class ReminderService {
  private readonly o: ReminderServiceOptions;
  private readonly pollMs: number;
  private readonly retryMs: number;
  private readonly pageSize: number;
  private readonly concurrency: number;
  private readonly maxScan: number;
  /** Reminders being fired now (key → true). Bounded by `concurrency`. */
  private readonly inflight = new Set<string>();
  /** Reminders whose last fire failed before the app answered: not before this time. Bounded by the owned reminders. */
  private readonly notBefore = new Map<string, number>();
  private timer: NodeJS.Timeout | undefined;
  private timerAt = Infinity;
  private looking = false;
  private lookAgain = false;
  private closed = false;
  private fired = 0;

  constructor(o: ReminderServiceOptions) {
    this.o = o;
    this.pollMs = o.pollMs ?? 1000;
    this.retryMs = o.retryMs ?? 1000;
    this.pageSize = o.pageSize ?? 256;
    this.concurrency = o.concurrency ?? 64;
    this.maxScan = o.maxScan ?? 20_000;
  }

  /** Fires so far (for metrics and the benchmark). */
  get fires(): number {
    return this.fired;
  }

  start(): void {
    this.arm(Date.now());
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
  }

  async register(host: ActorHost, type: string, id: string, name: string, spec: ReminderRequest, deadline: number): Promise<ActorResult<void>> {
    const fail = (why: string): ActorResult<void> => ({ ok: false, error: new ActorError('WEFT_ACTOR_REMINDER_CREATE', `actor ${type}/${id} reminder ${name}: ${why}`) });
    if (name === '') return fail('the reminder has no name');
    const now = Date.now();
    const parsed = parseSchedule(spec, now);
    if (!parsed.ok) return fail(parsed.problem);
    let data: string | undefined;
    try {
      data = spec.data === undefined ? undefined : JSON.stringify(spec.data);
    } catch {
      return fail('data is not JSON');
    }
    const s = parsed.schedule;
    try {
      await this.o.store.putReminder(this.ref(host, type, id), {
        type, id, name, data,
        dueTime: text(spec.dueTime), period: text(spec.period), ttl: text(spec.ttl),
        dueAt: s.firstAt, periodMs: s.periodMs, remaining: s.repetitions, expiresAt: s.expiresAt,
      }, deadline);
    } catch (err) {
      return fail(`not saved: ${(err as Error).message}`);
    }
    this.arm(s.firstAt);
    return { ok: true, value: undefined };
  }

  async get(host: ActorHost, type: string, id: string, name: string, deadline: number): Promise<ActorResult<ReminderView>> {
    let r: ReminderRecord | undefined;
    try {
      r = await this.o.store.getReminder(this.ref(host, type, id), name, deadline);
    } catch (err) {
      return { ok: false, error: new ActorError('WEFT_ACTOR_REMINDER_GET', `actor ${type}/${id} reminder ${name}: ${(err as Error).message}`) };
    }
    if (r === undefined) return { ok: false, error: new ActorError('WEFT_ACTOR_REMINDER_NOT_FOUND', `actor ${type}/${id} has no reminder ${name}`) };
    const view: { dueTime: string; period: string; ttl?: string; data?: unknown } = { dueTime: r.dueTime, period: r.period };
    if (r.ttl !== '') view.ttl = r.ttl;
    if (r.data !== undefined) view.data = JSON.parse(r.data) as unknown;
    return { ok: true, value: view };
  }

  async delete(host: ActorHost, type: string, id: string, name: string, deadline: number): Promise<ActorResult<void>> {
    try {
      await this.o.store.deleteReminder(this.ref(host, type, id), name, deadline);
      return { ok: true, value: undefined };
    } catch (err) {
      return { ok: false, error: new ActorError('WEFT_ACTOR_REMINDER_DELETE', `actor ${type}/${id} reminder ${name}: ${(err as Error).message}`) };
    }
  }

  private ref(host: ActorHost, type: string, id: string): ActorRef {
    return { namespace: this.o.namespace, appId: host.appId, type, id };
  }

  /** Looks for due reminders at `at` (or sooner if already armed sooner). */
  private arm(at: number): void {
    if (this.closed) return;
    const now = Date.now();
    const when = Math.max(at, now);
    if (this.timer !== undefined && this.timerAt <= when) return;
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timerAt = when;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.timerAt = Infinity;
      void this.look();
    }, when - now);
    this.timer.unref();
  }

  /** One look over every host's due reminders; coalesced (a look asked for while one runs runs after it). */
  private async look(): Promise<void> {
    if (this.closed) return;
    if (this.looking) {
      this.lookAgain = true;
      return;
    }
    this.looking = true;
    let next = Date.now() + this.pollMs;
    try {
      do {
        this.lookAgain = false;
        const now = Date.now();
        for (const [k, t] of this.notBefore) if (t <= now) this.notBefore.delete(k);
        for (const host of this.o.hosts.values()) {
          if (host.types.length === 0) continue;
          await this.lookAt(host, now);
          const due = await this.o.store.nextDue(this.o.namespace, host.appId, Date.now() + this.o.storeTimeoutMs);
          if (due !== undefined) next = Math.min(next, due);
        }
      } while (this.lookAgain && !this.closed);
      // Due rows left over (other nodes' actors, fires in flight or waiting to retry): look
      // again after a short while rather than spinning on them.
      if (next <= Date.now()) next = Date.now() + Math.min(this.pollMs, 200);
    } catch (err) {
      this.o.log('warn', 'could not read due actor reminders from the state store', { err: (err as Error).message });
      next = Date.now() + this.retryMs;
    } finally {
      this.looking = false;
    }
    this.arm(next);
  }

  private async lookAt(host: ActorHost, now: number): Promise<void> {
    const types = host.types;
    let cursor: DueCursor | undefined;
    for (let scanned = 0; scanned < this.maxScan;) {
      if (this.inflight.size >= this.concurrency) return;
      const page = await this.o.store.due(this.o.namespace, host.appId, now, cursor, this.pageSize, Date.now() + this.o.storeTimeoutMs);
      scanned += page.length;
      for (const r of page) {
        if (this.inflight.size >= this.concurrency) return;
        const k = reminderKey(host.appId, r);
        if (this.inflight.has(k) || this.notBefore.has(k)) continue;
        if (!types.includes(r.type) || !this.o.owns(r.type, r.id)) continue;
        this.inflight.add(k);
        void this.fire(host, r, k).catch((err: unknown) => {
          this.o.log('error', 'an actor reminder fire failed', { type: r.type, id: r.id, reminder: r.name, err: (err as Error).message });
          this.retryLater(k);
        }).finally(() => {
          this.inflight.delete(k);
          this.arm(Date.now());
        });
      }
      const last = page.at(-1);
      if (page.length < this.pageSize || last === undefined) return;
      cursor = { dueAt: last.dueAt, type: last.type, id: last.id, name: last.name };
    }
  }

  private async fire(host: ActorHost, r: ReminderRecord, k: string): Promise<void> {
    const ref = this.ref(host, r.type, r.id);
    const deadline = (): number => Date.now() + this.o.storeTimeoutMs;
    const now = Date.now();
    if (r.expiresAt !== undefined && r.expiresAt <= now) {
      // Expired while nobody could fire it: never fires again.
      await this.o.store.deleteReminder(ref, r.name, deadline()).catch(() => this.retryLater(k));
      return;
    }
    const body = `{"data":${r.data ?? 'null'},"dueTime":${JSON.stringify(r.dueTime)},"period":${JSON.stringify(r.period)}}`;
    const result = await host.remind(r.type, r.id, r.name, enc.encode(body), AbortSignal.timeout(this.o.callTimeoutMs));
    if (!result.ok) {
      if (result.error.code !== 'WEFT_ACTOR_MOVED') this.o.log('warn', 'an actor reminder did not fire; retrying', { type: r.type, id: r.id, reminder: r.name, code: result.error.code, err: result.error.message });
      this.retryLater(k);
      return;
    }
    this.fired++;
    const { res, generation } = result.value;
    if (res.status < 200 || res.status >= 300) this.o.log('warn', 'the app answered an actor reminder with an error', { type: r.type, id: r.id, reminder: r.name, status: res.status });
    const cancel = header(res.headers, CANCEL_HEADER)?.toLowerCase() === 'true';
    const next = cancel ? undefined : nextFire(r, Date.now());
    if (generation === undefined) return this.retryLater(k);
    try {
      await this.o.store.finishFire(ref, generation, r.name, r.rev, next, deadline());
    } catch (err) {
      const fenced = err instanceof StoreError && err.kind === 'fenced';
      this.o.log(fenced ? 'info' : 'warn', fenced ? 'a former owner\'s reminder follow-up was refused by the store' : 'could not record an actor reminder\'s fire; it will fire again', { type: r.type, id: r.id, reminder: r.name, err: (err as Error).message });
      this.retryLater(k);
    }
  }

  private retryLater(k: string): void {
    this.notBefore.set(k, Date.now() + this.retryMs);
  }
}

/** After a fire at (or after) `r.dueAt`: the next due time, or undefined when it is done. */
export function nextFire(r: ReminderRecord, now: number): ReminderNext {
  if (r.periodMs === undefined) return undefined;
  const remaining = r.remaining === undefined ? undefined : r.remaining - 1;
  if (remaining !== undefined && remaining <= 0) return undefined;
  let dueAt = r.dueAt + r.periodMs;
  // Periods missed while nobody could fire it are skipped: one fire, not one per period.
  if (dueAt <= now) dueAt = r.dueAt + (Math.floor((now - r.dueAt) / r.periodMs) + 1) * r.periodMs;
  if (r.expiresAt !== undefined && dueAt >= r.expiresAt) return undefined;
  return { dueAt, remaining };
}

function reminderKey(appId: string, r: ReminderRecord): string {
  return `${appId}\u0000${r.type}\u0000${r.id}\u0000${r.name}`;
}

function text(v: unknown): string {
  return typeof v === 'string' ? v : v === undefined || v === null ? '' : String(v);
}

function header(headers: readonly string[], name: string): string | undefined {
  for (let i = 0; i + 1 < headers.length; i += 2) if (headers[i] === name) return headers[i + 1];
  return undefined;
}
