/**
 * Actor failover with the DEFAULT settings, through Consul (issue 9): three `weft run
 * --resolver consul` processes host 300 actor ids under a steady load; one is SIGKILLed with
 * its app. Its actors must come back on the others (checkTtl 6 s + lockDelay 6 s: about 12 s,
 * docs/actors.md) with never two activations of an id at once. The window is printed (the
 * measure; bench/ is where speed is judged), not asserted.
 *
 * Against the test server by default, or a real agent with CONSUL_BIN / CONSUL_HTTP_ADDR
 * (test/support/real-consul.ts).
 */
import { afterAll, describe, expect, it } from 'vitest';
import { initOrLoadCa } from '../../src/security/ca.ts';
import { Cluster } from '../support/cluster.ts';
import { FakeConsul } from '../support/consul-server.ts';
import { realConsul } from '../support/real-consul.ts';
import { exited, ProcessGroup, type NodeProcess } from '../support/processes.ts';
import { startActorApp, Tracker, type ActorApp } from '../support/actor-app.ts';

const real = await realConsul();
afterAll(() => real?.stop());

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

describe(`actor failover with default settings (${real === undefined ? 'consul test server' : `real consul from ${real.source}`})`, () => {
  const cluster = new Cluster();
  const procs = new ProcessGroup();
  const apps: ActorApp[] = [];
  const fake = real === undefined ? new FakeConsul() : undefined;
  afterAll(async () => {
    await procs.close();
    await Promise.all(apps.map((a) => a.close()));
    await fake?.stop();
    await cluster.close();
  });

  it('moves a SIGKILLed node\'s actors to the others, never two activations at once', async () => {
    await fake?.start();
    const address = real?.address ?? (fake as FakeConsul).address;
    initOrLoadCa(cluster.caDir, { trustDomain: 'public' });
    const tracker = new Tracker();
    const start = async (name: string): Promise<{ app: ActorApp; proc: NodeProcess }> => {
      const app = await startActorApp(name, tracker);
      apps.push(app);
      // Nothing about timing is configured: checkTtl, fenceTimeout, lockDelay are the defaults.
      const proc = await procs.node(['run', '--app-id', 'bank', '--app-port', String(app.port), '--resolver', 'consul', '--node-id', `failover-${name}-${process.pid}`,
        '--http-port', '0', '--grpc-port', '0', '--peer-port', '0', '--metrics-port', '0', '--log-level', 'error'],
      { CONSUL_HTTP_ADDR: address, WEFT_CA_DIR: cluster.caDir });
      app.nodePort = proc.ready.http;
      return { app, proc };
    };
    const nodes = [await start('a'), await start('b'), await start('c')];
    const ids = Array.from({ length: 300 }, (_, i) => `fo-${process.pid}-${i}`);
    const call = async (via: NodeProcess, id: string): Promise<number> => {
      try {
        const r = await fetch(`http://127.0.0.1:${via.ready.http}/v1.0/actors/Counter/${id}/method/echo`, {
          method: 'PUT', body: '{}', headers: { 'weft-timeout': '2s' }, signal: AbortSignal.timeout(5000),
        });
        await r.text();
        return r.status;
      } catch {
        return 0;
      }
    };
    // Every id answered once: placement settled across the three.
    const t0 = Date.now();
    for (let left = ids; left.length > 0;) {
      const statuses = await Promise.all(left.map((id, i) => call((nodes[i % 3] as { proc: NodeProcess }).proc, id)));
      left = left.filter((_, i) => statuses[i] !== 200);
      if (Date.now() - t0 > 40_000) throw new Error(`${left.length} ids never answered`);
    }
    const victim = nodes[1] as { app: ActorApp; proc: NodeProcess };
    const theirs = ids.filter((id) => victim.app.active.has(id));
    expect(theirs.length).toBeGreaterThan(20);

    // Steady load through the two survivors; then the kill.
    const survivors = [nodes[0], nodes[2]].map((n) => (n as { proc: NodeProcess }).proc);
    let stop = false;
    const firstOkAfterKill = new Map<string, number>();
    let killedAt = Infinity;
    const counts = { calls: 0, failed: 0 };
    const worker = async (w: number): Promise<void> => {
      for (let i = w; !stop; i += 8) {
        const id = theirs[i % theirs.length] as string;
        const status = await call(survivors[i % 2] as NodeProcess, id);
        counts.calls++;
        if (status !== 200) counts.failed++;
        else if (Date.now() > killedAt && !firstOkAfterKill.has(id)) firstOkAfterKill.set(id, Date.now());
        if (status !== 200) await sleep(50);
      }
    };
    const workers = Array.from({ length: 8 }, (_, w) => worker(w));
    await sleep(1000);
    killedAt = Date.now();
    victim.proc.child.kill('SIGKILL');
    await exited(victim.proc.child);
    victim.app.crash();
    while (firstOkAfterKill.size < theirs.length && Date.now() - killedAt < 60_000) await sleep(100);
    stop = true;
    await Promise.all(workers);
    const windows = [...firstOkAfterKill.values()].map((t) => t - killedAt).sort((x, y) => x - y);
    console.log(`actor failover, defaults, ${real === undefined ? 'test server' : `real consul (${real.source})`}: ${theirs.length} ids of the killed node; ` +
      `all served again ${windows.at(-1)} ms after the kill (first ${windows[0]} ms); calls=${counts.calls} failed=${counts.failed} (all for its ids, inside the window); ` +
      `maxConcurrentActivationsPerId=${tracker.worst()}`);
    expect(firstOkAfterKill.size).toBe(theirs.length);
    expect(tracker.worst()).toBe(1);
  }, 120_000);
});
