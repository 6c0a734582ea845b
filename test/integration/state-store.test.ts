/**
 * The actor state stores against the same contract: embedded SQLite (a temp file) and a
 * throwaway PostgreSQL cluster (skipped, with the reason, when the server binaries are
 * missing). Two store objects on one database stand for two nodes.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PostgresStateStore } from '../../src/state/postgresql.ts';
import { SqliteStateStore } from '../../src/state/sqlite.ts';
import { StoreError, type ActorRef, type ReminderInput, type StateStore } from '../../src/state/store.ts';
import { findPostgres, PostgresServer } from '../support/postgres.ts';

const enc = new TextEncoder();
const dec = new TextDecoder();
const soon = (): number => Date.now() + 5000;
const actor = (id: string): ActorRef => ({ namespace: 'default', appId: 'bank', type: 'Account', id });
const text = (v: Uint8Array | undefined): string | undefined => (v === undefined ? undefined : dec.decode(v));

function reminder(name: string, id: string, dueAt: number, over: Partial<ReminderInput> = {}): ReminderInput {
  return { type: 'Account', id, name, data: '{"n":1}', dueTime: '1s', period: '5s', ttl: '', dueAt, periodMs: 5000, remaining: undefined, expiresAt: undefined, ...over };
}

async function refusal(p: Promise<unknown>): Promise<StoreError> {
  try {
    await p;
  } catch (err) {
    if (err instanceof StoreError) return err;
    throw err;
  }
  throw new Error('expected a StoreError');
}

function contract(name: string, make: () => Promise<[StateStore, StateStore]>, halt?: () => Promise<() => Promise<void>>): void {
  describe(name, () => {
    let a: StateStore;
    let b: StateStore;
    beforeAll(async () => {
      [a, b] = await make();
    }, 60_000);
    afterAll(async () => {
      await a?.close();
      await b?.close();
    });

    it('fences writes by the generation of the last claim, across two store clients', async () => {
      const x = actor('fence');
      const g1 = await a.claim(x, 'node-a/1', soon());
      await a.transact(x, g1, [{ op: 'upsert', key: 'balance', value: enc.encode('10') }], soon());
      expect(text(await b.get(x, 'balance', soon()))).toBe('10');
      const g2 = await b.claim(x, 'node-b/1', soon());
      expect(g2).toBe(g1 + 1);
      // The old owner's transaction is refused whole: neither of its operations lands.
      const e = await refusal(a.transact(x, g1, [{ op: 'upsert', key: 'balance', value: enc.encode('99') }, { op: 'upsert', key: 'other', value: enc.encode('1') }], soon()));
      expect(e.kind).toBe('fenced');
      expect(e.message).toMatch(/Account\/fence/);
      expect(text(await a.get(x, 'balance', soon()))).toBe('10');
      expect(await a.get(x, 'other', soon())).toBeUndefined();
      await b.transact(x, g2, [{ op: 'upsert', key: 'balance', value: enc.encode('11') }, { op: 'delete', key: 'missing' }], soon());
      expect(text(await a.get(x, 'balance', soon()))).toBe('11');
      // A generation never claimed is refused too.
      expect((await refusal(b.transact(actor('never'), 1, [{ op: 'delete', key: 'k' }], soon()))).kind).toBe('fenced');
    });

    it('applies a transaction of upserts and deletes at once, and keeps actors apart', async () => {
      const x = actor('tx');
      const y = actor('tx-other');
      const gx = await a.claim(x, 'n/1', soon());
      const gy = await a.claim(y, 'n/1', soon());
      await a.transact(x, gx, [{ op: 'upsert', key: 'k1', value: enc.encode('"one"') }, { op: 'upsert', key: 'k2', value: enc.encode('{"a":[1,2]}') }], soon());
      await a.transact(y, gy, [{ op: 'upsert', key: 'k1', value: enc.encode('"y"') }], soon());
      await a.transact(x, gx, [{ op: 'delete', key: 'k1' }, { op: 'upsert', key: 'k2', value: enc.encode('2') }], soon());
      expect(await b.get(x, 'k1', soon())).toBeUndefined();
      expect(text(await b.get(x, 'k2', soon()))).toBe('2');
      expect(text(await b.get(y, 'k1', soon()))).toBe('"y"');
    });

    it('expires an upsert after its ttlInSeconds', async () => {
      const x = actor('ttl');
      const g = await a.claim(x, 'n/1', soon());
      await a.transact(x, g, [{ op: 'upsert', key: 'short', value: enc.encode('1'), ttlSeconds: 1 }, { op: 'upsert', key: 'long', value: enc.encode('2') }], soon());
      expect(text(await a.get(x, 'short', soon()))).toBe('1');
      await new Promise((r) => setTimeout(r, 1100));
      expect(await a.get(x, 'short', soon())).toBeUndefined();
      expect(text(await a.get(x, 'long', soon()))).toBe('2');
    });

    it('keeps reminders in due order, pages through them, and fences their follow-up', async () => {
      const t0 = 1_000_000;
      for (let i = 0; i < 25; i++) await a.putReminder(actor(`r${i % 5}`), reminder(`rem-${i}`, `r${i % 5}`, t0 + i), soon());
      await a.putReminder(actor('r0'), reminder('later', 'r0', t0 + 10_000), soon());
      expect(await b.nextDue('default', 'bank', soon())).toBe(t0);
      const seen: number[] = [];
      let cursor;
      for (;;) {
        const page = await b.due('default', 'bank', t0 + 100, cursor, 7, soon());
        seen.push(...page.map((r) => r.dueAt));
        const last = page.at(-1);
        if (page.length < 7 || last === undefined) break;
        cursor = { dueAt: last.dueAt, type: last.type, id: last.id, name: last.name };
      }
      expect(seen).toEqual(Array.from({ length: 25 }, (_, i) => t0 + i));
      expect(await b.due('default', 'other-app', t0 + 100, undefined, 100, soon())).toEqual([]);

      const x = actor('r0');
      const first = await b.getReminder(x, 'rem-0', soon());
      expect(first).toMatchObject({ name: 'rem-0', data: '{"n":1}', dueTime: '1s', period: '5s', periodMs: 5000, rev: 1 });
      const g = await a.claim(x, 'n/1', soon());
      expect(await a.finishFire(x, g, 'rem-0', 1, { dueAt: t0 + 5000, remaining: undefined }, soon())).toBe('done');
      expect((await a.getReminder(x, 'rem-0', soon()))?.dueAt).toBe(t0 + 5000);
      // Re-registered meanwhile: a follow-up for the old revision leaves it alone.
      await a.putReminder(x, reminder('rem-0', 'r0', t0 + 7), soon());
      expect((await a.getReminder(x, 'rem-0', soon()))?.rev).toBe(2);
      expect(await a.finishFire(x, g, 'rem-0', 1, undefined, soon())).toBe('changed');
      // A stale owner cannot move or delete it.
      await b.claim(x, 'n/2', soon());
      expect((await refusal(a.finishFire(x, g, 'rem-0', 2, undefined, soon()))).kind).toBe('fenced');
      expect(await a.getReminder(x, 'rem-0', soon())).toBeDefined();
      expect(await a.deleteReminder(x, 'rem-0', soon())).toBe(true);
      expect(await a.deleteReminder(x, 'rem-0', soon())).toBe(false);
      expect(await a.getReminder(x, 'rem-0', soon())).toBeUndefined();
    });

    if (halt !== undefined) {
      it('answers "unavailable" within the deadline while the server is down, and works again after', async () => {
        const x = actor('down');
        const g = await a.claim(x, 'n/1', soon());
        await a.transact(x, g, [{ op: 'upsert', key: 'k', value: enc.encode('1') }], soon());
        const restart = await halt();
        // A hang would run into the test's timeout; the calls end by their 2 s deadlines.
        const e = await refusal(a.transact(x, g, [{ op: 'upsert', key: 'k', value: enc.encode('2') }], Date.now() + 2000));
        expect(e.kind).toBe('unavailable');
        expect((await refusal(a.get(x, 'k', Date.now() + 2000))).kind).toBe('unavailable');
        await restart();
        let value: string | undefined;
        for (let i = 0; i < 50 && value === undefined; i++) {
          value = await a.get(x, 'k', soon()).then(text, () => undefined);
          if (value === undefined) await new Promise((r) => setTimeout(r, 100));
        }
        expect(value).toBe('1'); // the acknowledged write survived, the refused one never landed
      }, 60_000);
    }
  });
}

const dir = mkdtempSync(join(tmpdir(), 'weft-state-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

contract('state.sqlite', async () => {
  const path = join(dir, 'actor-state.sqlite');
  const a = new SqliteStateStore({ path, table: 'weft_actor_state' });
  const b = new SqliteStateStore({ path, table: 'weft_actor_state' });
  await a.open(soon());
  await b.open(soon());
  return [a, b];
});

const pgBinaries = findPostgres();
if (typeof pgBinaries === 'string') {
  describe.skip(`state.postgresql (skipped: ${pgBinaries})`, () => {
    it('needs a PostgreSQL server', () => {});
  });
} else {
  let server: PostgresServer | undefined;
  afterAll(async () => {
    await server?.stop();
  });
  contract('state.postgresql', async () => {
    server = await PostgresServer.start(pgBinaries);
    const a = new PostgresStateStore({ connectionString: server.url, table: 'weft_actor_state' });
    const b = new PostgresStateStore({ connectionString: server.keyValue, table: 'public.weft_actor_state' });
    await a.open(soon());
    await b.open(soon());
    return [a, b];
  }, async () => {
    await server?.halt();
    return async () => server?.resume();
  });
}
