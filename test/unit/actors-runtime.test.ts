/**
 * The handoff rule of ActorRuntime under adversarial orderings: membership is delivered to
 * each node by hand, so one node can run ahead of another. What is checked is `decide` (the
 * owner check every call goes through): an id is never 'own' on two nodes at once.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { ActorHost } from '../../src/actors/host.ts';
import { ActorRuntime, RELEASED } from '../../src/actors/runtime.ts';
import { buildPlacement, lookup } from '../../src/actors/placement.ts';
import type { Instance, Resolver } from '../../src/routing/resolver.ts';

const encoder = new TextEncoder();
const CONFIG = encoder.encode(JSON.stringify({ entities: ['T'] }));

/** A registry whose listing reaches each node only when the test says so. */
class World {
  readonly meta = new Map<string, Record<string, string>>();
  readonly watchers = new Map<string, (list: readonly Instance[]) => void>();
  readonly runtimes = new Map<string, ActorRuntime>();
  /** Meta forced on top of what a node publishes (e.g. it stops announcing a type). */
  readonly overrides = new Map<string, Record<string, string>>();

  listing(): Instance[] {
    return [...this.meta.entries()].filter(([, m]) => 'actor_types' in m).sort(([a], [b]) => (a < b ? -1 : 1))
      .map(([nodeId, meta]) => ({ appId: 'app', namespace: 'default', nodeId, address: '127.0.0.1', port: 1, meta }));
  }

  /** Delivers the current listing to one node and lets its drains and acknowledgements run. */
  async deliver(nodeId: string): Promise<void> {
    this.watchers.get(nodeId)?.(this.listing());
    for (let i = 0; i < 5; i++) await new Promise((r) => setImmediate(r));
  }

  /** Added to every node's clock (a stalled process sees time jump). */
  skew = 0;

  async node(nodeId: string): Promise<ActorRuntime> {
    const host = new ActorHost({
      appId: 'app',
      app: { call: async (req) => ({ status: 200, headers: [], body: req.path === '/dapr/config' ? CONFIG : new Uint8Array(0) }) },
      owns: (type, id) => runtime.owns(type, id),
    });
    const resolver = {
      scheme: 'fake',
      watchActors: (_ns: string, cb: (list: readonly Instance[]) => void) => {
        this.watchers.set(nodeId, cb);
        return () => this.watchers.delete(nodeId);
      },
      status: () => ({ scheme: 'fake', healthy: true, lastSuccessAt: Date.now() + this.skew }),
    } as unknown as Resolver;
    const runtime: ActorRuntime = new ActorRuntime({
      nodeId, namespace: 'default', resolver, hosts: new Map([['app', host]]),
      send: async () => ({ ok: false, error: new Error('no transport') as never }),
      onMetaChange: () => this.meta.set(nodeId, { ...runtime.meta('app'), ...this.overrides.get(nodeId) }),
      lockDelayMs: 60_000, fenceMs: 60_000, now: () => Date.now() + this.skew,
    });
    runtime.start();
    await host.start();
    this.meta.set(nodeId, runtime.meta('app'));
    this.runtimes.set(nodeId, runtime);
    return runtime;
  }

  /** Ids of type T and, for each, which nodes say 'own'. */
  owners(ids: readonly string[]): Map<string, string[]> {
    const out = new Map<string, string[]>();
    for (const id of ids) out.set(id, [...this.runtimes].filter(([, r]) => r.decide('T', id) === 'own').map(([n]) => n));
    return out;
  }

  assertNoDouble(ids: readonly string[]): void {
    for (const [id, who] of this.owners(ids)) expect(who.length, `${id} owned by ${who.join(',')}`).toBeLessThanOrEqual(1);
  }

  async close(): Promise<void> {
    await Promise.all([...this.runtimes.values()].map((r) => r.close()));
  }
}

const worlds: World[] = [];
afterEach(async () => {
  await Promise.all(worlds.splice(0).map((w) => w.close()));
});

function member(nodeId: string): { nodeId: string; address: string; port: number; actorTypes: string[] } {
  return { nodeId, address: '127.0.0.1', port: 1, actorTypes: ['T'] };
}

const IDS = Array.from({ length: 300 }, (_, i) => `id-${i}`);

