/**
 * The official Dapr JS SDK's actors through weft: an SDK `DaprServer` app hosting an actor
 * (`server.actor.registerActor`, `server.actor.init()`) behind node B, called with the SDK's
 * `ActorProxyBuilder` over HTTP through node A (which hosts no actors): A routes to B by
 * placement, B runs the call in the actor's turn over Dapr's callback protocol.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AbstractActor, ActorId, ActorProxyBuilder, CommunicationProtocolEnum, DaprClient, DaprServer, LogLevel } from '@dapr/dapr';
import { Cluster } from '../support/cluster.ts';
import { freePort } from '../support/ports.ts';
import type { WeftNode } from '../../src/node.ts';

const QUIET = { level: LogLevel.Error };


interface ICounterActor {
  increment(by: number): Promise<number>;
  whoami(): Promise<string>;
  slowAdd(by: number): Promise<number>;
}

/** Plain fields, no actor state: weft serves no state store yet. */
class CounterActor extends AbstractActor implements ICounterActor {
  private count = 0;

  async increment(by: number): Promise<number> {
    this.count += by;
    return this.count;
  }

  async whoami(): Promise<string> {
    return this.getActorId().getId();
  }

  /** Reads, waits, writes: interleaved calls would lose updates without turns. */
  async slowAdd(by: number): Promise<number> {
    const seen = this.count;
    await new Promise((r) => setTimeout(r, 20));
    this.count = seen + by;
    return this.count;
  }
}

describe('the Dapr JS SDK\'s actors through weft', () => {
  const cluster = new Cluster();
  let a: WeftNode;
  let b: WeftNode;
  let server: DaprServer;
  let client: DaprClient;

  beforeAll(async () => {
    const sdkPort = await freePort();
    a = await cluster.node({ apps: [{ appId: 'front' }] });
    b = await cluster.node({ workers: 1, apps: [{ appId: 'actor-app', appPort: sdkPort }] });
    server = new DaprServer({
      serverHost: '127.0.0.1',
      serverPort: String(sdkPort),
      communicationProtocol: CommunicationProtocolEnum.HTTP,
      clientOptions: { daprHost: '127.0.0.1', daprPort: String(b.ports.http), communicationProtocol: CommunicationProtocolEnum.HTTP, logger: QUIET },
      logger: QUIET,
    });
    await server.actor.init();
    await server.actor.registerActor(CounterActor);
    await server.start();
    client = new DaprClient({ daprHost: '127.0.0.1', daprPort: String(a.ports.http), communicationProtocol: CommunicationProtocolEnum.HTTP, logger: QUIET });
    // B reads the app's /dapr/config once it is up, announces the type, and placement settles.
    const end = Date.now() + 15_000;
    for (;;) {
      const md = (await (await fetch(`http://127.0.0.1:${a.ports.http}/v1.0/actors/CounterActor/probe/method/whoami`, { method: 'PUT', body: '[]' })).text());
      if (md.includes('probe')) break;
      if (Date.now() > end) throw new Error(`the actor never answered: ${md}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }, 60_000);

  afterAll(async () => {
    // Nodes first: B deactivates its actors in the app (DELETE) as it leaves.
    await client?.stop().catch(() => {});
    await cluster.close();
    await server?.stop().catch(() => {});
    await server?.client.stop().catch(() => {});
  });

  it('calls actor methods through ActorProxyBuilder, keeping each actor\'s own state in memory', async () => {
    const builder = new ActorProxyBuilder<ICounterActor>(CounterActor, client);
    const c1 = builder.build(new ActorId('c1'));
    const c2 = builder.build(new ActorId('c2'));
    expect(await c1.increment(2)).toBe(2);
    expect(await c1.increment(3)).toBe(5);
    expect(await c2.increment(10)).toBe(10);
    expect(await c1.whoami()).toBe('c1');
  });

  it('runs concurrent calls to one actor one at a time (no lost updates)', async () => {
    const builder = new ActorProxyBuilder<ICounterActor>(CounterActor, client);
    const actor = builder.build(new ActorId('turns'));
    const results = await Promise.all(Array.from({ length: 10 }, () => actor.slowAdd(1)));
    expect([...results].sort((x, y) => x - y)).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
  });

  it('lists the hosted type with its active count in B\'s metadata', async () => {
    const md = (await (await fetch(`http://127.0.0.1:${b.ports.http}/v1.0/metadata`)).json()) as { actors: Array<{ type: string; count: number }> };
    const entry = md.actors.find((x) => x.type === 'CounterActor');
    expect(entry?.count).toBeGreaterThanOrEqual(3);
  });
});
