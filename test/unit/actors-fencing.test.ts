/**
 * Fencing of the actor runtime (docs/actors.md, "Crashes and partitions"): who fences, on what
 * evidence, and what a fence releases. The membership source is a hand-driven fake whose
 * status the test sets, so each case is one fact about contact.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { ActorHost } from '../../src/actors/host.ts';
import { ActorRuntime } from '../../src/actors/runtime.ts';
import type { AppCallRequest } from '../../src/actors/types.ts';
import type { Instance, Resolver, ResolverStatus } from '../../src/routing/resolver.ts';

const encoder = new TextEncoder();

interface Line { level: string; msg: string }

class Rig {
  status: ResolverStatus = { scheme: 'fake', healthy: true, lastSuccessAt: Date.now() };
  readonly logs: Line[] = [];
  readonly calls: AppCallRequest[] = [];
  deliver: (list: readonly Instance[]) => void = () => {};
  runtime!: ActorRuntime;
  host!: ActorHost;

  /** A node whose app hosts `types` (none: a caller-only node). Method calls hang until aborted. */
  async start(types: string[], fenceMs = 300): Promise<void> {
    const config = encoder.encode(JSON.stringify({ entities: types }));
    this.host = new ActorHost({
      appId: 'app',
      callTimeoutMs: 60_000,
      app: {
        call: (req) => {
          this.calls.push(req);
          if (req.path === '/dapr/config') return Promise.resolve({ status: 200, headers: [], body: config });
          if (req.verb === 'DELETE') return Promise.resolve({ status: 200, headers: [], body: new Uint8Array(0) });
          return new Promise((_, reject) => req.signal?.addEventListener('abort', () => reject(req.signal?.reason), { once: true }));
        },
      },
      owns: (type, id) => this.runtime.owns(type, id),
    });
    const resolver = {
      scheme: 'fake',
      watchActors: (_ns: string, cb: (list: readonly Instance[]) => void) => {
        this.deliver = cb;
        return () => {};
      },
      status: () => this.status,
    } as unknown as Resolver;
    this.runtime = new ActorRuntime({
      nodeId: 'a', namespace: 'default', resolver, hosts: new Map([['app', this.host]]),
      send: async () => ({ ok: false, error: new Error('no transport') as never }),
      onMetaChange: () => {},
      fenceMs,
      log: (level, msg) => this.logs.push({ level, msg }),
    });
    this.runtime.start();
    await this.host.start();
    if (types.length > 0) {
      this.deliver([{ appId: 'app', namespace: 'default', nodeId: 'a', address: '127.0.0.1', port: 1, meta: this.runtime.meta('app') }]);
    }
  }

  fenced(): boolean {
    return this.logs.some((l) => /fencing/.test(l.msg));
  }

  async close(): Promise<void> {
    await this.runtime.close();
    await this.host.close();
  }
}

const rigs: Rig[] = [];
afterEach(async () => {
  await Promise.all(rigs.splice(0).map((r) => r.close()));
});

const ticks = (n: number): Promise<void> => new Promise((r) => setTimeout(r, 200 * n + 50));

describe('actor fencing', () => {
  it('a caller-only node never fences, however long its resolver waits in a blocking query', async () => {
    const rig = new Rig();
    rigs.push(rig);
    await rig.start([]);
    // Its only exchanges with Consul are blocking queries: the last one answered long ago.
    rig.status = { scheme: 'fake', healthy: true, lastSuccessAt: Date.now() - 30_000 };
    await ticks(3);
    expect(rig.logs.filter((l) => l.level === 'warn')).toEqual([]);
  });

  it('a host fences when its lease was not renewed, even while watch answers keep coming', async () => {
    const rig = new Rig();
    rigs.push(rig);
    await rig.start(['T']);
    expect(rig.runtime.decide('T', 'x')).toBe('own');
    rig.status = { scheme: 'fake', healthy: true, lastSuccessAt: Date.now() + 60_000, renewedAt: Date.now() - 10_000 };
    await ticks(2);
    expect(rig.fenced()).toBe(true);
    expect(rig.runtime.decide('T', 'x')).toBe('other');
  });

  it('a host whose lease is fresh does not fence when the resolver is otherwise quiet', async () => {
    const rig = new Rig();
    rigs.push(rig);
    await rig.start(['T']);
    const renew = setInterval(() => {
      rig.status = { scheme: 'fake', healthy: true, lastSuccessAt: Date.now() - 30_000, renewedAt: Date.now() };
    }, 50);
    try {
      await ticks(3);
    } finally {
      clearInterval(renew);
    }
    expect(rig.fenced()).toBe(false);
    expect(rig.runtime.decide('T', 'x')).toBe('own');
  });

  it('a fence cuts the running turn at once (its caller gets WEFT_ACTOR_TIMEOUT), fails queued calls as moved and deactivates', async () => {
    const rig = new Rig();
    rigs.push(rig);
    await rig.start(['T']);
    // The app never answers this method: without the cut, the turn would hold for the 60 s call timeout.
    const running = rig.host.invoke({ type: 'T', id: 'x', method: 'slow' });
    const queued = rig.host.invoke({ type: 'T', id: 'x', method: 'next' });
    await new Promise((r) => setImmediate(r));
    expect(rig.calls.filter((c) => c.verb === 'PUT')).toHaveLength(1);
    rig.status = { scheme: 'fake', healthy: true, renewedAt: Date.now() - 10_000 };
    const [r1, r2] = await Promise.all([running, queued]);
    expect(r1.ok ? 'ok' : r1.error.code).toBe('WEFT_ACTOR_TIMEOUT');
    expect(r2.ok ? 'ok' : r2.error.code).toBe('WEFT_ACTOR_MOVED');
    expect(rig.host.isActive('T', 'x')).toBe(false);
    expect(rig.calls.filter((c) => c.verb === 'PUT')).toHaveLength(1); // the queued call never reached the app
  });
});
