/**
 * The actor state store: what the node needs from a real store (embedded SQLite, PostgreSQL)
 * for actor state and reminders. docs/state.md has the tables and the rules.
 *
 * Contract, for every implementation:
 * - State belongs to an `ActorRef` (namespace, app id, actor type, actor id); values are opaque
 *   bytes (the JSON the app sent). A missing or expired key reads as undefined.
 * - **Fencing lives in the store.** `claim` makes the caller the actor's owner: it bumps the
 *   actor's generation in the store and returns it. Every write (`transact`, `finishFire`)
 *   carries the generation it was claimed under and, in the same store transaction, checks it is
 *   still the recorded one; an older one is refused with a `StoreError` of kind `fenced` and
 *   nothing of the write is applied. A node claims an actor before its app sees the activation,
 *   so once a new owner has claimed, the old owner's writes cannot land, even from a process
 *   that was frozen past its lease.
 * - `transact` is all-or-nothing; it resolves only once the store committed (an acknowledged
 *   write is durable to the store's own standard).
 * - Every call ends by its `deadline` (ms since the epoch): a store that is down or hung is a
 *   `StoreError` of kind `unavailable`, never a hang.
 * - Reminders are rows with a due time; `due` pages through the ones due by an instant in
 *   due-time order (the store's index), so no reminder costs the node a timer.
 */

export interface ActorRef {
  readonly namespace: string;
  readonly appId: string;
  readonly type: string;
  readonly id: string;
}

export type StateOperation =
  | { readonly op: 'upsert'; readonly key: string; readonly value: Uint8Array; readonly ttlSeconds?: number | undefined }
  | { readonly op: 'delete'; readonly key: string };

export interface ReminderRecord {
  readonly type: string;
  readonly id: string;
  readonly name: string;
  /** The registered `data` as JSON text (undefined: none). */
  readonly data: string | undefined;
  /** As registered, sent back to the app on each fire. */
  readonly dueTime: string;
  readonly period: string;
  readonly ttl: string;
  /** Next fire, ms since the epoch. */
  readonly dueAt: number;
  readonly periodMs: number | undefined;
  /** Fires left; undefined: no limit. */
  readonly remaining: number | undefined;
  readonly expiresAt: number | undefined;
  /** Bumped by every registration: a fire's follow-up applies only to the revision it fired. */
  readonly rev: number;
}

export type ReminderInput = Omit<ReminderRecord, 'rev'>;

/** After a fire: the next due time and fires left, or undefined to delete the reminder. */
export type ReminderNext = { readonly dueAt: number; readonly remaining: number | undefined } | undefined;

/** Where a `due` page starts (exclusive): the last row of the previous page. */
export interface DueCursor {
  readonly dueAt: number;
  readonly type: string;
  readonly id: string;
  readonly name: string;
}

export type StoreErrorKind = 'fenced' | 'unavailable' | 'failed';

export class StoreError extends Error {
  readonly kind: StoreErrorKind;

  constructor(kind: StoreErrorKind, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'StoreError';
    this.kind = kind;
  }
}

export interface StateStore {
  /** `state.sqlite` or `state.postgresql`. */
  readonly kind: string;
  /** True when only nodes on this host can reach it (refused for resolvers that span hosts). */
  readonly hostLocal: boolean;
  /** Where it is, for logs and metadata (never a password). */
  readonly describe: string;

  /** Creates the tables when missing. */
  open(deadline: number): Promise<void>;
  /** Makes `owner` the actor's owner; resolves with the new generation. */
  claim(actor: ActorRef, owner: string, deadline: number): Promise<number>;
  get(actor: ActorRef, key: string, deadline: number): Promise<Uint8Array | undefined>;
  /** All-or-nothing, refused (`fenced`) unless `generation` is the actor's current one. */
  transact(actor: ActorRef, generation: number, ops: readonly StateOperation[], deadline: number): Promise<void>;

  putReminder(actor: ActorRef, reminder: ReminderInput, deadline: number): Promise<void>;
  getReminder(actor: ActorRef, name: string, deadline: number): Promise<ReminderRecord | undefined>;
  /** False when there was none. */
  deleteReminder(actor: ActorRef, name: string, deadline: number): Promise<boolean>;
  /** The app's reminders due at or before `before`, in due order after `after`, at most `limit`. */
  due(namespace: string, appId: string, before: number, after: DueCursor | undefined, limit: number, deadline: number): Promise<ReminderRecord[]>;
  /** The earliest due time among the app's reminders, or undefined when there are none. */
  nextDue(namespace: string, appId: string, deadline: number): Promise<number | undefined>;
  /**
   * After a fire of revision `rev`: reschedules (`next`) or deletes it, fenced by `generation`.
   * 'changed': the reminder was re-registered or deleted meanwhile (left as it is).
   */
  finishFire(actor: ActorRef, generation: number, name: string, rev: number, next: ReminderNext, deadline: number): Promise<'done' | 'changed'>;

  close(): Promise<void>;
}

/** Ms left before `deadline`, at least 1: the budget of one store call. */
export function msLeft(deadline: number): number {
  return Math.max(1, deadline - Date.now());
}
