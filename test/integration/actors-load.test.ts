/**
 * Actors under membership changes, with nodes as real processes (`weft run`): a bounded load
 * over 1,000 actor ids while one node joins, one leaves gracefully (SIGTERM) and one is killed
 * (SIGKILL). The apps live in this process and share a tracker of live activations per id
 * across the cluster; the killed node's app "dies" with it (its activations are dropped).
 *
 * What must hold: never two activations of an id at once. Calls for the killed node's actors
 * may fail while its registration expires and the lock delay runs (the documented window);
 * everything else must succeed. The counts are printed.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { Cluster } from '../support/cluster.ts';
import { actorNodeArgs, exited, placementSettled, ProcessGroup, type NodeProcess } from '../support/processes.ts';
import { startActorApp, Tracker, type ActorApp } from '../support/actor-app.ts';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

describe('actors under join, graceful leave and SIGKILL (node processes)', () => {
  const cluster = new Cluster();
  const procs = new ProcessGroup();
  const apps: ActorApp[] = [];
  afterAll(async () => {
    await procs.close();
    await Promise.all(apps.map((a) => a.close()));
    await cluster.close();
  });

  it('keeps at most one activation per id across 1,000 ids', async () => {
    const tracker = new Tracker();
    const configFile = join(cluster.dir, 'weft.yaml');
    writeFileSync(configFile, [
      'resolver:',
      '  type: local',
      `  local: { path: ${JSON.stringify(cluster.registry)}, ttl: 2s, refresh: 100ms }`,
      'actors: { callTimeout: 3s, fenceTimeout: 1s, lockDelay: 4500ms, leaveLinger: 300ms }',
      'timeouts: { shutdown: 3s }',
      '',
    ].join('\n'));
    const start = async (name: string): Promise<{ app: ActorApp; proc: NodeProcess }> => {
      const app = await startActorApp(name, tracker);
      apps.push(app);
      const proc = await procs.node(actorNodeArgs(configFile, app.port, cluster.registry));
      app.nodePort = proc.ready.http;
      return { app, proc };
    };

    const a = await start('a');
    const b = await start('b');
    const c = await start('c');
    await placementSettled([a.proc, b.proc, c.proc], 15_000);

    const live: NodeProcess[] = [a.proc, b.proc, c.proc];
    const ids = Array.from({ length: 1000 }, (_, i) => `load-${i}`);
    const counts = { calls: 0, ok: 0, failed: 0 };
    const failures = new Map<string, number>();
    let stop = false;
    /** Calls started after this instant must all succeed (the crash window is over). */
    let recoveredAt = Infinity;
    let failedAfterRecovery = 0;
    const MAX_CALLS = 40_000;
    const worker = async (w: number): Promise<void> => {
      for (let i = w; !stop && counts.calls < MAX_CALLS; i += 16) {
        const node = live[i % live.length] as NodeProcess;
        const id = ids[(i * 7919) % ids.length] as string;
        counts.calls++;
        const callStarted = Date.now();
        const fail = (key: string): void => {
          counts.failed++;
          failures.set(key, (failures.get(key) ?? 0) + 1);
          if (callStarted >= recoveredAt) failedAfterRecovery++;
        };
        try {
          const r = await fetch(`http://127.0.0.1:${node.ready.http}/v1.0/actors/Counter/${id}/method/echo`, {
            method: 'PUT', body: '{}', headers: { 'weft-timeout': '12s' }, signal: AbortSignal.timeout(15_000),
          });
          const text = await r.text();
          if (r.status === 200) counts.ok++;
          else fail(`${r.status} ${(JSON.parse(text) as { weftCode?: string }).weftCode ?? ''} @${Math.round((callStarted - started) / 1000)}s`);
        } catch (err) {
          fail(`${(err as Error).name} @${Math.round((callStarted - started) / 1000)}s`);
        }
      }
    };
    const started = Date.now();
    const workers = Array.from({ length: 16 }, (_, w) => worker(w));

    await sleep(1500);
    const d = await start('d'); // join
    live.push(d.proc);
    await sleep(2500);
    live.splice(live.indexOf(a.proc), 1); // graceful leave
    a.proc.child.kill('SIGTERM');
    expect(await exited(a.proc.child)).toBe(0);
    await sleep(2000);
    live.splice(live.indexOf(b.proc), 1); // crash
    b.proc.child.kill('SIGKILL');
    await exited(b.proc.child);
    b.app.crash();
    console.log(`events: join @1.5s, graceful leave @${Math.round((Date.now() - started - 2000) / 1000)}s, SIGKILL @${Math.round((Date.now() - started) / 1000)}s`);
    await sleep(9000); // registration expiry (2 s) + lock delay (4.5 s) + slack
    recoveredAt = Date.now();
    await sleep(3000);
    stop = true;
    await Promise.all(workers);

    console.log(`actors load over ${ids.length} ids in ${Date.now() - started} ms (join, graceful leave, SIGKILL): calls=${counts.calls} ok=${counts.ok} failed=${counts.failed} maxConcurrentActivationsPerId=${tracker.worst()} activations=${tracker.activations} deactivations=${tracker.deactivations} failedAfterRecovery=${failedAfterRecovery}`);
    if (failures.size > 0) console.log('failures by kind:', Object.fromEntries(failures));
    expect(tracker.worst()).toBe(1);
    expect(counts.calls).toBeGreaterThan(1000);
    // the graceful leaver's app had every activation deactivated
    expect(a.app.active.size).toBe(0);
    // after the crash window, calls succeed again
    expect(failedAfterRecovery).toBe(0);
  }, 120_000);
});
