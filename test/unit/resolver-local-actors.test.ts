/**
 * The local resolver's actor membership (`watchActors`): instances whose meta names actor types,
 * per namespace, delivered again when their meta changes (a placement acknowledgement).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { WeftError } from '../../src/errors.ts';
import { LocalResolver } from '../../src/routing/resolver-local.ts';
import type { Instance, Registration } from '../../src/routing/resolver.ts';

const dirs: string[] = [];
const resolvers: LocalResolver[] = [];
afterEach(async () => {
  for (const r of resolvers.splice(0)) await r.close();
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function resolver(path: string, nodeId: string): LocalResolver {
  const r = new LocalResolver({
    nodeId, options: { path, ttl: '2s', refresh: '50ms' }, log: () => {},
    configError: (field, problem) => new WeftError('WEFT_CONFIG', `${field}: ${problem}`),
  });
  resolvers.push(r);
  return r;
}

function reg(nodeId: string, appId: string, namespace: string, meta: Record<string, string>): Registration {
  return { appId, namespace, nodeId, address: '127.0.0.1', port: 1000 + Number(nodeId.slice(1)), meta };
}

async function until(fn: () => boolean, ms = 3000): Promise<void> {
  const end = Date.now() + ms;
  while (!fn()) {
    if (Date.now() > end) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe('local resolver: actor membership', () => {
  it('delivers the instances of a namespace that announce actor types, and again when their meta changes', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'weft-actors-'));
    dirs.push(dir);
    const path = join(dir, 'registry.sqlite');
    const a = resolver(path, 'n1');
    const b = resolver(path, 'n2');
    await a.start();
    await b.start();
    await a.register(reg('n1', 'bank', 'default', { actor_types: 'Account,Ledger', weft_placement: '' }));
    await b.register(reg('n2', 'bank', 'default', { actor_types: 'Account' }));
    await b.register(reg('n2', 'web', 'default', { http_port: '1' })); // hosts no actors
    await b.register(reg('n2', 'bank', 'other', { actor_types: 'Account' })); // another namespace
    let seen: readonly Instance[] = [];
    let deliveries = 0;
    const stop = a.watchActors('default', (list) => {
      seen = list;
      deliveries++;
    });
    await until(() => seen.length === 2);
    expect(seen.map((i) => [i.nodeId, i.appId, i.meta['actor_types']])).toEqual([['n1', 'bank', 'Account,Ledger'], ['n2', 'bank', 'Account']]);
    const before = deliveries;
    await b.register(reg('n2', 'bank', 'default', { actor_types: 'Account', weft_placement: '123' }));
    await until(() => seen.find((i) => i.nodeId === 'n2')?.meta['weft_placement'] === '123');
    expect(deliveries).toBeGreaterThan(before);
    await b.deregister(reg('n2', 'bank', 'default', {}));
    await until(() => seen.length === 1);
    stop();
  });
});
