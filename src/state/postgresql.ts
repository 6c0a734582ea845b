/**
 * `state.postgresql`: the store for nodes on several hosts, through the `pg` driver: one pool
 * per node, named (prepared) statements, tables created on first use.
 *
 * Deadlines: taking a connection and every statement are bounded by the call's deadline. A
 * statement that ran out of time leaves its connection in an unknown state, so the connection
 * is destroyed, never returned to the pool. A write resolves only after COMMIT answered; a
 * COMMIT that timed out is reported as `unavailable` (it may or may not have landed, and the
 * caller was never told it did).
 */
import type pg from 'pg';
import { reminderFromRow, schema, statements, tables, type Statements } from './sql.ts';
import { fencedError } from './sqlite.ts';
import { msLeft, StoreError, type ActorRef, type DueCursor, type ReminderInput, type ReminderNext, type ReminderRecord, type StateOperation, type StateStore } from './store.ts';

export interface PostgresStoreOptions {
  /** A URL (`postgres://user:pw@host:port/db`) or libpq key=value pairs (`host=... port=... user=...`). */
  readonly connectionString: string;
  readonly table: string;
  /** Pool size (default 10). */
  readonly maxConnections?: number;
}

const INT8 = 20;

export class PostgresStateStore implements StateStore {
  readonly kind = 'state.postgresql';
  readonly hostLocal = false;
  readonly describe: string;
  private readonly o: PostgresStoreOptions;
  private readonly sql: Statements;
  /** Statement names: one per text, so the server prepares each once per connection. */
  private readonly names: Record<string, string>;
  private pool: pg.Pool | undefined;
  private purgeTimer: NodeJS.Timeout | undefined;

  constructor(o: PostgresStoreOptions) {
    this.o = o;
    const cfg = pgConfig(o.connectionString);
    this.describe = `postgresql ${cfg.host ?? 'localhost'}:${cfg.port ?? 5432}/${cfg.database ?? ''} (table ${o.table})`;
    this.sql = statements(tables(o.table));
    const tag = o.table.replace('.', '_');
    this.names = Object.fromEntries(Object.keys(this.sql).map((k) => [k, `weft_${tag}_${k}`]));
  }

  async open(deadline: number): Promise<void> {
    // Loaded on first use: nodes without a PostgreSQL store never pay for the driver.
    const driver = (await import('pg')).default;
    const pool = new driver.Pool({
      ...pgConfig(this.o.connectionString),
      max: this.o.maxConnections ?? 10,
      idleTimeoutMillis: 30_000,
      // BIGINT columns as numbers (times in ms and generations stay far below 2^53).
      types: { getTypeParser: (oid: number, format?: string) => (oid === INT8 ? Number : (driver.types.getTypeParser as (o: number, f?: string) => unknown)(oid, format)) },
    } as pg.PoolConfig);
    // An idle connection the server dropped must not crash the node.
    pool.on('error', () => {});
    this.pool = pool;
    await this.withClient(deadline, async (run) => {
      for (const sql of schema(tables(this.o.table), 'BYTEA', 'BIGINT')) {
        try {
          await run({ text: sql });
        } catch (err) {
          // Two nodes creating the same table at once: the loser's "already exists" is fine.
          if (!/already exists|duplicate key/i.test((err as Error).message)) throw err;
        }
      }
    });
    this.purgeTimer = setInterval(() => {
      void this.withClient(Date.now() + 10_000, (run) => run(this.q('purge', [Date.now()]))).catch(() => {});
    }, 60_000);
    this.purgeTimer.unref();
  }

  private q(name: keyof Statements, values: unknown[]): pg.QueryConfig {
    return { name: this.names[name], text: this.sql[name], values };
  }

