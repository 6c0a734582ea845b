/**
 * Actors end to end, three nodes in this process (real sockets, mTLS, the local registry):
 * placement across nodes, one activation per id cluster-wide, turns, reentrancy, timers,
 * pass-through of the app's errors, actor state and reminders (the default SQLite store), metadata, and a node joining
 * and another leaving gracefully under load.
 */
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { Cluster } from '../support/cluster.ts';
import { startActorApp, Tracker, type ActorApp } from '../support/actor-app.ts';
import type { WeftNode } from '../../src/node.ts';

const ACTORS = { callTimeout: '5s', fenceTimeout: '2s', lockDelay: '8s', leaveLinger: '300ms' };

const cluster = new Cluster();
const tracker = new Tracker();
const apps: ActorApp[] = [];
const nodes: WeftNode[] = [];

async function addNode(name: string, workers = 0): Promise<WeftNode> {
  const app = await startActorApp(name, tracker);
  apps.push(app);
  const node = await cluster.node({ apps: [{ appId: 'bank', appPort: app.port }], workers, extra: { actors: ACTORS } });
  app.nodePort = node.ports.http;
  nodes.push(node);
  return node;
}

function call(node: WeftNode, id: string, method: string, body = '{}', headers: Record<string, string> = {}): Promise<Response> {
  return fetch(`http://127.0.0.1:${node.ports.http}/v1.0/actors/Counter/${encodeURIComponent(id)}/method/${method}`, { method: 'PUT', body, headers });
}

/** Waits until every node's table includes all `n` nodes and is settled. */
async function settled(n: number, ms = 15_000): Promise<void> {
  const end = Date.now() + ms;
  for (;;) {
    const ok = await Promise.all(nodes.filter((x) => x.ready).map(async (node) => {
      const text = await (await fetch(`http://127.0.0.1:${node.ports.metrics}/metrics`)).text();
      return /weft_actor_placement_settled\{[^}]*\} 1/.test(text);
    }));
    const md = await Promise.all(nodes.filter((x) => x.ready).map((x) => x.metadata()));
    if (ok.every(Boolean) && md.length === n) return;
    if (Date.now() > end) throw new Error('placement did not settle');
    await new Promise((r) => setTimeout(r, 100));
  }
}

beforeAll(async () => {
  await addNode('a');
  await addNode('b', 1);
  await addNode('c');
  await settled(3);
  // every node sees all three members
  const end = Date.now() + 10_000;
  while (Date.now() < end) {
    const r = await call(nodes[0] as WeftNode, 'probe', 'echo');
    await r.text();
    const ids = Array.from({ length: 30 }, (_, i) => `warm-${i}`);
    await Promise.all(ids.map(async (id) => (await call(nodes[0] as WeftNode, id, 'echo')).text()));
    const used = new Set<string>();
    for (const id of ids) for (const a of tracker.servedBy.get(id) ?? []) used.add(a);
    if (used.size === 3) break;
    await new Promise((r) => setTimeout(r, 200));
  }
}, 60_000);

afterAll(async () => {
  await cluster.close();
  await Promise.all(apps.map((a) => a.close()));
});

