/**
 * A test app hosting actor type `Counter` over Dapr's actor callback protocol, with a tracker
 * shared by every app of a test: live activations per actor id across the whole cluster
 * (+1 on the first method call of an activation, -1 on its DELETE). `maxLive` must stay 1.
 *
 * Methods: `echo` (answers `{app, id, body}`), `slow` (holds the turn `?ms`, records overlap),
 * `fail` (answers 418 with a body), `reenter` (calls itself through its node with the
 * incoming `dapr-reentrancy-id`), `arm` (registers timer `t1` through its node),
 * `timer/<name>` (timer fires, recorded), `inc` (reads state `count` through its node, waits
 * `?pauseMs`, writes count + 1 in a transaction; answers `{count}` or the node's refusal as 500
 * with its body), `count` (reads it) and `remind/<name>` (reminder fires, recorded; a reminder
 * whose data has `cancel: true` answers `X-DaprReminderCancel: true`).
 */
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';

export class Tracker {
  readonly live = new Map<string, number>();
  readonly maxLive = new Map<string, number>();
  /** Calls running at once per actor id (turns: must stay 1). */
  readonly running = new Map<string, number>();
  maxRunning = 0;
  activations = 0;
  deactivations = 0;
  readonly servedBy = new Map<string, Set<string>>();
  readonly timerFires: Array<{ id: string; name: string; body: unknown }> = [];
  readonly reminderFires: Array<{ id: string; name: string; app: string; body: unknown; at: number }> = [];
  /** Ids whose `inc` has read the state and is pausing before its write. */
  readonly pausedAfterRead = new Set<string>();
  /** State transactions the node refused (`inc`): status and the node's error body (status 0: the connection was cut). */
  readonly stateRefusals: Array<{ id: string; app: string; status: number; body: string }> = [];

  up(id: string): void {
    const n = (this.live.get(id) ?? 0) + 1;
    this.live.set(id, n);
    this.maxLive.set(id, Math.max(this.maxLive.get(id) ?? 0, n));
    this.activations++;
  }

  down(id: string): void {
    this.live.set(id, (this.live.get(id) ?? 0) - 1);
    this.deactivations++;
  }

  /** The largest number of simultaneous activations any id ever had. */
  worst(): number {
    let m = 0;
    for (const v of this.maxLive.values()) m = Math.max(m, v);
    return m;
  }
}

export interface ActorApp {
  readonly name: string;
  readonly port: number;
  /** The HTTP port of the node this app sits beside (set once the node is up). */
  nodePort: number;
  readonly active: Set<string>;
  /** The app "dies": its activations are gone (as when its process dies with its node). */
  crash(): void;
  close(): Promise<void>;
}

function read(req: IncomingMessage): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => resolve(Buffer.concat(chunks)));
    req.on('error', reject);
  });
}

