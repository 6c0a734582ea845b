/**
 * `state.sqlite`: the embedded store, one SQLite file (WAL) shared by every node on the host,
 * by default beside the local registry. node:sqlite is synchronous, so each call runs whole in
 * one turn of the event loop; a transaction holds SQLite's write lock (`BEGIN IMMEDIATE`) only
 * for its own statements. Another process holding the lock makes a call wait a short busy
 * timeout, then retry asynchronously (the event loop keeps running) until its deadline.
 *
 * Durability: WAL with `synchronous = NORMAL`: a commit survives the process dying (SIGKILL);
 * a power loss may lose the last commits. Host-local: nodes on other hosts cannot reach it.
 */
import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import { DatabaseSync, type StatementSync } from 'node:sqlite';
import { reminderFromRow, schema, statements, tables, type Statements } from './sql.ts';
import { StoreError, type ActorRef, type DueCursor, type ReminderInput, type ReminderNext, type ReminderRecord, type StateOperation, type StateStore } from './store.ts';

export interface SqliteStoreOptions {
  readonly path: string;
  readonly table: string;
  /** Busy timeout of one attempt, ms (default 50); attempts repeat until the call's deadline. */
  readonly busyMs?: number;
}

type Prepared = { [K in keyof Statements]: StatementSync };

export class SqliteStateStore implements StateStore {
  readonly kind = 'state.sqlite';
  readonly hostLocal = true;
  readonly describe: string;
  private readonly o: SqliteStoreOptions;
  private db: DatabaseSync | undefined;
  private st: Prepared | undefined;
  private purgeTimer: NodeJS.Timeout | undefined;

  constructor(o: SqliteStoreOptions) {
    this.o = o;
    this.describe = `sqlite ${o.path} (table ${o.table})`;
  }

  async open(deadline: number): Promise<void> {
    mkdirSync(dirname(this.o.path), { recursive: true });
    const db = new DatabaseSync(this.o.path, { timeout: this.o.busyMs ?? 50 });
    this.db = db;
    const t = tables(this.o.table);
    await this.attempt(deadline, () => {
      db.exec('PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;');
      for (const sql of schema(t, 'BLOB', 'INTEGER')) db.exec(sql);
    });
    const sql = statements(t);
    const st = {} as Record<string, StatementSync>;
    for (const [name, text] of Object.entries(sql)) st[name] = db.prepare(text.replace(/\$(\d+)/g, '?$1'));
    this.st = st as Prepared;
    this.purgeTimer = setInterval(() => {
      try {
        this.st?.purge.run(Date.now());
      } catch {
        // busy or closing: the next round purges
      }
    }, 60_000);
    this.purgeTimer.unref();
  }

  private prepared(): Prepared {
    if (this.st === undefined) throw new StoreError('unavailable', 'the sqlite state store is not open');
    return this.st;
  }

  /** Runs `fn` (synchronous, whole), retrying while another process holds the lock, until `deadline`. */
  private async attempt<T>(deadline: number, fn: () => T): Promise<T> {
    for (let delay = 2; ; delay = Math.min(delay * 2, 50)) {
      try {
        return fn();
      } catch (err) {
        if (err instanceof StoreError) throw err;
        const busy = /SQLITE_BUSY|SQLITE_LOCKED|database is locked/i.test(`${(err as { code?: string }).code ?? ''} ${(err as Error).message}`);
        if (!busy) throw new StoreError('failed', `sqlite ${this.o.path}: ${(err as Error).message}`, { cause: err });
        if (Date.now() + delay >= deadline) throw new StoreError('unavailable', `sqlite ${this.o.path} stayed locked by another process until the deadline`, { cause: err });
        await new Promise((r) => setTimeout(r, delay));
      }
    }
  }

  /** BEGIN IMMEDIATE … COMMIT around `fn`, rolled back when it throws. */
  private tx<T>(fn: (st: Prepared) => T): () => T {
    return () => {
      const db = this.db as DatabaseSync;
      const st = this.prepared();
      db.exec('BEGIN IMMEDIATE');
      try {
        const out = fn(st);
        db.exec('COMMIT');
        return out;
      } catch (err) {
        try {
          db.exec('ROLLBACK');
        } catch {
          // no transaction left to roll back
        }
        throw err;
      }
    };
  }

