import { describe, expect, it } from 'vitest';
import { RoutingTable } from '../../src/routing/table.ts';
import type { AppKey, Instance, Resolver } from '../../src/routing/resolver.ts';
import type { RoutingSnapshot } from '../../workers/protocol.ts';

/** A resolver that knows `orders` (one instance) and nothing else, and counts its live watches. */
class CountingResolver implements Resolver {
  readonly scheme = 'counting';
  readonly live = new Map<string, number>();
  watches = 0;

  async start(): Promise<void> {}
  async register(): Promise<void> {}
  async deregister(): Promise<void> {}
  watch(app: AppKey, onChange: (instances: readonly Instance[]) => void): () => void {
    const key = `${app.namespace}/${app.appId}`;
    this.live.set(key, (this.live.get(key) ?? 0) + 1);
    this.watches++;
    const list: Instance[] = app.appId === 'orders' ? [{ appId: 'orders', namespace: app.namespace, nodeId: 'n1', address: '127.0.0.1', port: 1, meta: {} }] : [];
    setImmediate(() => onChange(list));
    let open = true;
    return () => {
      if (!open) return;
      open = false;
      const n = (this.live.get(key) ?? 1) - 1;
      if (n === 0) this.live.delete(key);
      else this.live.set(key, n);
    };
  }
  status() {
    return { scheme: this.scheme, healthy: true };
  }
  async close(): Promise<void> {}
}

function setup(options: { idleMs?: number; emptyIdleMs?: number; maxEmpty?: number }) {
  const resolver = new CountingResolver();
  let clock = 1_000_000;
  const published: RoutingSnapshot[] = [];
  const table = new RoutingTable(resolver, (s) => published.push(s), { ...options, now: () => clock });
  return { resolver, table, published, advance: (ms: number) => (clock += ms), sweep: () => (table as unknown as { sweep(): void }).sweep() };
}

describe('routing table: per-target state is bounded and expires', () => {
  it('publishes known apps only: unknown ids add no snapshot entries', async () => {
    const { table, published } = setup({});
    await table.route('orders', 'default');
    for (let i = 0; i < 50; i++) await table.route(`nobody-${i}`, 'default');
    expect(Object.keys(table.snapshot.apps)).toEqual(['default/orders']);
    expect(published.length).toBe(1);
    table.close();
  });

  it('watches at most maxEmpty unknown targets, dropping the least recently called', async () => {
    const { table, resolver } = setup({ maxEmpty: 10 });
    await table.route('orders', 'default');
    for (let i = 0; i < 1000; i++) await table.route(`nobody-${i}`, 'default');
    expect(resolver.watches).toBe(1001);
    expect(resolver.live.size).toBe(11);
    expect(table.watchCount).toBe(11);
    expect(resolver.live.has('default/orders')).toBe(true);
    expect(resolver.live.has('default/nobody-999')).toBe(true);
    expect(resolver.live.has('default/nobody-0')).toBe(false);
    table.close();
    expect(resolver.live.size).toBe(0);
  });

  it('unwatches idle targets: unknown ones soon, known ones later, and the snapshot forgets them', async () => {
    const { table, resolver, advance, sweep } = setup({ idleMs: 60_000, emptyIdleMs: 5_000 });
    await table.route('orders', 'default');
    await table.route('nobody', 'default');
    advance(6_000);
    sweep();
    expect([...resolver.live.keys()]).toEqual(['default/orders']);
    // a call keeps a target alive
    advance(50_000);
    expect(table.route('orders', 'default')).toBe(table.snapshot.version);
    advance(50_000);
    sweep();
    expect([...resolver.live.keys()]).toEqual(['default/orders']);
    advance(61_000);
    const before = table.snapshot.version;
    sweep();
    expect(resolver.live.size).toBe(0);
    expect(table.snapshot.version).toBe(before + 1);
    expect(table.snapshot.apps).toEqual({});
    // and comes back on the next call
    await table.route('orders', 'default');
    expect(table.instances('orders', 'default')).toHaveLength(1);
    table.close();
  });
});