export async function startActorApp(name: string, tracker: Tracker, config: Record<string, unknown> = {}): Promise<ActorApp> {
  const active = new Set<string>();
  let dead = false;
  const app: ActorApp = {
    name, port: 0, nodePort: 0, active,
    crash() {
      dead = true;
      for (const id of active) tracker.down(id);
      active.clear();
    },
    close: () => new Promise<void>((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    }),
  };
  const server: Server = createServer((req, res) => {
    void (async () => {
      const url = new URL(req.url ?? '/', 'http://x');
      const parts = url.pathname.split('/').map(decodeURIComponent);
      const body = await read(req);
      if (dead) {
        res.writeHead(503).end();
        return;
      }
      if (url.pathname === '/dapr/config') {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ entities: ['Counter'], actorIdleTimeout: '1h', drainOngoingCallTimeout: '10s', drainRebalancedActors: true, reentrancy: { enabled: true, maxStackDepth: 8 }, ...config }));
        return;
      }
      if (url.pathname === '/healthz') {
        res.writeHead(200).end();
        return;
      }
      // /actors/Counter/{id}[/method/{m...}]
      if (parts[1] !== 'actors' || parts[2] !== 'Counter') {
        res.writeHead(404).end();
        return;
      }
      const id = parts[3] as string;
      if (req.method === 'DELETE' && parts.length === 4) {
        if (active.delete(id)) tracker.down(id);
        res.writeHead(200).end();
        return;
      }
      if (req.method !== 'PUT' || parts[4] !== 'method') {
        res.writeHead(404).end();
        return;
      }
      const method = parts.slice(5).join('/');
      if (!active.has(id)) {
        active.add(id);
        tracker.up(id);
      }
      let set = tracker.servedBy.get(id);
      if (set === undefined) tracker.servedBy.set(id, (set = new Set()));
      set.add(name);
      const running = (tracker.running.get(id) ?? 0) + 1;
      tracker.running.set(id, running);
      tracker.maxRunning = Math.max(tracker.maxRunning, running);
      try {
        if (method.startsWith('timer/')) {
          tracker.timerFires.push({ id, name: method.slice(6), body: JSON.parse(body.toString() || 'null') });
          res.writeHead(200).end();
        } else if (method.startsWith('remind/')) {
          const parsed = JSON.parse(body.toString() || 'null') as { data?: { cancel?: boolean } } | null;
          tracker.reminderFires.push({ id, name: method.slice(7), app: name, body: parsed, at: Date.now() });
          res.writeHead(200, parsed?.data?.cancel === true ? { 'x-daprremindercancel': 'true' } : {}).end();
        } else if (method === 'inc' || method === 'count') {
          const base = `http://127.0.0.1:${app.nodePort}/v1.0/actors/Counter/${encodeURIComponent(id)}/state`;
          const got = await fetch(`${base}/count`);
          const text = await got.text();
          if (got.status !== 200 && got.status !== 204) {
            res.writeHead(500, { 'content-type': 'application/json' }).end(text);
            return;
          }
          const count = got.status === 204 ? 0 : Number(JSON.parse(text));
          if (method === 'count') {
            res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ count }));
            return;
          }
          const pauseMs = Number(JSON.parse(body.toString() || '{}').pauseMs ?? 0);
          if (pauseMs > 0) {
            tracker.pausedAfterRead.add(id);
            await new Promise((r) => setTimeout(r, pauseMs));
          }
          let put: Response;
          try {
            put = await fetch(base, { method: 'POST', body: JSON.stringify([{ operation: 'upsert', request: { key: 'count', value: count + 1 } }]) });
          } catch (err) {
            // The node cut the connection (status 0): the write did not land either.
            tracker.stateRefusals.push({ id, app: name, status: 0, body: String((err as { cause?: Error }).cause?.message ?? (err as Error).message) });
            res.destroy();
            return;
          }
          const putText = await put.text();
          if (put.status !== 204) {
            tracker.stateRefusals.push({ id, app: name, status: put.status, body: putText });
            res.writeHead(500, { 'content-type': 'application/json' }).end(putText);
            return;
          }
          res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ count: count + 1, app: name }));
        } else if (method === 'echo') {
          res.writeHead(200, { 'content-type': 'application/json', 'x-actor-app': name });
          res.end(JSON.stringify({ app: name, id, body: body.toString(), reentrancy: req.headers['dapr-reentrancy-id'] ?? null }));
        } else if (method === 'slow') {
          const ms = Number(JSON.parse(body.toString() || '{}').ms ?? 50);
          await new Promise((r) => setTimeout(r, ms));
          res.writeHead(200, { 'content-type': 'application/json' });
          res.end(JSON.stringify({ app: name, done: Date.now() }));
        } else if (method === 'fail') {
          res.writeHead(418, { 'content-type': 'text/plain', 'x-why': 'teapot' });
          res.end('no coffee here');
        } else if (method === 'reenter') {
          // running-- first would hide nothing: the nested call runs inside this turn.
          tracker.running.set(id, (tracker.running.get(id) ?? 1) - 1);
          const r = await fetch(`http://127.0.0.1:${app.nodePort}/v1.0/actors/Counter/${encodeURIComponent(id)}/method/echo`, {
            method: 'PUT', body: '"inner"', headers: { 'dapr-reentrancy-id': String(req.headers['dapr-reentrancy-id'] ?? '') },
          });
          tracker.running.set(id, (tracker.running.get(id) ?? 0) + 1);
          const inner = await r.text();
          res.writeHead(200, { 'content-type': 'application/json' });
          res.end(JSON.stringify({ outer: name, innerStatus: r.status, inner: JSON.parse(inner) }));
        } else if (method === 'arm') {
          const r = await fetch(`http://127.0.0.1:${app.nodePort}/v1.0/actors/Counter/${encodeURIComponent(id)}/timers/t1`, {
            method: 'POST', body: JSON.stringify({ dueTime: '0s', period: '100ms', callback: 'tick', data: { hello: 'timer' } }),
          });
          res.writeHead(r.status === 204 ? 200 : 500).end(await r.text());
        } else if (method === 'disarm') {
          const r = await fetch(`http://127.0.0.1:${app.nodePort}/v1.0/actors/Counter/${encodeURIComponent(id)}/timers/t1`, { method: 'DELETE' });
          res.writeHead(r.status === 204 ? 200 : 500).end();
        } else {
          res.writeHead(404).end('no such method');
        }
      } finally {
        tracker.running.set(id, (tracker.running.get(id) ?? 1) - 1);
      }
    })().catch((err: unknown) => {
      if (!res.headersSent) res.writeHead(500).end(String(err));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  (app as { port: number }).port = (server.address() as AddressInfo).port;
  return app;
}
