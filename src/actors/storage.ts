/**
 * Actor state on the node: Dapr's state API (`GET …/state/{key}`, the transaction of
 * `upsert`/`delete`) over the node's `StateStore`, and the owner claims that fence it.
 *
 * - State belongs to (namespace, the hosting app's id, actor type, actor id).
 * - The app calls these from inside the actor's turn, on the node that runs the actor; an
 *   actor not active here is WEFT_ACTOR_INSTANCE_MISSING (400), as in Dapr.
 * - A malformed transaction is WEFT_BAD_REQUEST (400) and nothing of it is applied.
 * - A transaction carries the activation's owner generation; the store refuses it when another
 *   node claimed the actor since (WEFT_ACTOR_STATE_FENCED, 409). Store errors and a store that
 *   does not answer before the deadline are WEFT_ACTOR_STATE_GET / _TRANSACTION_SAVE (500),
 *   naming the actor and the store's reason. A write is acknowledged only after the commit.
 */
import { WeftError } from '../errors.ts';
import { ActorError } from './errors.ts';
import type { ActorHost } from './host.ts';
import type { ActorResult } from './types.ts';
import { StoreError, type ActorRef, type StateOperation, type StateStore } from '../state/store.ts';

/** One operation as the edges parse it from Dapr's HTTP JSON or gRPC messages. */
export interface RawOperation {
  readonly operation: unknown;
  readonly key: unknown;
  /** The value's bytes (HTTP: the JSON text of `request.value`; gRPC: the Any's bytes). */
  readonly value: Uint8Array | undefined;
  readonly metadata: unknown;
}

export interface ActorStorageOptions {
  /** Undefined: state and reminders answer WEFT_ACTOR_NOT_SUPPORTED with `unavailable`. */
  readonly store: StateStore | undefined;
  readonly unavailable: string;
  readonly namespace: string;
  /** This node's current incarnation, recorded as the owner on each claim. */
  readonly owner: () => string;
  readonly hostFor: (type: string) => ActorHost | undefined;
  /** Budget of one store call when the caller gave no deadline (ms). */
  readonly storeTimeoutMs: number;
}

const MAX_OPERATIONS = 10_000;

export class ActorStorage {
  private readonly o: ActorStorageOptions;

  constructor(o: ActorStorageOptions) {
    this.o = o;
  }

  get store(): StateStore | undefined {
    return this.o.store;
  }

  /** For ActorHost's `claim`: records this node as the owner, or fails the activation. */
  async claim(appId: string, type: string, id: string): Promise<number> {
    const store = this.o.store;
    if (store === undefined) throw new ActorError('WEFT_ACTOR_CLAIM', this.o.unavailable);
    try {
      return await store.claim(this.ref(appId, type, id), this.o.owner(), Date.now() + this.o.storeTimeoutMs);
    } catch (err) {
      throw new ActorError('WEFT_ACTOR_CLAIM', `actor ${type}/${id}: ${(err as Error).message}`, { cause: err });
    }
  }

  ref(appId: string, type: string, id: string): ActorRef {
    return { namespace: this.o.namespace, appId, type, id };
  }

  /** The store, or why there is none. */
  storeOr(what: string): StateStore | ActorError {
    return this.o.store ?? new ActorError('WEFT_ACTOR_NOT_SUPPORTED', `actor ${what}: ${this.o.unavailable}`);
  }

  async get(type: string, id: string, key: string, deadline: number): Promise<ActorResult<Uint8Array | undefined>> {
    const store = this.storeOr('state');
    if (store instanceof ActorError) return { ok: false, error: store };
    const host = this.o.hostFor(type);
    if (host === undefined || !host.isActive(type, id) && host.generationOf(type, id) === undefined) return { ok: false, error: notHere(type, id) };
    try {
      return { ok: true, value: await store.get(this.ref(host.appId, type, id), key, deadline) };
    } catch (err) {
      return { ok: false, error: new ActorError('WEFT_ACTOR_STATE_GET', `actor ${type}/${id}: state ${key} could not be read: ${(err as Error).message}`, { cause: err }) };
    }
  }

  async transact(type: string, id: string, raw: readonly RawOperation[], deadline: number): Promise<ActorResult<void>> {
    const store = this.storeOr('state');
    if (store instanceof ActorError) return { ok: false, error: store };
    const ops = parseOperations(type, id, raw);
    if (ops instanceof WeftError) return { ok: false, error: ops };
    const host = this.o.hostFor(type);
    const generation = host?.generationOf(type, id);
    if (host === undefined || generation === undefined) return { ok: false, error: notHere(type, id) };
    if (ops.length === 0) return { ok: true, value: undefined };
    try {
      await store.transact(this.ref(host.appId, type, id), generation, ops, deadline);
      return { ok: true, value: undefined };
    } catch (err) {
      if (err instanceof StoreError && err.kind === 'fenced') return { ok: false, error: new ActorError('WEFT_ACTOR_STATE_FENCED', err.message, { cause: err }) };
      return { ok: false, error: new ActorError('WEFT_ACTOR_STATE_TRANSACTION_SAVE', `actor ${type}/${id}: the transaction was not saved: ${(err as Error).message}`, { cause: err }) };
    }
  }

  close(): Promise<void> {
    return this.o.store?.close() ?? Promise.resolve();
  }
}

function notHere(type: string, id: string): ActorError {
  return new ActorError('WEFT_ACTOR_INSTANCE_MISSING', `actor ${type}/${id} is not active on this node: actor state is read and written by the actor's own turns, on the node that runs it`);
}

/** Dapr's operations: `upsert` (key, value, `metadata.ttlInSeconds`) and `delete` (key). */
export function parseOperations(type: string, id: string, raw: readonly RawOperation[]): StateOperation[] | WeftError {
  const bad = (why: string): WeftError => new WeftError('WEFT_BAD_REQUEST', `actor ${type}/${id} state transaction: ${why}`);
  if (raw.length > MAX_OPERATIONS) return bad(`a transaction has at most ${MAX_OPERATIONS} operations (got ${raw.length})`);
  const ops: StateOperation[] = [];
  for (const [i, r] of raw.entries()) {
    const op = typeof r.operation === 'string' ? r.operation.toLowerCase() : r.operation;
    if (typeof r.key !== 'string' || r.key === '') return bad(`operation ${i}: key must be a non-empty string`);
    if (op === 'delete') {
      ops.push({ op: 'delete', key: r.key });
      continue;
    }
    if (op !== 'upsert') return bad(`operation ${i}: operation must be "upsert" or "delete" (got ${JSON.stringify(r.operation)})`);
    let ttlSeconds: number | undefined;
    const meta = r.metadata;
    if (meta !== undefined && meta !== null) {
      if (typeof meta !== 'object' || Array.isArray(meta)) return bad(`operation ${i}: metadata must be a mapping`);
      const ttl = (meta as Record<string, unknown>)['ttlInSeconds'];
      if (ttl !== undefined && ttl !== null && ttl !== '') {
        const n = typeof ttl === 'number' ? ttl : typeof ttl === 'string' && /^-?\d+$/.test(ttl.trim()) ? Number(ttl) : NaN;
        if (!Number.isInteger(n) || (n < 1 && n !== -1)) return bad(`operation ${i}: metadata.ttlInSeconds must be a whole number of seconds, or -1 for none (got ${JSON.stringify(ttl)})`);
        if (n !== -1) ttlSeconds = n;
      }
    }
    ops.push({ op: 'upsert', key: r.key, value: r.value ?? new Uint8Array(0), ttlSeconds });
  }
  return ops;
}