  claim(a: ActorRef, owner: string, deadline: number): Promise<number> {
    return this.attempt(deadline, () => {
      const row = this.prepared().claim.get(a.namespace, a.appId, a.type, a.id, owner, Date.now()) as { generation: number };
      return Number(row.generation);
    });
  }

  get(a: ActorRef, key: string, deadline: number): Promise<Uint8Array | undefined> {
    return this.attempt(deadline, () => {
      const row = this.prepared().get.get(a.namespace, a.appId, a.type, a.id, key, Date.now()) as { value: Uint8Array } | undefined;
      return row?.value;
    });
  }

  transact(a: ActorRef, generation: number, ops: readonly StateOperation[], deadline: number): Promise<void> {
    return this.attempt(deadline, this.tx((st) => {
      const fenced = st.fence.run(a.namespace, a.appId, a.type, a.id, generation);
      if (Number(fenced.changes) === 0) throw fencedError(a, generation);
      const now = Date.now();
      for (const op of ops) {
        if (op.op === 'delete') st.delete.run(a.namespace, a.appId, a.type, a.id, op.key);
        else st.upsert.run(a.namespace, a.appId, a.type, a.id, op.key, op.value, op.ttlSeconds === undefined ? null : now + op.ttlSeconds * 1000, now);
      }
    }));
  }

  putReminder(a: ActorRef, r: ReminderInput, deadline: number): Promise<void> {
    return this.attempt(deadline, () => {
      this.prepared().putReminder.run(a.namespace, a.appId, a.type, a.id, r.name, r.data ?? null, r.dueTime, r.period, r.ttl, r.dueAt, r.periodMs ?? null, r.remaining ?? null, r.expiresAt ?? null);
    });
  }

  getReminder(a: ActorRef, name: string, deadline: number): Promise<ReminderRecord | undefined> {
    return this.attempt(deadline, () => {
      const row = this.prepared().getReminder.get(a.namespace, a.appId, a.type, a.id, name) as Record<string, unknown> | undefined;
      return row === undefined ? undefined : reminderFromRow(row);
    });
  }

  deleteReminder(a: ActorRef, name: string, deadline: number): Promise<boolean> {
    return this.attempt(deadline, () => Number(this.prepared().deleteReminder.run(a.namespace, a.appId, a.type, a.id, name).changes) > 0);
  }

  due(namespace: string, appId: string, before: number, after: DueCursor | undefined, limit: number, deadline: number): Promise<ReminderRecord[]> {
    return this.attempt(deadline, () => {
      const c = after ?? { dueAt: -1, type: '', id: '', name: '' };
      const rows = this.prepared().due.all(namespace, appId, before, c.dueAt, c.type, c.id, c.name, limit) as Array<Record<string, unknown>>;
      return rows.map(reminderFromRow);
    });
  }

  nextDue(namespace: string, appId: string, deadline: number): Promise<number | undefined> {
    return this.attempt(deadline, () => {
      const row = this.prepared().nextDue.get(namespace, appId) as { next: number | null } | undefined;
      return row?.next === null || row?.next === undefined ? undefined : Number(row.next);
    });
  }

  finishFire(a: ActorRef, generation: number, name: string, rev: number, next: ReminderNext, deadline: number): Promise<'done' | 'changed'> {
    return this.attempt(deadline, this.tx((st) => {
      const fenced = st.fence.run(a.namespace, a.appId, a.type, a.id, generation);
      if (Number(fenced.changes) === 0) throw fencedError(a, generation);
      const r = next === undefined
        ? st.finish.run(a.namespace, a.appId, a.type, a.id, name, rev)
        : st.reschedule.run(a.namespace, a.appId, a.type, a.id, name, rev, next.dueAt, next.remaining ?? null);
      return Number(r.changes) > 0 ? 'done' : 'changed';
    }));
  }

  async close(): Promise<void> {
    if (this.purgeTimer !== undefined) clearInterval(this.purgeTimer);
    this.st = undefined;
    try {
      this.db?.close();
    } catch {
      // already closed
    }
    this.db = undefined;
  }
}

export function fencedError(a: ActorRef, generation: number): StoreError {
  return new StoreError('fenced', `actor ${a.type}/${a.id}: write under owner generation ${generation} refused, another node has claimed the actor since`);
}
