/**
 * Real weft nodes resolving each other through Consul (the test server, or a real agent when
 * CONSUL_HTTP_ADDR is set): calls reach every instance, follow a node that leaves, and keep
 * flowing with the last known instances while Consul is away.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { request } from 'undici';
import type { WeftNode } from '../../src/node.ts';
import '../../src/routing/resolver-consul.ts';
import { Cluster, echoHandler, url } from '../support/cluster.ts';
import { FakeConsul } from '../support/consul-server.ts';
import { realConsul } from '../support/real-consul.ts';

// A real agent when there is one (CONSUL_HTTP_ADDR, or a dev agent from CONSUL_BIN), else the test server.
const real = await realConsul();
afterAll(() => real?.stop());
const REAL_ADDR = real?.address;

async function callEcho(node: WeftNode, appId: string): Promise<{ status: number; name: string | undefined }> {
  const res = await request(url(node, `/v1.0/invoke/${appId}/method/echo/x`), { method: 'POST', body: 'hi' });
  await res.body.text();
  const name = res.headers['x-echo-name'];
  return { status: res.statusCode, name: typeof name === 'string' ? name : undefined };
}

async function namesSeen(node: WeftNode, appId: string, calls: number): Promise<string[]> {
  const seen = new Set<string>();
  for (let i = 0; i < calls; i++) {
    const r = await callEcho(node, appId);
    expect(r.status).toBe(200);
    if (r.name !== undefined) seen.add(r.name);
  }
  return [...seen].sort();
}

describe('weft nodes resolving through consul', () => {
  const cluster = new Cluster();
  const fake = REAL_ADDR === undefined ? new FakeConsul() : undefined;
  const appId = `echo-${Math.random().toString(36).slice(2, 8)}`;
  let front: WeftNode;
  let c: WeftNode;

  beforeAll(async () => {
    await fake?.start();
    const resolver = {
      type: 'consul',
      consul: { address: REAL_ADDR ?? fake?.address, checkTtl: '1s', deregisterCriticalServiceAfter: '1m', wait: '10s', backoff: { initial: '50ms', max: '300ms' } },
    };
    const one = await cluster.app(echoHandler('echo-1'));
    const two = await cluster.app(echoHandler('echo-2'));
    front = await cluster.node({ apps: [{ appId: 'front' }], resolver });
    await cluster.node({ apps: [{ appId, appPort: one.port }], resolver });
    c = await cluster.node({ apps: [{ appId, appPort: two.port }], resolver });
  });

  afterAll(async () => {
    await cluster.close();
    await fake?.stop();
  });

  it('routes calls to every registered instance', async () => {
    expect(await namesSeen(front, appId, 10)).toEqual(['echo-1', 'echo-2']);
    const meta = (await (await request(url(front, '/v1.0/metadata'))).body.json()) as { extended: { resolver: { scheme: string; healthy: boolean } } };
    expect(meta.extended.resolver).toMatchObject({ scheme: 'consul', healthy: true });
  });

  it('stops routing to a node that stopped (it deregisters)', async () => {
    const t0 = performance.now();
    await c.stop();
    const stopMs = performance.now() - t0;
    // Consul's answer reaches the caller's routing in milliseconds; allow a generous bound.
    const deadline = performance.now() + 5000;
    let names: string[] = [];
    while (performance.now() < deadline) {
      names = await namesSeen(front, appId, 4);
      if (names.join() === 'echo-1') break;
      await new Promise((r) => setTimeout(r, 20));
    }
    expect(names).toEqual(['echo-1']);
    console.log(`consul: routing followed a node stop (node.stop() took ${stopMs.toFixed(0)} ms)`);
  });

  // Skipped against a real agent (CONSUL_HTTP_ADDR): the test cannot stop someone else's Consul.
  it.skipIf(REAL_ADDR !== undefined)('keeps routing with the last known instances while Consul is down', async () => {
    await fake?.stop();
    await new Promise((r) => setTimeout(r, 300));
    expect(await namesSeen(front, appId, 3)).toEqual(['echo-1']);
    const meta = (await (await request(url(front, '/v1.0/metadata'))).body.json()) as { extended: { resolver: { healthy: boolean; lastError?: string } } };
    expect(meta.extended.resolver.healthy).toBe(false);
    expect(meta.extended.resolver.lastError).toMatch(/cannot reach/);
    await fake?.start();
  });
});