  /**
   * Runs `fn` on one pooled connection, every statement bounded by the deadline. On any
   * failure the connection is destroyed (it may be mid-statement or mid-transaction).
   */
  private async withClient<T>(deadline: number, fn: (run: (q: pg.QueryConfig) => Promise<pg.QueryResult>) => Promise<T>): Promise<T> {
    const pool = this.pool;
    if (pool === undefined) throw new StoreError('unavailable', `${this.describe}: the store is not open`);
    let client: pg.PoolClient;
    try {
      client = await bounded(pool.connect(), msLeft(deadline), (late) => late.release());
    } catch (err) {
      throw new StoreError('unavailable', `${this.describe}: no connection before the deadline: ${(err as Error).message}`, { cause: err });
    }
    const run = (q: pg.QueryConfig): Promise<pg.QueryResult> => client.query({ ...q, query_timeout: msLeft(deadline) } as pg.QueryConfig);
    // The pool listens for errors only on idle connections: a server going away between two
    // statements of ours must fail the next statement, not crash the process.
    let lost: Error | undefined;
    const onError = (err: Error): void => {
      lost = err;
    };
    client.on('error', onError);
    try {
      const out = await fn(run);
      client.off('error', onError);
      client.release(lost);
      return out;
    } catch (err) {
      client.off('error', onError);
      client.release(true);
      if (err instanceof StoreError) throw err;
      const e = err as Error & { code?: string };
      const down = e.code === undefined || /^(08|57P|53)/.test(e.code) || /timeout|terminat|ECONN|EPIPE|closed/i.test(e.message);
      throw new StoreError(down ? 'unavailable' : 'failed', `${this.describe}: ${e.message}`, { cause: err });
    }
  }

  /** BEGIN … COMMIT; fenced on the actor's generation first. */
  private fencedTx<T>(a: ActorRef, generation: number, deadline: number, body: (run: (q: pg.QueryConfig) => Promise<pg.QueryResult>) => Promise<T>): Promise<T> {
    return this.withClient(deadline, async (run) => {
      await run({ text: 'BEGIN' });
      // Row-locks the owner row until COMMIT: a concurrent claim waits for this transaction,
      // and a claim that committed first makes this update match nothing.
      const fenced = await run(this.q('fence', [a.namespace, a.appId, a.type, a.id, generation]));
      if (fenced.rowCount === 0) {
        await run({ text: 'ROLLBACK' });
        throw fencedError(a, generation);
      }
      const out = await body(run);
      await run({ text: 'COMMIT' });
      return out;
    });
  }

  async claim(a: ActorRef, owner: string, deadline: number): Promise<number> {
    const r = await this.withClient(deadline, (run) => run(this.q('claim', [a.namespace, a.appId, a.type, a.id, owner, Date.now()])));
    return Number((r.rows[0] as { generation: number }).generation);
  }

  async get(a: ActorRef, key: string, deadline: number): Promise<Uint8Array | undefined> {
    const r = await this.withClient(deadline, (run) => run(this.q('get', [a.namespace, a.appId, a.type, a.id, key, Date.now()])));
    const row = r.rows[0] as { value: Buffer } | undefined;
    return row?.value;
  }

  transact(a: ActorRef, generation: number, ops: readonly StateOperation[], deadline: number): Promise<void> {
    return this.fencedTx(a, generation, deadline, async (run) => {
      const now = Date.now();
      for (const op of ops) {
        if (op.op === 'delete') await run(this.q('delete', [a.namespace, a.appId, a.type, a.id, op.key]));
        else await run(this.q('upsert', [a.namespace, a.appId, a.type, a.id, op.key, Buffer.from(op.value.buffer, op.value.byteOffset, op.value.byteLength), op.ttlSeconds === undefined ? null : now + op.ttlSeconds * 1000, now]));
      }
    });
  }

  async putReminder(a: ActorRef, r: ReminderInput, deadline: number): Promise<void> {
    await this.withClient(deadline, (run) => run(this.q('putReminder', [a.namespace, a.appId, a.type, a.id, r.name, r.data ?? null, r.dueTime, r.period, r.ttl, r.dueAt, r.periodMs ?? null, r.remaining ?? null, r.expiresAt ?? null])));
  }

