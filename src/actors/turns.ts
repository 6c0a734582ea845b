/**
 * Turn-based concurrency for one actor: one call at a time, in arrival order.
 *
 * Contract:
 * - `run(fn)` runs `fn` when every call accepted before it has finished (FIFO). Its promise
 *   settles with `fn`'s result, or rejects with an ActorError.
 * - Reentrancy (only when enabled): a call carrying the running turn's reentrancy id runs at
 *   once, inside that turn, instead of queueing behind it (A → B → A would otherwise
 *   deadlock). Each such nested call counts one stack level; past `maxStackDepth` it fails
 *   with WEFT_ACTOR_STACK_DEPTH. A call with another id, or none, queues.
 * - Timeouts: a turn that runs longer than `turnTimeoutMs` is released: its caller gets
 *   WEFT_ACTOR_TIMEOUT and the next call starts (the stuck `fn` keeps running; its result is
 *   dropped). A call that waits in the queue longer than `waitTimeoutMs` fails with
 *   WEFT_ACTOR_TIMEOUT without running. An aborted `signal` removes a waiting call.
 * - `drain()` makes new calls fail with WEFT_ACTOR_MOVED (they never reached the app: the
 *   caller may retry on the new owner) and resolves once the running and queued calls are
 *   done. Reentrant calls of the running turn are still let in: the turn may need them to
 *   finish. `abortQueued(err)` fails the calls still waiting (end of a bounded drain).
 *
 * Cost: O(1) per call (a doubly linked queue); one timer per busy actor, never one per
 * queued call: it is armed for the earliest of the running turn's deadline and the queue
 * head's wait deadline (FIFO: the head always waits longest), and re-armed when it fires.
 */
import { ActorError } from './errors.ts';

export interface TurnOptions {
  /** Reentrancy by `Dapr-Reentrancy-Id` (the app's `reentrancy.enabled`). */
  readonly reentrancy: boolean;
  /** Nested reentrant calls allowed in one turn, the first call included (Dapr: 32). */
  readonly maxStackDepth: number;
  /** A turn running longer is released. */
  readonly turnTimeoutMs: number;
  /** A call waiting longer for its turn fails without running (default: turnTimeoutMs). */
  readonly waitTimeoutMs?: number;
  /** Clock, ms (tests inject one; default Date.now). */
  readonly now?: () => number;
}

export interface RunOptions {
  readonly reentrancyId?: string | undefined;
  readonly signal?: AbortSignal | undefined;
}

export const DEFAULT_MAX_STACK_DEPTH = 32;

interface Waiter {
  readonly fn: () => Promise<unknown>;
  readonly resolve: (value: unknown) => void;
  readonly reject: (reason: unknown) => void;
  readonly reentrancyId: string | undefined;
  readonly enqueuedAt: number;
  readonly signal: AbortSignal | undefined;
  onAbort: (() => void) | undefined;
  prev: Waiter | undefined;
  next: Waiter | undefined;
}

interface Turn {
  readonly reentrancyId: string | undefined;
  readonly deadline: number;
  readonly waiter: Waiter;
  depth: number;
  /** Settled: released by its own end or by its timeout. */
  done: boolean;
}

export class TurnLock {
  private readonly options: TurnOptions;
  private readonly now: () => number;
  private readonly waitTimeoutMs: number;
  private head: Waiter | undefined;
  private tail: Waiter | undefined;
  private queued = 0;
  private running: Turn | undefined;
  private timer: NodeJS.Timeout | undefined;
  private timerAt = Infinity;
  private draining = false;
  private drainWaiters: Array<() => void> = [];

  constructor(options: TurnOptions) {
    this.options = options;
    this.now = options.now ?? Date.now;
    this.waitTimeoutMs = options.waitTimeoutMs ?? options.turnTimeoutMs;
  }

  /** A call is running or waiting. */
  get busy(): boolean {
    return this.running !== undefined || this.queued > 0;
  }

  /** Calls waiting for their turn (the running one not counted). */
  get waiting(): number {
    return this.queued;
  }

  /** The reentrancy id of the running turn, if any. */
  get runningReentrancyId(): string | undefined {
    return this.running?.reentrancyId;
  }

  get isDraining(): boolean {
    return this.draining;
  }

  run<T>(fn: () => Promise<T>, opts: RunOptions = {}): Promise<T> {
    const { reentrancyId, signal } = opts;
    if (signal?.aborted === true) return Promise.reject(abortError(signal));
    const turn = this.running;
    if (turn !== undefined && this.options.reentrancy && reentrancyId !== undefined && turn.reentrancyId === reentrancyId) {
      return this.reenter(turn, fn);
    }
    if (this.draining) return Promise.reject(new ActorError('WEFT_ACTOR_MOVED', 'the actor is being deactivated on this node'));
    return new Promise<T>((resolve, reject) => {
      const waiter: Waiter = {
        fn, resolve: resolve as (value: unknown) => void, reject, reentrancyId, enqueuedAt: this.now(), signal,
        onAbort: undefined, prev: undefined, next: undefined,
      };
      if (this.running === undefined && this.queued === 0) {
        this.start(waiter);
        return;
      }
      this.enqueue(waiter);
      if (signal !== undefined) {
        waiter.onAbort = () => {
          this.unlink(waiter);
          reject(abortError(signal));
        };
        signal.addEventListener('abort', waiter.onAbort, { once: true });
      }
      this.arm(waiter.enqueuedAt + this.waitTimeoutMs);
    });
  }

