/**
 * The timers of one activation: in memory, dying with it (Dapr's timers are not durable).
 *
 * Contract:
 * - `create` validates everything before anything is sent to the app: a timer without a
 *   callback, or with a schedule Dapr would refuse, is WEFT_ACTOR_TIMER_CREATE. A timer of
 *   the same name is replaced.
 * - Each fire goes through `hooks.fire` (the host runs it in the actor's turn) with the body
 *   `{"callback", "data", "dueTime", "period"}`, `data` being the JSON value registered.
 * - Fires never overlap: the next one is armed when the last has answered, one period after
 *   the last scheduled time (or at once when that has passed).
 * - A timer stops after its repetitions, after its one fire without a period, at its ttl,
 *   and when the app refuses a fire (non-2xx: the JS SDK answers 500 for an unknown
 *   callback). A transport failure or a timeout is logged and the timer goes on.
 * - `clear()` stops them all (deactivation).
 */
import { ActorError } from './errors.ts';
import { parseSchedule } from './schedule.ts';
import type { Schedule } from './schedule.ts';
import type { ActorResult, AppCallResponse, HostError, LogFn, TimerRequest } from './types.ts';

export interface TimerHooks {
  readonly now: () => number;
  readonly log: LogFn;
  /** Runs one fire in the actor's turn and resolves with the app's answer. */
  readonly fire: (name: string, body: Uint8Array) => Promise<AppCallResponse>;
  /** Called with +1 / -1 as timers start and stop, and on each fire (for the host's counts). */
  readonly counted: (event: 'started' | 'stopped' | 'fired') => void;
  /** Fields for log lines (actor type and id). */
  readonly fields: Readonly<Record<string, unknown>>;
}

interface ActorTimer {
  readonly name: string;
  readonly body: Uint8Array;
  readonly schedule: Schedule;
  fires: number;
  handle: NodeJS.Timeout | undefined;
  stopped: boolean;
}

const encoder = new TextEncoder();

export class ActorTimers {
  private readonly hooks: TimerHooks;
  private readonly timers = new Map<string, ActorTimer>();

  constructor(hooks: TimerHooks) {
    this.hooks = hooks;
  }

  get size(): number {
    return this.timers.size;
  }

  create(name: string, spec: TimerRequest): ActorResult<void> {
    const fail = (why: string): ActorResult<void> => ({ ok: false, error: new ActorError('WEFT_ACTOR_TIMER_CREATE', `timer ${name}: ${why}`) });
    if (name === '') return fail('the timer has no name');
    // The JS SDK crashes on a timer whose callback it does not know; an empty one surely is.
    if (typeof spec.callback !== 'string' || spec.callback === '') return fail('callback must name an actor method');
    const parsed = parseSchedule(spec, this.hooks.now());
    if (!parsed.ok) return fail(parsed.problem);
    this.delete(name);
    const body = encoder.encode(JSON.stringify({ callback: spec.callback, data: spec.data, dueTime: spec.dueTime, period: spec.period }));
    const timer: ActorTimer = { name, body, schedule: parsed.schedule, fires: 0, handle: undefined, stopped: false };
    this.timers.set(name, timer);
    this.hooks.counted('started');
    this.arm(timer, parsed.schedule.firstAt);
    return { ok: true, value: undefined };
  }

  /** False when there was no such timer. */
  delete(name: string): boolean {
    const timer = this.timers.get(name);
    if (timer === undefined) return false;
    this.stop(timer);
    return true;
  }

  clear(): void {
    for (const timer of [...this.timers.values()]) this.stop(timer);
  }

  private stop(timer: ActorTimer): void {
    if (timer.stopped) return;
    timer.stopped = true;
    if (timer.handle !== undefined) clearTimeout(timer.handle);
    timer.handle = undefined;
    if (this.timers.get(timer.name) === timer) this.timers.delete(timer.name);
    this.hooks.counted('stopped');
  }

  private arm(timer: ActorTimer, at: number): void {
    const { expiresAt } = timer.schedule;
    if (expiresAt !== undefined && at >= expiresAt) return this.stop(timer);
    timer.handle = setTimeout(() => this.fire(timer, at), Math.max(0, at - this.hooks.now()));
    timer.handle.unref();
  }

  private fire(timer: ActorTimer, scheduledAt: number): void {
    timer.handle = undefined;
    if (timer.stopped) return;
    this.hooks.counted('fired');
    this.hooks.fire(timer.name, timer.body).then(
      (res) => {
        if (res.status < 200 || res.status >= 300) {
          this.hooks.log('warn', 'the app refused an actor timer; timer stopped', { ...this.hooks.fields, timer: timer.name, status: res.status });
          return this.stop(timer);
        }
        this.next(timer, scheduledAt);
      },
      (err: unknown) => {
        const e = err as HostError;
        if (e.code === 'WEFT_ACTOR_MOVED') return this.stop(timer);
        this.hooks.log('warn', 'an actor timer failed', { ...this.hooks.fields, timer: timer.name, code: e.code, err: e.message });
        this.next(timer, scheduledAt);
      },
    );
  }

  private next(timer: ActorTimer, scheduledAt: number): void {
    if (timer.stopped) return;
    timer.fires++;
    const { periodMs, repetitions } = timer.schedule;
    if (periodMs === undefined || (repetitions !== undefined && timer.fires >= repetitions)) return this.stop(timer);
    this.arm(timer, Math.max(this.hooks.now(), scheduledAt + periodMs));
  }
}
