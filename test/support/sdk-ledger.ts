/**
 * The SDK compatibility suite for actor state and reminders, run once per store by
 * test/compat/dapr-sdk-actor-state*.test.ts (one file each: the SDK's actor runtime is a
 * process-wide singleton, so two SDK actor servers cannot share a test file). An
 * SDK `DaprServer` app hosting an `AbstractActor` that keeps a total with `getStateManager()`
 * and registers a reminder (`registerActorReminder`, fired into `receiveReminder`), behind
 * node B; called with `ActorProxyBuilder` through node A (which hosts no actors).
 *
 * - state.sqlite: the default store beside the registry (no component file).
 * - state.postgresql: a throwaway PostgreSQL cluster, chosen by a Dapr Component in
 *   `resourcesPath` whose connection string is a secretKeyRef (environment variable).
 *   Skipped, with the reason, when the PostgreSQL server binaries are missing.
 *
 * State must outlive a deactivation and a restart of the hosting node.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
// @ts-expect-error: the polyfill's types do not resolve under NodeNext "exports" (the SDK takes its Duration)
import { Temporal } from '@js-temporal/polyfill';
import { AbstractActor, ActorId, ActorProxyBuilder, CommunicationProtocolEnum, DaprClient, DaprServer, LogLevel } from '@dapr/dapr';
import { Cluster } from './cluster.ts';
import { freePort } from './ports.ts';
import type { WeftNode } from '../../src/node.ts';

const QUIET = { level: LogLevel.Error };

interface ILedger {
  add(by: number): Promise<number>;
  total(): Promise<number>;
  remindMe(times: number): Promise<void>;
  reminded(): Promise<Array<{ n: number }>>;
}

class LedgerActor extends AbstractActor implements ILedger {
  async add(by: number): Promise<number> {
    const sm = this.getStateManager<number>();
    const [has, current] = await sm.tryGetState('total');
    const next = (has ? (current as number) : 0) + by;
    await sm.setState('total', next);
    return next;
  }

  async total(): Promise<number> {
    const [has, current] = await this.getStateManager<number>().tryGetState('total');
    return has ? (current as number) : 0;
  }

  async remindMe(times: number): Promise<void> {
    await this.registerActorReminder('ping', Temporal.Duration.from({ milliseconds: 100 }), Temporal.Duration.from({ milliseconds: 200 }), undefined, JSON.stringify({ times }));
  }

  /**
   * Each fire appends to state `fires`; the reminder unregisters itself after `times` fires.
   * The SDK reads a fire's `data` with `toString()`, so the state is registered as JSON text
   * (weft, like Dapr, sends back the JSON value registered).
   */
  override async receiveReminder(data: unknown): Promise<void> {
    const sm = this.getStateManager<Array<{ n: number }>>();
    const [, fires] = await sm.tryGetState('fires');
    const list = [...(fires ?? []), { n: (fires?.length ?? 0) + 1 }];
    await sm.setState('fires', list);
    const times = (typeof data === 'string' ? JSON.parse(data) : data) as { times: number };
    if (list.length >= times.times) await this.unregisterActorReminder('ping');
  }

  async reminded(): Promise<Array<{ n: number }>> {
    const [, fires] = await this.getStateManager<Array<{ n: number }>>().tryGetState('fires');
    return fires ?? [];
  }
}

export function sdkActorStateSuite(name: string, setup: (cluster: Cluster) => Promise<{ extra: Record<string, unknown> }>): void {
  describe(`the Dapr JS SDK's actor state and reminders through weft (${name})`, () => {
    const cluster = new Cluster();
    let a: WeftNode;
    let b: WeftNode;
    let server: DaprServer;
    let client: DaprClient;
    let sdkPort: number;
    let extra: Record<string, unknown>;

    /** Node B, on the HTTP port the SDK app was given (kept across a restart). */
    const startB = async (httpPort = 0): Promise<WeftNode> => cluster.node({ workers: 1, apps: [{ appId: 'ledger-app', appPort: sdkPort }], extra: { ...extra, http: { port: httpPort } } });

    beforeAll(async () => {
      ({ extra } = await setup(cluster));
      sdkPort = await freePort();
      a = await cluster.node({ apps: [{ appId: 'front' }], extra });
      b = await startB();
      server = new DaprServer({
        serverHost: '127.0.0.1', serverPort: String(sdkPort), communicationProtocol: CommunicationProtocolEnum.HTTP,
        clientOptions: { daprHost: '127.0.0.1', daprPort: String(b.ports.http), communicationProtocol: CommunicationProtocolEnum.HTTP, logger: QUIET },
        logger: QUIET,
      });
      await server.actor.init();
      await server.actor.registerActor(LedgerActor);
      await server.start();
      client = new DaprClient({ daprHost: '127.0.0.1', daprPort: String(a.ports.http), communicationProtocol: CommunicationProtocolEnum.HTTP, logger: QUIET });
      const end = Date.now() + 20_000;
      for (;;) {
        const r = await fetch(`http://127.0.0.1:${a.ports.http}/v1.0/actors/LedgerActor/probe/method/total`, { method: 'PUT', body: '[]' });
        if (r.status === 200) break;
        if (Date.now() > end) throw new Error(`the actor never answered: ${r.status} ${await r.text()}`);
        await new Promise((res) => setTimeout(res, 100));
      }
    }, 90_000);

    afterAll(async () => {
      await client?.stop().catch(() => {});
      await cluster.close();
      await server?.stop().catch(() => {});
      await server?.client.stop().catch(() => {});
    });

    it('keeps state with getStateManager() across calls, a deactivation and a restart of the hosting node', async () => {
      const builder = new ActorProxyBuilder<ILedger>(LedgerActor, client);
      const x = builder.build(new ActorId('x'));
      const y = builder.build(new ActorId('y'));
      expect(await x.add(2)).toBe(2);
      expect(await x.add(3)).toBe(5);
      expect(await y.add(10)).toBe(10);
      // Deactivate everything B hosts: B stops (its app gets the DELETEs); a new node takes over.
      const port = b.ports.http;
      await b.stop();
      b = await startB(port);
      const end = Date.now() + 20_000;
      let total: number | undefined;
      while (total === undefined) {
        total = await x.total().catch((err: unknown) => {
          if (Date.now() > end) throw err;
          return new Promise<undefined>((res) => setTimeout(() => res(undefined), 200));
        });
      }
      expect(total).toBe(5);
      expect(await y.total()).toBe(10);
      expect(await x.add(1)).toBe(6);
    }, 60_000);

    it('fires a reminder registered with registerActorReminder into receiveReminder until it unregisters itself', async () => {
      const builder = new ActorProxyBuilder<ILedger>(LedgerActor, client);
      const r = builder.build(new ActorId('reminded'));
      await r.remindMe(3);
      const end = Date.now() + 20_000;
      let fires: Array<{ n: number }> = [];
      while (fires.length < 3 && Date.now() < end) {
        await new Promise((res) => setTimeout(res, 100));
        fires = await r.reminded();
      }
      expect(fires).toEqual([{ n: 1 }, { n: 2 }, { n: 3 }]);
      await new Promise((res) => setTimeout(res, 600));
      expect(await r.reminded()).toHaveLength(3); // unregistered: no fourth fire
      const gone = await fetch(`http://127.0.0.1:${b.ports.http}/v1.0/actors/LedgerActor/reminded/reminders/ping`);
      expect(gone.status).toBe(404);
    }, 40_000);
  });
}

