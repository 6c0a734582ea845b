/**
 * Per-app state on the outbound side (retry budget, outlier detector, round-robin cursor) is
 * made for app ids that callers choose, so it must not outlive the routing snapshot's interest
 * in the app, and what no snapshot lists (actor calls' guards) is bounded.
 */
import { createServer } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { Outbound } from '../../workers/outbound.ts';
import type { InvokeTask, PeerAddress, RoutingSnapshot } from '../../workers/protocol.ts';

/** A port on 127.0.0.1 that nothing listens on (calls to it are refused at once). */
async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

function task(appId: string, routingVersion: number, target?: PeerAddress): InvokeTask {
  return {
    type: 'invoke', routingVersion, appId, namespace: 'default', callerAppId: 'caller', callerNamespace: 'default',
    method: 'm', verb: 'POST', query: '', headers: [], body: null, port: null, deadline: Date.now() + 400,
    ...(target === undefined ? {} : { target, actorType: 'T', actorId: 'a' }),
  };
}

let outbound: Outbound | undefined;
afterEach(() => outbound?.close());

describe('outbound per-app state', () => {
  it('is dropped with the apps a new routing snapshot no longer lists', async () => {
    const peer: PeerAddress = { nodeId: 'gone', address: '127.0.0.1', port: await closedPort() };
    const apps: Record<string, PeerAddress[]> = {};
    for (let i = 0; i < 20; i++) apps[`default/app-${i}`] = [peer];
    outbound = new Outbound({ tls: false });
    outbound.setSnapshot({ version: 1, apps } satisfies RoutingSnapshot);
    const results = await Promise.all(Object.keys(apps).map((_, i) => (outbound as Outbound).invoke(task(`app-${i}`, 1))));
    for (const r of results) expect(r.type).toBe('error');
    expect(outbound.trackedApps).toBe(20);

    // The main thread stopped watching all but app-0 (its routing watch for them expired).
    outbound.setSnapshot({ version: 2, apps: { 'default/app-0': [peer] } });
    expect(outbound.trackedApps).toBe(1);
    outbound.setSnapshot({ version: 3, apps: {} });
    expect(outbound.trackedApps).toBe(0);
  });

  it('keeps at most maxTrackedApps of what no snapshot lists (actor calls), the oldest going first', async () => {
    const peer: PeerAddress = { nodeId: 'gone', address: '127.0.0.1', port: await closedPort() };
    outbound = new Outbound({ tls: false, maxTrackedApps: 2 });
    for (const app of ['a1', 'a2', 'a3']) expect((await outbound.invoke(task(app, 0, peer))).type).toBe('error');
    expect(outbound.trackedApps).toBe(2);
    // a snapshot that lists none of them does not touch them: placement, not routing, names their node
    outbound.setSnapshot({ version: 1, apps: {} });
    expect(outbound.trackedApps).toBe(2);
  });
});
