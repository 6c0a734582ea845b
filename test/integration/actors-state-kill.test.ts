/**
 * Actor state on PostgreSQL under failures, nodes as real processes (`weft run`) and the apps
 * in this process (test/support/actor-app.ts: `inc` reads `count` through its node and writes
 * count + 1 in a transaction):
 *
 * 1. Kill: 1,000 actors incremented under a bounded load across three nodes, one SIGKILLed
 *    (its app dies with it) and one leaving gracefully (SIGTERM). Every final count must equal
 *    the acknowledged increments: none lost, none doubled. A call that failed after it may
 *    have reached the app (the killed node's in-flight calls) may or may not have counted, and
 *    is allowed for exactly its own id. Reminders registered before keep firing afterwards.
 * 2. Fencing: the owner of an actor is frozen (SIGSTOP) between its app's read and write,
 *    past its registration's expiry and the lock delay; the other node takes the actor over and
 *    writes. Resumed (SIGCONT), the frozen node's write is refused by the store and the count
 *    keeps the new owner's writes.
 *
 * Skipped, with the reason, when the PostgreSQL server binaries are missing.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Cluster } from '../support/cluster.ts';
import { actorNodeArgs, exited, placementSettled, ProcessGroup, type NodeProcess } from '../support/processes.ts';
import { startActorApp, Tracker, type ActorApp } from '../support/actor-app.ts';
import pg from 'pg';
import { findPostgres, PostgresServer } from '../support/postgres.ts';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const binaries = findPostgres();

/** Codes of failures that surely never reached the app (the increment did not run). */
const NOT_RUN = new Set(['WEFT_ACTOR_MOVED', 'WEFT_ACTOR_CLAIM', 'WEFT_PEER_UNAVAILABLE', 'WEFT_NOT_SERVING', 'WEFT_SHUTTING_DOWN', 'WEFT_ACTOR_INSTANCE_MISSING']);

// Skipped when no PostgreSQL binaries are found (findPostgres() then returns the reason as a
// string); .ci/run installs PostgreSQL, so CI runs it.
const suite = typeof binaries === 'string' ? describe.skip : describe;