  /** Resolves when no call runs or waits; from now on new calls fail with WEFT_ACTOR_MOVED. */
  drain(): Promise<void> {
    this.draining = true;
    if (!this.busy) return Promise.resolve();
    return new Promise((resolve) => this.drainWaiters.push(resolve));
  }

  /** Fails every call still waiting with `error` (the running turn is left to finish). */
  abortQueued(error: ActorError): void {
    for (let w = this.head; w !== undefined; w = this.head) {
      this.unlink(w);
      w.reject(error);
    }
    this.settleDrain();
  }

  private async reenter<T>(turn: Turn, fn: () => Promise<T>): Promise<T> {
    if (turn.depth >= this.options.maxStackDepth) {
      throw new ActorError('WEFT_ACTOR_STACK_DEPTH', `maximum reentrant stack depth ${this.options.maxStackDepth} exceeded`);
    }
    turn.depth++;
    try {
      return await fn();
    } finally {
      turn.depth--;
    }
  }

  private start(waiter: Waiter): void {
    const turn: Turn = { reentrancyId: waiter.reentrancyId, deadline: this.now() + this.options.turnTimeoutMs, waiter, depth: 1, done: false };
    this.running = turn;
    this.arm(turn.deadline);
    let result: Promise<unknown>;
    try {
      result = waiter.fn();
    } catch (err) {
      result = Promise.reject(err);
    }
    result.then(
      (value) => this.finish(turn, () => waiter.resolve(value)),
      (err: unknown) => this.finish(turn, () => waiter.reject(err)),
    );
  }

  private finish(turn: Turn, settle: () => void): void {
    if (turn.done) return; // released by its timeout already; the late result is dropped
    turn.done = true;
    settle();
    this.release(turn);
  }

  private release(turn: Turn): void {
    if (this.running !== turn) return;
    this.running = undefined;
    this.startNext();
  }

  private startNext(): void {
    const now = this.now();
    for (let w = this.head; w !== undefined; w = this.head) {
      this.unlink(w);
      if (now - w.enqueuedAt >= this.waitTimeoutMs) {
        w.reject(waitTimeout(this.waitTimeoutMs));
        continue;
      }
      this.start(w);
      return;
    }
    this.disarm();
    this.settleDrain();
  }

  private settleDrain(): void {
    if (this.busy || this.drainWaiters.length === 0) return;
    for (const resolve of this.drainWaiters.splice(0)) resolve();
  }

  private enqueue(w: Waiter): void {
    w.prev = this.tail;
    if (this.tail === undefined) this.head = w;
    else this.tail.next = w;
    this.tail = w;
    this.queued++;
  }

  private unlink(w: Waiter): void {
    if (w.prev === undefined) {
      if (this.head !== w) return; // not queued (already started or removed)
      this.head = w.next;
    } else w.prev.next = w.next;
    if (w.next === undefined) this.tail = w.prev;
    else w.next.prev = w.prev;
    w.prev = w.next = undefined;
    this.queued--;
    if (w.onAbort !== undefined) {
      w.signal?.removeEventListener('abort', w.onAbort);
      w.onAbort = undefined;
    }
  }

  /** Makes sure the one timer fires no later than `at`. */
  private arm(at: number): void {
    if (this.timer !== undefined && this.timerAt <= at) return;
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timerAt = at;
    this.timer = setTimeout(() => this.onTimer(), Math.max(0, at - this.now()));
    this.timer.unref();
  }

  private disarm(): void {
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
    this.timerAt = Infinity;
  }

  private onTimer(): void {
    this.timer = undefined;
    this.timerAt = Infinity;
    const now = this.now();
    // Waiting calls past their wait deadline fail; FIFO means they are at the head.
    for (let w = this.head; w !== undefined && now - w.enqueuedAt >= this.waitTimeoutMs; w = this.head) {
      this.unlink(w);
      w.reject(waitTimeout(this.waitTimeoutMs));
    }
    const turn = this.running;
    if (turn !== undefined && now >= turn.deadline) {
      turn.done = true;
      turn.waiter.reject(new ActorError('WEFT_ACTOR_TIMEOUT', `the actor call ran longer than ${this.options.turnTimeoutMs} ms; its turn was released`));
      this.release(turn);
    }
    const next = this.nextDeadline();
    if (next !== Infinity) this.arm(next);
    this.settleDrain();
  }

  private nextDeadline(): number {
    let at = this.running?.deadline ?? Infinity;
    if (this.head !== undefined) at = Math.min(at, this.head.enqueuedAt + this.waitTimeoutMs);
    return at;
  }
}

function waitTimeout(ms: number): ActorError {
  return new ActorError('WEFT_ACTOR_TIMEOUT', `the actor call waited longer than ${ms} ms for its turn`);
}

function abortError(signal: AbortSignal): unknown {
  return signal.reason ?? new ActorError('WEFT_ACTOR_TIMEOUT', 'the actor call was aborted');
}
