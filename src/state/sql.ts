/**
 * The statements both SQL stores run, written once with `$n` placeholders (PostgreSQL's; the
 * SQLite store rewrites them to `?n`). Three tables per store, named from the component's
 * `tableName` (default `weft_actor_state`): the state itself, `<name>_owners` (each actor's
 * owner and fencing generation) and `<name>_reminders` (indexed by due time).
 * docs/state.md shows the schema.
 */
import type { ReminderRecord } from './store.ts';

/** A table name, optionally schema-qualified: letters, digits, `_`, at most one dot. */
export const TABLE_NAME = /^[A-Za-z_][A-Za-z0-9_]{0,40}(\.[A-Za-z_][A-Za-z0-9_]{0,40})?$/;
export const DEFAULT_TABLE = 'weft_actor_state';

const ACTOR = 'namespace = $1 AND app_id = $2 AND actor_type = $3 AND actor_id = $4';
const ACTOR_COLS = 'namespace, app_id, actor_type, actor_id';
const REMINDER_COLS = 'actor_type, actor_id, name, data, due_time, period, ttl, due_at, period_ms, remaining, expires_at, rev';

export interface Tables {
  readonly state: string;
  readonly owners: string;
  readonly reminders: string;
}

export function tables(name: string): Tables {
  return { state: name, owners: `${name}_owners`, reminders: `${name}_reminders` };
}

/** CREATE statements; `blob` is the byte column type (BLOB / BYTEA), `int` the 64-bit integer type. */
export function schema(t: Tables, blob: string, int: string): string[] {
  const index = (table: string): string => table.slice(table.indexOf('.') + 1);
  return [
    `CREATE TABLE IF NOT EXISTS ${t.state} (namespace TEXT NOT NULL, app_id TEXT NOT NULL, actor_type TEXT NOT NULL, actor_id TEXT NOT NULL, key TEXT NOT NULL, value ${blob} NOT NULL, expires_at ${int}, updated_at ${int} NOT NULL, PRIMARY KEY (${ACTOR_COLS}, key))`,
    `CREATE INDEX IF NOT EXISTS ${index(t.state)}_expires ON ${t.state} (expires_at) WHERE expires_at IS NOT NULL`,
    `CREATE TABLE IF NOT EXISTS ${t.owners} (namespace TEXT NOT NULL, app_id TEXT NOT NULL, actor_type TEXT NOT NULL, actor_id TEXT NOT NULL, generation ${int} NOT NULL, owner TEXT NOT NULL, claimed_at ${int} NOT NULL, PRIMARY KEY (${ACTOR_COLS}))`,
    `CREATE TABLE IF NOT EXISTS ${t.reminders} (namespace TEXT NOT NULL, app_id TEXT NOT NULL, actor_type TEXT NOT NULL, actor_id TEXT NOT NULL, name TEXT NOT NULL, data TEXT, due_time TEXT NOT NULL, period TEXT NOT NULL, ttl TEXT NOT NULL, due_at ${int} NOT NULL, period_ms ${int}, remaining ${int}, expires_at ${int}, rev ${int} NOT NULL, PRIMARY KEY (${ACTOR_COLS}, name))`,
    `CREATE INDEX IF NOT EXISTS ${index(t.reminders)}_due ON ${t.reminders} (namespace, app_id, due_at, actor_type, actor_id, name)`,
  ];
}

export function statements(t: Tables) {
  return {
    get: `SELECT value FROM ${t.state} WHERE ${ACTOR} AND key = $5 AND (expires_at IS NULL OR expires_at > $6)`,
    claim: `INSERT INTO ${t.owners} AS cur (${ACTOR_COLS}, generation, owner, claimed_at) VALUES ($1, $2, $3, $4, 1, $5, $6)
      ON CONFLICT (${ACTOR_COLS}) DO UPDATE SET generation = cur.generation + 1, owner = excluded.owner, claimed_at = excluded.claimed_at RETURNING generation`,
    /** Touches the owner row only when the generation is current: 0 rows means fenced. */
    fence: `UPDATE ${t.owners} SET claimed_at = claimed_at WHERE ${ACTOR} AND generation = $5`,
    upsert: `INSERT INTO ${t.state} AS cur (${ACTOR_COLS}, key, value, expires_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
      ON CONFLICT (${ACTOR_COLS}, key) DO UPDATE SET value = excluded.value, expires_at = excluded.expires_at, updated_at = excluded.updated_at`,
    delete: `DELETE FROM ${t.state} WHERE ${ACTOR} AND key = $5`,
    purge: `DELETE FROM ${t.state} WHERE expires_at IS NOT NULL AND expires_at <= $1`,
    putReminder: `INSERT INTO ${t.reminders} AS cur (${ACTOR_COLS}, name, data, due_time, period, ttl, due_at, period_ms, remaining, expires_at, rev)
      VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, 1)
      ON CONFLICT (${ACTOR_COLS}, name) DO UPDATE SET data = excluded.data, due_time = excluded.due_time, period = excluded.period, ttl = excluded.ttl,
        due_at = excluded.due_at, period_ms = excluded.period_ms, remaining = excluded.remaining, expires_at = excluded.expires_at, rev = cur.rev + 1`,
    getReminder: `SELECT ${REMINDER_COLS} FROM ${t.reminders} WHERE ${ACTOR} AND name = $5`,
    deleteReminder: `DELETE FROM ${t.reminders} WHERE ${ACTOR} AND name = $5`,
    due: `SELECT ${REMINDER_COLS} FROM ${t.reminders} WHERE namespace = $1 AND app_id = $2 AND due_at <= $3
      AND (due_at, actor_type, actor_id, name) > ($4, $5, $6, $7) ORDER BY due_at, actor_type, actor_id, name LIMIT $8`,
    nextDue: `SELECT MIN(due_at) AS next FROM ${t.reminders} WHERE namespace = $1 AND app_id = $2`,
    reschedule: `UPDATE ${t.reminders} SET due_at = $7, remaining = $8 WHERE ${ACTOR} AND name = $5 AND rev = $6`,
    finish: `DELETE FROM ${t.reminders} WHERE ${ACTOR} AND name = $5 AND rev = $6`,
  };
}

export type Statements = ReturnType<typeof statements>;

/** A reminder row as either driver returns it (PostgreSQL's BIGINTs already parsed to numbers). */
export function reminderFromRow(row: Record<string, unknown>): ReminderRecord {
  const opt = (v: unknown): number | undefined => (v === null || v === undefined ? undefined : Number(v));
  return {
    type: String(row['actor_type']),
    id: String(row['actor_id']),
    name: String(row['name']),
    data: row['data'] === null || row['data'] === undefined ? undefined : String(row['data']),
    dueTime: String(row['due_time']),
    period: String(row['period']),
    ttl: String(row['ttl']),
    dueAt: Number(row['due_at']),
    periodMs: opt(row['period_ms']),
    remaining: opt(row['remaining']),
    expiresAt: opt(row['expires_at']),
    rev: Number(row['rev']),
  };
}