  async getReminder(a: ActorRef, name: string, deadline: number): Promise<ReminderRecord | undefined> {
    const r = await this.withClient(deadline, (run) => run(this.q('getReminder', [a.namespace, a.appId, a.type, a.id, name])));
    const row = r.rows[0] as Record<string, unknown> | undefined;
    return row === undefined ? undefined : reminderFromRow(row);
  }

  async deleteReminder(a: ActorRef, name: string, deadline: number): Promise<boolean> {
    const r = await this.withClient(deadline, (run) => run(this.q('deleteReminder', [a.namespace, a.appId, a.type, a.id, name])));
    return (r.rowCount ?? 0) > 0;
  }

  async due(namespace: string, appId: string, before: number, after: DueCursor | undefined, limit: number, deadline: number): Promise<ReminderRecord[]> {
    const c = after ?? { dueAt: -1, type: '', id: '', name: '' };
    const r = await this.withClient(deadline, (run) => run(this.q('due', [namespace, appId, before, c.dueAt, c.type, c.id, c.name, limit])));
    return (r.rows as Array<Record<string, unknown>>).map(reminderFromRow);
  }

  async nextDue(namespace: string, appId: string, deadline: number): Promise<number | undefined> {
    const r = await this.withClient(deadline, (run) => run(this.q('nextDue', [namespace, appId])));
    const next = (r.rows[0] as { next: number | null } | undefined)?.next;
    return next === null || next === undefined ? undefined : Number(next);
  }

  finishFire(a: ActorRef, generation: number, name: string, rev: number, next: ReminderNext, deadline: number): Promise<'done' | 'changed'> {
    return this.fencedTx(a, generation, deadline, async (run) => {
      const r = next === undefined
        ? await run(this.q('finish', [a.namespace, a.appId, a.type, a.id, name, rev]))
        : await run(this.q('reschedule', [a.namespace, a.appId, a.type, a.id, name, rev, next.dueAt, next.remaining ?? null]));
      return (r.rowCount ?? 0) > 0 ? 'done' : 'changed';
    });
  }

  async close(): Promise<void> {
    if (this.purgeTimer !== undefined) clearInterval(this.purgeTimer);
    const pool = this.pool;
    this.pool = undefined;
    await pool?.end().catch(() => {});
  }
}

/** Resolves with `p` if it settles within `ms`, else rejects; a late result goes to `late`. */
function bounded<T>(p: Promise<T>, ms: number, late: (v: T) => void): Promise<T> {
  return new Promise((resolve, reject) => {
    let done = false;
    const t = setTimeout(() => {
      done = true;
      reject(new Error(`timed out after ${ms} ms`));
    }, ms);
    p.then((v) => {
      if (done) return late(v);
      done = true;
      clearTimeout(t);
      resolve(v);
    }, (err: unknown) => {
      if (done) return;
      done = true;
      clearTimeout(t);
      reject(err as Error);
    });
  });
}

/** pg's connection settings from a URL or from libpq's `key=value` form (Dapr's examples use both). */
export function pgConfig(connectionString: string): pg.ClientConfig {
  const text = connectionString.trim();
  if (/^postgres(ql)?:\/\//.test(text)) return { connectionString: text };
  const out: Record<string, unknown> = {};
  for (const m of text.matchAll(/(\w+)\s*=\s*('(?:[^'\\]|\\.)*'|\S+)/g)) {
    const key = m[1] as string;
    let value = m[2] as string;
    if (value.startsWith('\'')) value = value.slice(1, -1).replace(/\\(.)/g, '$1');
    switch (key) {
      case 'host': case 'user': case 'password': out[key] = value; break;
      case 'dbname': case 'database': out['database'] = value; break;
      case 'port': out['port'] = Number(value); break;
      case 'connect_timeout': out['connectionTimeoutMillis'] = Number(value) * 1000; break;
      case 'sslmode': if (value !== 'disable') out['ssl'] = value === 'require' ? { rejectUnauthorized: false } : true; break;
      case 'application_name': out['application_name'] = value; break;
      default: break; // other libpq keys have no pg equivalent here
    }
  }
  return out as pg.ClientConfig;
}