describe('actors across three nodes', () => {
  it('routes each id to one owner whichever node is called, and never activates an id twice', async () => {
    const ids = Array.from({ length: 60 }, (_, i) => `acct-${i}`);
    for (const node of nodes) {
      const answers = await Promise.all(ids.map(async (id) => {
        const r = await call(node, id, 'echo', `"${id}"`);
        expect(r.status).toBe(200);
        return (await r.json()) as { app: string; id: string; body: string };
      }));
      for (const [i, a] of answers.entries()) {
        expect(a.id).toBe(ids[i]);
        expect(a.body).toBe(`"${ids[i]}"`);
      }
    }
    const owners = new Set<string>();
    for (const id of ids) {
      expect(tracker.servedBy.get(id)?.size, id).toBe(1);
      for (const a of tracker.servedBy.get(id) ?? []) owners.add(a);
    }
    expect(owners.size).toBe(3);
    expect(tracker.worst()).toBe(1);
  });

  it('serves InvokeActor over gRPC, routed like the HTTP API; an app error is a gRPC status', async () => {
    const definition = protoLoader.loadSync('dapr/proto/runtime/v1/dapr.proto', {
      includeDirs: [fileURLToPath(new URL('../../proto/', import.meta.url))], keepCase: true, longs: Number, enums: Number, defaults: true, oneofs: true,
    });
    const Dapr = (grpc.loadPackageDefinition(definition) as unknown as { dapr: { proto: { runtime: { v1: { Dapr: grpc.ServiceClientConstructor } } } } }).dapr.proto.runtime.v1.Dapr;
    const client = new Dapr(`127.0.0.1:${(nodes[2] as WeftNode).ports.grpc}`, grpc.credentials.createInsecure()) as unknown as Record<string, (req: unknown, cb: (err: grpc.ServiceError | null, res?: { data: Buffer }) => void) => void> & grpc.Client;
    const invoke = (req: unknown): Promise<{ err: grpc.ServiceError | null; res?: { data: Buffer } }> =>
      new Promise((resolve) => (client['InvokeActor'] as (r: unknown, cb: (err: grpc.ServiceError | null, res?: { data: Buffer }) => void) => void).call(client, req, (err, res) => resolve({ err, res })));
    try {
      const ok = await invoke({ actor_type: 'Counter', actor_id: 'grpc-1', method: 'echo', data: Buffer.from('"over grpc"'), metadata: {} });
      expect(ok.err).toBeNull();
      const body = JSON.parse(Buffer.from(ok.res?.data ?? []).toString()) as { id: string; body: string; app: string };
      expect(body).toMatchObject({ id: 'grpc-1', body: '"over grpc"' });
      expect(tracker.servedBy.get('grpc-1')?.size).toBe(1);
      const failed = await invoke({ actor_type: 'Counter', actor_id: 'grpc-1', method: 'fail', data: Buffer.alloc(0), metadata: {} });
      expect(failed.err?.code).toBe(grpc.status.UNKNOWN);
    } finally {
      client.close();
    }
  });

  it('runs one call at a time per actor, in turn', async () => {
    const before = tracker.maxRunning;
    const started = Date.now();
    const rs = await Promise.all(nodes.flatMap((n) => [0, 1].map(() => call(n, 'turns-1', 'slow', '{"ms":60}'))));
    for (const r of rs) expect(r.status).toBe(200);
    expect(Date.now() - started).toBeGreaterThanOrEqual(6 * 60 - 20);
    expect(Math.max(before, tracker.maxRunning)).toBe(1);
  });

  it('lets a call carrying the running turn\'s Dapr-Reentrancy-Id reenter it', async () => {
    const r = await call(nodes[1] as WeftNode, 'reentrant-1', 'reenter');
    expect(r.status).toBe(200);
    const body = (await r.json()) as { innerStatus: number; inner: { body: string; reentrancy: string | null } };
    expect(body.innerStatus).toBe(200);
    expect(body.inner.body).toBe('"inner"');
    expect(body.inner.reentrancy).toBeTruthy();
  });

  it('passes the app\'s non-2xx answer through unchanged', async () => {
    const r = await call(nodes[2] as WeftNode, 'failing-1', 'fail');
    expect(r.status).toBe(418);
    expect(r.headers.get('x-why')).toBe('teapot');
    expect(await r.text()).toBe('no coffee here');
    const missing = await call(nodes[2] as WeftNode, 'failing-1', 'nope');
    expect(missing.status).toBe(404);
  });

  it('fires timers on the owner with Dapr\'s body, and stops them on DELETE', async () => {
    const id = 'timed-1';
    const armed = await call(nodes[0] as WeftNode, id, 'arm');
    expect(armed.status).toBe(200);
    const end = Date.now() + 5000;
    while (tracker.timerFires.filter((f) => f.id === id).length < 3 && Date.now() < end) await new Promise((r) => setTimeout(r, 50));
    const fires = tracker.timerFires.filter((f) => f.id === id);
    expect(fires.length).toBeGreaterThanOrEqual(3);
    expect(fires[0]).toEqual({ id, name: 't1', body: { callback: 'tick', data: { hello: 'timer' }, dueTime: '0s', period: '100ms' } });
    expect((await call(nodes[1] as WeftNode, id, 'disarm')).status).toBe(200);
    await new Promise((r) => setTimeout(r, 250));
    const after = tracker.timerFires.filter((f) => f.id === id).length;
    await new Promise((r) => setTimeout(r, 400));
    expect(tracker.timerFires.filter((f) => f.id === id).length).toBe(after);
  });

  it('keeps actor state in the store: transactions, 204 for a missing key, ttlInSeconds, refusals', async () => {
    const [a, , c] = nodes as [WeftNode, WeftNode, WeftNode];
    for (let i = 1; i <= 3; i++) {
      const r = await call(a, 'st-1', 'inc');
      expect(await r.json()).toMatchObject({ count: i });
    }
    expect(await (await call(c, 'st-1', 'count')).json()).toEqual({ count: 3 });
    // The owner's node serves the app's own state calls.
    const owner = nodes[apps.findIndex((x) => tracker.servedBy.get('st-1')?.has(x.name))] as WeftNode;
    const base = `http://127.0.0.1:${owner.ports.http}/v1.0/actors/Counter/st-1/state`;
    expect((await fetch(`${base}/nothing`)).status).toBe(204);
    const tx = await fetch(base, { method: 'POST', body: JSON.stringify([
      { operation: 'upsert', request: { key: 'doc', value: { a: [1, 'two'] } } },
      { operation: 'upsert', request: { key: 'brief', value: 'gone soon', metadata: { ttlInSeconds: '1' } } },
      { operation: 'delete', request: { key: 'nothing' } },
    ]) });
    expect(tx.status).toBe(204);
    expect(await (await fetch(`${base}/doc`)).json()).toEqual({ a: [1, 'two'] });
    expect(await (await fetch(`${base}/brief`)).json()).toBe('gone soon');
    await new Promise((r) => setTimeout(r, 1100));
    expect((await fetch(`${base}/brief`)).status).toBe(204);
    // Malformed: 400, and nothing of it applied.
    const bad = await fetch(base, { method: 'POST', body: JSON.stringify([{ operation: 'upsert', request: { key: 'doc', value: 1 } }, { operation: 'merge', request: { key: 'x' } }]) });
    expect(bad.status).toBe(400);
    expect(((await bad.json()) as { errorCode: string; message: string })).toMatchObject({ errorCode: 'ERR_MALFORMED_REQUEST', message: expect.stringMatching(/Counter\/st-1.*merge/) });
    expect(await (await fetch(`${base}/doc`)).json()).toEqual({ a: [1, 'two'] });
    // An actor not active on the node called: Dapr's 400.
    const elsewhere = await fetch(`http://127.0.0.1:${owner.ports.http}/v1.0/actors/Counter/never-called/state`, { method: 'POST', body: '[]' });
    expect(elsewhere.status).toBe(400);
    expect(((await elsewhere.json()) as { errorCode: string }).errorCode).toBe('ERR_ACTOR_INSTANCE_MISSING');
  });

  it('fires reminders on the owner with Dapr\'s body: repetitions, X-DaprReminderCancel, GET and DELETE', async () => {
    const [a] = nodes as [WeftNode];
    await (await call(a, 'rem-1', 'echo')).text();
    const owner = nodes[apps.findIndex((x) => tracker.servedBy.get('rem-1')?.has(x.name))] as WeftNode;
    const base = `http://127.0.0.1:${owner.ports.http}/v1.0/actors/Counter/rem-1/reminders`;
    const fires = (name: string) => tracker.reminderFires.filter((f) => f.id === 'rem-1' && f.name === name);
    const until = async (what: () => boolean): Promise<void> => {
      const end = Date.now() + 15_000;
      while (!what()) {
        if (Date.now() > end) throw new Error('timed out waiting for reminder fires');
        await new Promise((r) => setTimeout(r, 50));
      }
    };
    expect((await fetch(`${base}/three`, { method: 'POST', body: JSON.stringify({ dueTime: '0s', period: 'R3/PT0.2S', data: { n: 1 } }) })).status).toBe(204);
    expect(await (await fetch(`${base}/three`)).json()).toMatchObject({ dueTime: '0s', period: 'R3/PT0.2S', data: { n: 1 } });
    expect((await fetch(`${base}/cancel`, { method: 'PUT', body: JSON.stringify({ period: '100ms', data: { cancel: true } }) })).status).toBe(204);
    await until(() => fires('three').length >= 3 && fires('cancel').length >= 1);
    await new Promise((r) => setTimeout(r, 600));
    expect(fires('three')).toHaveLength(3);
    expect(fires('cancel')).toHaveLength(1); // the app's X-DaprReminderCancel ended it
    const ownerApp = apps.find((x) => tracker.servedBy.get('rem-1')?.has(x.name))?.name;
    expect(new Set(fires('three').map((f) => f.app))).toEqual(new Set([ownerApp]));
    expect(fires('three')[0]?.body).toEqual({ data: { n: 1 }, dueTime: '0s', period: 'R3/PT0.2S' });
    for (const name of ['three', 'cancel']) {
      const gone = await fetch(`${base}/${name}`);
      expect(gone.status, name).toBe(404);
      expect(((await gone.json()) as { errorCode: string }).errorCode).toBe('ERR_ACTOR_REMINDER_NOT_FOUND');
    }
    expect((await fetch(`${base}/later`, { method: 'POST', body: JSON.stringify({ dueTime: '1h' }) })).status).toBe(204);
    expect((await fetch(`${base}/later`, { method: 'DELETE' })).status).toBe(204);
    expect((await fetch(`${base}/later`)).status).toBe(404);
    const badSchedule = await fetch(`${base}/bad`, { method: 'POST', body: JSON.stringify({ period: 'often' }) });
    expect(badSchedule.status).toBe(500);
    expect(((await badSchedule.json()) as { errorCode: string; message: string })).toMatchObject({ errorCode: 'ERR_ACTOR_REMINDER_CREATE', message: expect.stringMatching(/Counter\/rem-1 reminder bad: period/) });
    expect((await fetch(`${base}/bad`, { method: 'POST', body: '{not json' })).status).toBe(400);
  });

  it('serves state, timers and reminders over gRPC with Dapr\'s messages', async () => {
    const [a] = nodes as [WeftNode];
    await (await call(a, 'grpc-st', 'inc')).text();
    const owner = nodes[apps.findIndex((x) => tracker.servedBy.get('grpc-st')?.has(x.name))] as WeftNode;
    const definition = protoLoader.loadSync('dapr/proto/runtime/v1/dapr.proto', {
      includeDirs: [fileURLToPath(new URL('../../proto/', import.meta.url))], keepCase: true, longs: Number, enums: Number, defaults: true, oneofs: true,
    });
    const Dapr = (grpc.loadPackageDefinition(definition) as unknown as { dapr: { proto: { runtime: { v1: { Dapr: grpc.ServiceClientConstructor } } } } }).dapr.proto.runtime.v1.Dapr;
    const client = new Dapr(`127.0.0.1:${owner.ports.grpc}`, grpc.credentials.createInsecure()) as unknown as Record<string, (req: unknown, cb: (err: grpc.ServiceError | null, res?: { data?: Buffer }) => void) => void> & grpc.Client;
    const rpc = (method: string, req: unknown): Promise<{ err: grpc.ServiceError | null; res?: { data?: Buffer } }> =>
      new Promise((resolve) => (client[method] as (r: unknown, cb: (err: grpc.ServiceError | null, res?: { data?: Buffer }) => void) => void).call(client, req, (err, res) => resolve({ err, res })));
    const key = { actor_type: 'Counter', actor_id: 'grpc-st' };
    try {
      expect(Buffer.from((await rpc('GetActorState', { ...key, key: 'count' })).res?.data ?? []).toString()).toBe('1');
      const tx = await rpc('ExecuteActorStateTransaction', { ...key, operations: [
        { operationType: 'upsert', key: 'count', value: { type_url: '', value: Buffer.from('41') }, metadata: {} },
        { operationType: 'upsert', key: 'tmp', value: { type_url: '', value: Buffer.from('"x"') }, metadata: { ttlInSeconds: '60' } },
      ] });
      expect(tx.err).toBeNull();
      expect(await (await call(a, 'grpc-st', 'inc')).json()).toMatchObject({ count: 42 });
      const missing = await rpc('GetActorState', { ...key, key: 'nothing' });
      expect(missing.err).toBeNull();
      expect(missing.res?.data?.length ?? 0).toBe(0);
      const inactive = await rpc('GetActorState', { actor_type: 'Counter', actor_id: 'never-here', key: 'count' });
      expect(inactive.err?.code).toBe(grpc.status.INVALID_ARGUMENT);
      expect(inactive.err?.details).toMatch(/Counter\/never-here is not active/);
      const bad = await rpc('ExecuteActorStateTransaction', { ...key, operations: [{ operationType: 'merge', key: 'k' }] });
      expect(bad.err?.code).toBe(grpc.status.INVALID_ARGUMENT);

      expect((await rpc('RegisterActorReminder', { ...key, name: 'g1', due_time: '0s', period: 'R2/PT0.1S', data: Buffer.from('{"via":"grpc"}') })).err).toBeNull();
      expect((await rpc('RegisterActorTimer', { ...key, name: 'gt', due_time: '0s', callback: 'tick', data: Buffer.from('{"t":1}') })).err).toBeNull();
      const end = Date.now() + 10_000;
      const fires = () => tracker.reminderFires.filter((f) => f.id === 'grpc-st' && f.name === 'g1');
      while ((fires().length < 2 || !tracker.timerFires.some((f) => f.id === 'grpc-st' && f.name === 'gt')) && Date.now() < end) await new Promise((r) => setTimeout(r, 50));
      expect(fires()).toHaveLength(2);
      expect(fires()[0]?.body).toEqual({ data: { via: 'grpc' }, dueTime: '0s', period: 'R2/PT0.1S' });
      expect(tracker.timerFires.find((f) => f.id === 'grpc-st' && f.name === 'gt')?.body).toMatchObject({ callback: 'tick', data: { t: 1 } });
      expect((await rpc('RegisterActorReminder', { ...key, name: 'g2', due_time: '1h' })).err).toBeNull();
      expect((await rpc('UnregisterActorReminder', { ...key, name: 'g2' })).err).toBeNull();
      expect((await fetch(`http://127.0.0.1:${owner.ports.http}/v1.0/actors/Counter/grpc-st/reminders/g2`)).status).toBe(404);
      expect((await rpc('UnregisterActorTimer', { ...key, name: 'gt' })).err).toBeNull();
      const badReminder = await rpc('RegisterActorReminder', { ...key, name: 'g3', period: 'sometimes' });
      expect(badReminder.err?.code).toBe(grpc.status.INTERNAL);
      expect(badReminder.err?.details).toMatch(/reminder g3: period/);
    } finally {
      client.close();
    }
  });

  it('answers 400 for a type nobody hosts, and lists types in metadata', async () => {
    const none = await fetch(`http://127.0.0.1:${(nodes[0] as WeftNode).ports.http}/v1.0/actors/Nobody/1/method/m`, { method: 'PUT' });
    expect(none.status).toBe(400);
    expect(((await none.json()) as { errorCode: string }).errorCode).toBe('ERR_ACTOR_INSTANCE_MISSING');
    const md = (await (await fetch(`http://127.0.0.1:${(nodes[0] as WeftNode).ports.http}/v1.0/metadata`)).json()) as { actors: Array<{ type: string; count: number }> };
    expect(md.actors).toEqual([{ type: 'Counter', count: expect.any(Number) }]);
    expect(md.actors[0]?.count).toBeGreaterThan(0);
    const metrics = await (await fetch(`http://127.0.0.1:${(nodes[0] as WeftNode).ports.metrics}/metrics`)).text();
    for (const name of ['weft_actor_reminder_fires_total', 'weft_actor_active', 'weft_actor_pending_actor_calls', 'weft_actor_placement_version', 'weft_actor_rebalanced_total', 'weft_actor_deactivated_total', 'weft_actor_rebalances_total']) {
      expect(metrics).toContain(name);
    }
  });

  it('keeps one activation per id while a node joins and another leaves gracefully under load', async () => {
    const ids = Array.from({ length: 200 }, (_, i) => `load-${i}`);
    let calls = 0;
    let ok = 0;
    const failures: string[] = [];
    let stop = false;
    const loop = async (w: number): Promise<void> => {
      for (let i = w; !stop && calls < 20_000; i += 7) {
        const live = nodes.filter((n) => n.ready);
        const node = live[i % live.length] as WeftNode;
        const id = ids[i % ids.length] as string;
        calls++;
        try {
          const r = await call(node, id, 'echo', `"${i}"`, { 'weft-timeout': '10s' });
          const text = await r.text();
          if (r.status === 200) ok++;
          else failures.push(`${r.status} ${text}`);
        } catch (err) {
          failures.push(String(err));
        }
      }
    };
    const workers = Array.from({ length: 8 }, (_, w) => loop(w));
    await new Promise((r) => setTimeout(r, 500));
    const joined = await addNode('d');
    await new Promise((r) => setTimeout(r, 1500));
    const leaving = nodes[0] as WeftNode;
    await leaving.stop();
    await new Promise((r) => setTimeout(r, 1500));
    stop = true;
    await Promise.all(workers);
    console.log(`actors under join + graceful leave: calls=${calls} ok=${ok} failed=${failures.length} maxConcurrentActivationsPerId=${tracker.worst()}`);
    if (failures.length > 0) console.log('first failures:', failures.slice(0, 5));
    expect(joined.ready).toBe(true);
    // actors really moved: to the joiner, and away from the leaver
    const moved = ids.filter((id) => (tracker.servedBy.get(id)?.size ?? 0) > 1);
    expect(ids.some((id) => tracker.servedBy.get(id)?.has('d'))).toBe(true);
    expect(moved.length).toBeGreaterThan(0);
    console.log(`ids served by more than one app over time (handoffs): ${moved.length} of ${ids.length}`);
    expect(tracker.worst()).toBe(1);
    expect(failures).toEqual([]);
    // the leaver's app was told to deactivate everything it held
    expect((apps[0] as ActorApp).active.size).toBe(0);
  }, 60_000);
});