suite(`actor state on PostgreSQL under SIGKILL, graceful leave and SIGSTOP (node processes)${typeof binaries === 'string' ? ` (skipped: ${binaries})` : ''}`, () => {
  const cluster = new Cluster();
  const procs = new ProcessGroup();
  const apps: ActorApp[] = [];
  let server: PostgresServer | undefined;
  let components = '';

  beforeAll(async () => {
    if (typeof binaries === 'string') return;
    server = await PostgresServer.start(binaries);
    components = join(cluster.dir, 'components');
    mkdirSync(components);
    writeFileSync(join(components, 'actorstore.yaml'), [
      'apiVersion: dapr.io/v1alpha1', 'kind: Component', 'metadata:', '  name: actorstore', 'spec:', '  type: state.postgresql', '  metadata:',
      `    - { name: connectionString, value: "${server.url}" }`, '    - { name: actorStateStore, value: "true" }', '',
    ].join('\n'));
  }, 60_000);

  afterAll(async () => {
    await procs.close();
    await Promise.all(apps.map((a) => a.close()));
    await cluster.close();
    await server?.stop();
  });

  /** Each test its own cluster: a registry of its own, the one PostgreSQL database. */
  const start = async (name: string, tracker: Tracker, clusterName: string): Promise<{ app: ActorApp; proc: NodeProcess }> => {
    const registry = join(cluster.dir, `${clusterName}.sqlite`);
    const configFile = join(cluster.dir, `${clusterName}.yaml`);
    writeFileSync(configFile, [
      'resolver:',
      '  type: local',
      `  local: { path: ${JSON.stringify(registry)}, ttl: 2s, refresh: 100ms }`,
      'actors: { callTimeout: 3s, fenceTimeout: 1s, lockDelay: 4500ms, leaveLinger: 300ms }',
      'timeouts: { shutdown: 3s }',
      `resourcesPath: ${JSON.stringify(components)}`,
      '',
    ].join('\n'));
    const app = await startActorApp(name, tracker);
    apps.push(app);
    const proc = await procs.node(actorNodeArgs(configFile, app.port, registry));
    app.nodePort = proc.ready.http;
    return { app, proc };
  };
  const inc = (node: NodeProcess, id: string, body = '{}', timeout = '10s'): Promise<Response> =>
    fetch(`http://127.0.0.1:${node.ready.http}/v1.0/actors/Counter/${encodeURIComponent(id)}/method/inc`, { method: 'PUT', body, headers: { 'weft-timeout': timeout }, signal: AbortSignal.timeout(15_000) });

  it('loses and doubles no acknowledged increment of 1,000 actors through a SIGKILL and a graceful leave; reminders keep firing', async () => {
    const tracker = new Tracker();
    const a = await start('a', tracker, 'kill');
    const b = await start('b', tracker, 'kill');
    const c = await start('c', tracker, 'kill');
    await placementSettled([a.proc, b.proc, c.proc], 20_000);
    const live: NodeProcess[] = [a.proc, b.proc, c.proc];

    // Reminders on 30 actors, spread over the three nodes.
    const remIds = Array.from({ length: 30 }, (_, i) => `rem-${i}`);
    for (const id of remIds) {
      const r = await fetch(`http://127.0.0.1:${a.proc.ready.http}/v1.0/actors/Counter/${id}/method/echo`, { method: 'PUT', body: '{}' });
      await r.text();
      const owner = [a, b, c].find((x) => tracker.servedBy.get(id)?.has(x.app.name)) ?? a;
      const reg = await fetch(`http://127.0.0.1:${owner.proc.ready.http}/v1.0/actors/Counter/${id}/reminders/beat`, { method: 'POST', body: JSON.stringify({ dueTime: '0s', period: '500ms' }) });
      expect(reg.status).toBe(204);
    }

    const ids = Array.from({ length: 1000 }, (_, i) => `acct-${i}`);
    const acked = new Map<string, number>();
    const maybe = new Map<string, number>();
    const counts = { calls: 0, ok: 0, notRun: 0, maybe: 0 };
    const failures = new Map<string, number>();
    let stop = false;
    const MAX_CALLS = 12_000;
    const worker = async (w: number): Promise<void> => {
      for (let i = w; !stop && counts.calls < MAX_CALLS; i += 24) {
        const node = live[i % live.length] as NodeProcess;
        const id = ids[(i * 7919) % ids.length] as string;
        counts.calls++;
        let code = 'NETWORK';
        try {
          const r = await inc(node, id);
          const text = await r.text();
          if (r.status === 200) {
            counts.ok++;
            acked.set(id, (acked.get(id) ?? 0) + 1);
            continue;
          }
          code = (JSON.parse(text) as { weftCode?: string }).weftCode ?? `HTTP_${r.status}`;
        } catch {
          // the node we called died, or the call timed out: it may have run
        }
        failures.set(code, (failures.get(code) ?? 0) + 1);
        if (NOT_RUN.has(code)) counts.notRun++;
        else {
          counts.maybe++;
          maybe.set(id, (maybe.get(id) ?? 0) + 1);
        }
      }
    };
    const started = Date.now();
    const workers = Array.from({ length: 24 }, (_, w) => worker(w));
    await sleep(2000);
    live.splice(live.indexOf(c.proc), 1); // crash: the node and its app
    c.proc.child.kill('SIGKILL');
    await exited(c.proc.child);
    c.app.crash();
    const killedAt = Date.now();
    await sleep(1500);
    live.splice(live.indexOf(b.proc), 1); // graceful leave
    b.proc.child.kill('SIGTERM');
    expect(await exited(b.proc.child)).toBe(0);
    await sleep(9000); // the killed node's registration expiry (2 s) + lock delay (4.5 s) + slack
    stop = true;
    await Promise.all(workers);
    const loadMs = Date.now() - started;

    // Every final count, read from the store itself (the table docs/state.md describes).
    const db = new pg.Client({ connectionString: server?.url });
    await db.connect();
    const rows = (await db.query<{ actor_id: string; value: Buffer }>("SELECT actor_id, value FROM weft_actor_state WHERE app_id = 'bank' AND actor_type = 'Counter' AND key = 'count'")).rows;
    await db.end();
    const final = new Map(rows.map((r) => [r.actor_id, Number(r.value.toString())]));
    let lost = 0;
    let doubled = 0;
    let exact = 0;
    for (const id of ids) {
      const count = final.get(id) ?? 0;
      const ok = acked.get(id) ?? 0;
      if (count < ok) lost++;
      else if (count > ok + (maybe.get(id) ?? 0)) doubled++;
      else if (count === ok) exact++;
    }
    // Reminders kept firing after the failover, on the survivor, for every actor.
    await sleep(1500);
    const firedAfter = new Set(tracker.reminderFires.filter((f) => f.at > killedAt + 8000 && f.app === 'a').map((f) => f.id));
    console.log(`actor state kill run (PostgreSQL): ${counts.calls} calls in ${loadMs} ms, ok=${counts.ok} notRun=${counts.notRun} maybe=${counts.maybe} failures=${JSON.stringify(Object.fromEntries(failures))}; `
      + `final counts: exact=${exact} lost=${lost} doubled=${doubled}; reminders firing after failover on ${firedAfter.size}/${remIds.length} actors; max activations per id ${tracker.worst()}`);
    expect(counts.ok).toBeGreaterThan(50); // bounded by time: a loaded machine makes fewer calls
    expect(lost).toBe(0);
    expect(doubled).toBe(0);
    expect([...remIds].filter((id) => !firedAfter.has(id))).toEqual([]);
    await procs.close();
  }, 180_000);

  it('refuses the write of an owner frozen past its lease (SIGSTOP, then SIGCONT), in the store or on its node, and the new owner\'s count stands', async () => {
    const tracker = new Tracker();
    const x = await start('x', tracker, 'fence');
    const y = await start('y', tracker, 'fence');
    await placementSettled([x.proc, y.proc], 20_000);
    // An id that x owns.
    let id = '';
    for (let i = 0; id === '' && i < 200; i++) {
      const r = await inc(y.proc, `fence-${i}`);
      expect(r.status).toBe(200);
      await r.text();
      if (tracker.servedBy.get(`fence-${i}`)?.has('x')) id = `fence-${i}`;
    }
    expect(id).not.toBe('');
    // x's app reads count (1), then waits 1.5 s before it writes 2: x is frozen meanwhile.
    const stale = inc(y.proc, id, '{"pauseMs":1500}', '3s').then((r) => r.text()).catch(() => 'aborted');
    for (const end = Date.now() + 10_000; !tracker.pausedAfterRead.has(id);) {
      if (Date.now() > end) throw new Error('x\'s app never read the state');
      await sleep(10);
    }
    x.proc.child.kill('SIGSTOP');
    let finalCount = 0;
    try {
      // y takes the actor over once x's registration expired and the lock delay ran.
      const end = Date.now() + 30_000;
      let count = 0;
      while (count === 0) {
        if (Date.now() > end) throw new Error('y never took the actor over');
        const r = await inc(y.proc, id, '{}', '2s').catch(() => undefined);
        if (r?.status === 200) count = ((await r.json()) as { count: number }).count;
        else {
          await r?.text();
          await sleep(200);
        }
      }
      // At least 2 (an attempt that timed out at the caller may have counted too).
      expect(count).toBeGreaterThanOrEqual(2);
      for (let i = 1; i <= 3; i++) expect(await (await inc(y.proc, id)).json()).toMatchObject({ count: count + i, app: 'y' });
      count += 3;
      finalCount = count;
    } finally {
      x.proc.child.kill('SIGCONT');
    }
    await stale;
    // The frozen owner's write (count 2) reached x after it resumed, and was refused. Which
    // refusal depends on what x does first once it runs again (timers before sockets, or not):
    // the store refuses the stale generation (409; state-store.test.ts covers that store fence on
    // its own), or x has already given up the actor and refuses it itself (400), or x's HTTP
    // server finds the request's head overdue after the freeze and cuts the connection (0).
    const end = Date.now() + 10_000;
    while (!tracker.stateRefusals.some((r) => r.app === 'x' && r.id === id) && Date.now() < end) await sleep(100);
    const refusal = tracker.stateRefusals.find((r) => r.app === 'x' && r.id === id);
    console.log(`stale owner's write after SIGCONT: ${refusal?.status} ${refusal?.body}`);
    expect([409, 400, 0]).toContain(refusal?.status);
    if (refusal?.status === 409) expect(JSON.parse(refusal.body)).toMatchObject({ weftCode: 'WEFT_ACTOR_STATE_FENCED', errorCode: 'ERR_ACTOR_STATE_TRANSACTION_SAVE' });
    if (refusal?.status === 400) expect(JSON.parse(refusal.body)).toMatchObject({ weftCode: 'WEFT_ACTOR_INSTANCE_MISSING' });
    // y's writes stand; the stale write would have set 2.
    expect(await (await fetch(`http://127.0.0.1:${y.proc.ready.http}/v1.0/actors/Counter/${id}/method/count`, { method: 'PUT', body: '{}' })).json()).toEqual({ count: finalCount });
    await procs.close();
  }, 120_000);
});
