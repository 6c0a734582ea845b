/**
 * Port claiming: a listener whose port is only a preference (weft run's Dapr defaults) claims it
 * by binding it, and takes any free port when it is taken. Regression: the README's "two nodes
 * on one host" failed every time with EADDRINUSE, because both nodes probed the same free
 * default port first and bound it later.
 */
import { createServer, type Server } from 'node:net';
import { afterAll, describe, expect, it } from 'vitest';
import { validateConfig } from '../../src/config.ts';
import { WeftNode, type Listener } from '../../src/node.ts';
import { createLogger } from '../../src/observability/log.ts';
import { Cluster } from '../support/cluster.ts';
import { freePort } from '../support/ports.ts';

const cluster = new Cluster();
const nodes: WeftNode[] = [];
const held: Server[] = [];
afterAll(async () => {
  await Promise.allSettled(nodes.map((n) => n.stop()));
  await Promise.all(held.map((s) => new Promise((r) => s.close(r))));
  await cluster.close();
});

const ALL: Listener[] = ['http', 'grpc', 'peer', 'metrics'];

async function config(ports: { http: number; grpc: number; peer: number; metrics: number }, appId: string) {
  return validateConfig({
    http: { port: ports.http }, grpc: { port: ports.grpc }, peer: { port: ports.peer }, metrics: { port: ports.metrics },
    logLevel: 'warn', apps: [{ appId }], timeouts: { shutdown: '1s' },
    resolver: { type: 'local', local: { path: cluster.registry, ttl: '5s', refresh: '100ms' } },
  }, {});
}

describe('port claiming', () => {
  it('two nodes preferring the same ports, started at once, both come up on distinct ports', async () => {
    const preferred = { http: await freePort(), grpc: await freePort(), peer: await freePort(), metrics: await freePort() };
    const started = await Promise.all(['one', 'two'].map(async (appId) => {
      const node = await WeftNode.start(await config(preferred, appId), { logger: createLogger('warn'), portFallback: ALL });
      nodes.push(node);
      return node;
    }));
    const [a, b] = started as [WeftNode, WeftNode];
    for (const key of ALL) {
      expect(a.ports[key]).not.toBe(b.ports[key]);
      // one of the two got the preferred port
      expect([a.ports[key], b.ports[key]]).toContain(preferred[key]);
    }
    expect(a.nodeId).not.toBe(b.nodeId); // node ids come from the peer port actually bound
    expect(a.nodeId.endsWith(`-${a.ports.peer}`)).toBe(true);
  });

  it('a port that was given (not a preference) and is taken fails the start, naming EADDRINUSE', async () => {
    const taken = createServer();
    held.push(taken);
    const port = await new Promise<number>((resolve) => taken.listen(0, '127.0.0.1', () => resolve((taken.address() as { port: number }).port)));
    await expect(WeftNode.start(await config({ http: port, grpc: 0, peer: 0, metrics: 0 }, 'strict'), { logger: createLogger('silent') }))
      .rejects.toThrow(/EADDRINUSE/);
    const node = await WeftNode.start(await config({ http: port, grpc: 0, peer: 0, metrics: 0 }, 'lenient'), { logger: createLogger('silent'), portFallback: ['http'] });
    nodes.push(node);
    expect(node.ports.http).not.toBe(port);
    expect(node.ports.http).toBeGreaterThan(0);
  });
});