describe('the handoff rule', () => {
  it('a joining node serves the ids it gains only once every member has acknowledged its table', async () => {
    const w = new World();
    worlds.push(w);
    await w.node('a');
    await w.node('b');
    for (let round = 0; round < 3; round++) for (const n of ['a', 'b']) await w.deliver(n);
    expect([...w.owners(IDS).values()].every((o) => o.length === 1)).toBe(true);

    await w.node('c');
    const gained = IDS.filter((id) => lookup(buildPlacement(['a', 'b', 'c'].map(member), 1), 'T', id)?.nodeId === 'c');
    expect(gained.length).toBeGreaterThan(50);
    await w.deliver('c'); // c runs ahead: a and b still route to themselves
    w.assertNoDouble(IDS);
    for (const id of gained) expect(w.runtimes.get('c')?.decide('T', id)).toBe('pending');
    await w.deliver('a'); // a applies, drains, acknowledges
    await w.deliver('c');
    w.assertNoDouble(IDS);
    for (const id of gained) expect(w.runtimes.get('c')?.decide('T', id)).toBe('pending'); // b has not acknowledged
    await w.deliver('b');
    await w.deliver('c');
    for (const id of gained) expect(w.runtimes.get('c')?.decide('T', id)).toBe('own');
    w.assertNoDouble(IDS);
    expect([...w.owners(IDS).values()].every((o) => o.length === 1)).toBe(true);
  });

  it('an id that leaves and comes back before the table settles waits for the node that held it meanwhile', async () => {
    const w = new World();
    worlds.push(w);
    const n = await w.node('n');
    await w.deliver('n'); // n alone: settled, owns everything
    await w.node('o'); // o joins: some ids move n -> o
    const moving = IDS.filter((id) => lookup(buildPlacement(['n', 'o'].map(member), 1), 'T', id)?.nodeId === 'o');
    await w.deliver('n'); // n applies {n,o}, drains, acknowledges
    await w.deliver('o'); // o sees n's acknowledgement: settled, serves its ids
    for (const id of moving) expect(w.runtimes.get('o')?.decide('T', id)).toBe('own');
    // o stops hosting T (its meta says so) but has not drained yet: n must not take the ids back
    w.overrides.set('o', { actor_types: '' });
    w.meta.set('o', { ...w.meta.get('o'), actor_types: '' });
    await w.deliver('n');
    for (const id of moving) expect(n.decide('T', id)).toBe('pending');
    w.assertNoDouble(IDS);
    // o applies the table without itself, drains, acknowledges: n may serve them again
    await w.deliver('o');
    await w.deliver('n');
    for (const id of moving) expect(n.decide('T', id)).toBe('own');
    w.assertNoDouble(IDS);
  });

  it('a leaver\'s `*` settles the others\' tables, even once it is gone from the registry', async () => {
    const w = new World();
    worlds.push(w);
    await w.node('a');
    const b = await w.node('b');
    for (const x of ['a', 'b', 'a']) await w.deliver(x);
    const leaving = b.leave(0);
    await new Promise((r) => setImmediate(r));
    await leaving;
    expect(w.meta.get('b')?.['weft_placement']).toBe(RELEASED);
    await w.deliver('a');
    w.meta.delete('b'); // deregistered
    await w.deliver('a');
    for (const id of IDS) expect(w.runtimes.get('a')?.decide('T', id)).toBe('own');
    for (const id of IDS) expect(b.decide('T', id)).toBe('other');
  });

  it('a member that vanished without acknowledging counts as gone only after the lock delay', async () => {
    const w = new World();
    worlds.push(w);
    const a = await w.node('a');
    await w.node('b');
    for (const x of ['a', 'b', 'a']) await w.deliver(x);
    const fromB = IDS.filter((id) => lookup(buildPlacement(['a', 'b'].map(member), 1), 'T', id)?.nodeId === 'b');
    w.meta.delete('b'); // crashed: its registration expired
    await w.deliver('a');
    for (const id of fromB) expect(a.decide('T', id)).toBe('pending'); // lockDelay is 60 s here
  });

  it('a node whose own process stalled past the fence timeout serves nothing until a table with its new epoch settles', async () => {
    const w = new World();
    worlds.push(w);
    const a = await w.node('a');
    const b = await w.node('b');
    for (const x of ['a', 'b', 'a', 'b']) await w.deliver(x);
    const mine = IDS.filter((id) => a.decide('T', id) === 'own');
    expect(mine.length).toBeGreaterThan(50);
    const epoch = w.meta.get('a')?.['weft_epoch'];
    w.skew = 61_000; // every clock jumps: a's tick has not run for longer than fenceMs
    for (const id of mine) expect(a.decide('T', id)).toBe('other');
    await new Promise((r) => setTimeout(r, 250)); // a's tick: fence, drain, new epoch
    expect(w.meta.get('a')?.['weft_epoch']).not.toBe(epoch);
    for (const id of mine) expect(a.decide('T', id)).toBe('pending');
    await w.deliver('b'); // b sees a's new epoch: a new table, acknowledged after b's drain
    await w.deliver('a');
    for (const id of mine) expect(a.decide('T', id)).toBe('own');
    w.assertNoDouble(IDS);
    expect(b.decide('T', mine[0] as string)).toBe('other');
  });
});
