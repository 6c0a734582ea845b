import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { ActorError } from '../../src/actors/errors.ts';
import { ActorHost } from '../../src/actors/host.ts';
import type { ActorHostOptions, AppCallRequest, AppCallResponse, AppCaller } from '../../src/actors/host.ts';
import { WeftError } from '../../src/errors.ts';

const enc = new TextEncoder();
const dec = new TextDecoder();

function answer(status = 200, body = '', headers: string[] = []): AppCallResponse {
  return { status, headers, body: enc.encode(body) };
}

const DEFAULT_CONFIG = { entities: ['counter', 'cart'], actorIdleTimeout: '1m', actorScanInterval: '10s' };

/** An app that records every call; `handle` answers the actor calls (the config is answered from `config`). */
class FakeApp implements AppCaller {
  readonly calls: AppCallRequest[] = [];
  config: unknown = DEFAULT_CONFIG;
  handle: (req: AppCallRequest) => Promise<AppCallResponse> | AppCallResponse = () => answer(200, '{}');

  async call(req: AppCallRequest): Promise<AppCallResponse> {
    if (req.path === '/dapr/config') return answer(200, JSON.stringify(this.config));
    this.calls.push(req);
    return this.handle(req);
  }

  paths(): string[] {
    return this.calls.map((c) => `${c.verb} ${c.path}`);
  }
}

async function started(over: Partial<ActorHostOptions> = {}, config?: unknown): Promise<{ host: ActorHost; app: FakeApp }> {
  const app = new FakeApp();
  if (config !== undefined) app.config = config;
  const host = new ActorHost({ appId: 'shop', app, callTimeoutMs: 5000, newReentrancyId: () => 'rid-new', ...over });
  await host.start();
  return { host, app };
}

function headerOf(req: AppCallRequest, name: string): string | undefined {
  const i = req.headers.findIndex((h, k) => k % 2 === 0 && h === name);
  return i < 0 ? undefined : req.headers[i + 1];
}

function gate(): { promise: Promise<void>; open: () => void } {
  let open!: () => void;
  const promise = new Promise<void>((r) => (open = r));
  return { promise, open };
}

describe('ActorHost: config', () => {
  beforeEach(() => vi.useFakeTimers());
  afterEach(() => vi.useRealTimers());

  it('retries /dapr/config with backoff until the app answers', async () => {
    let attempts = 0;
    const app: AppCaller = {
      call: async () => {
        attempts++;
        if (attempts < 3) throw new WeftError('WEFT_APP_UNAVAILABLE', 'ECONNREFUSED');
        if (attempts < 4) return answer(503);
        return answer(200, JSON.stringify({ entities: ['counter'] }));
      },
    };
    const host = new ActorHost({ appId: 'shop', app, configRetry: { initialMs: 100, maxMs: 1000 } });
    const ready = host.start();
    expect(host.types).toEqual([]);
    await vi.advanceTimersByTimeAsync(100 + 200 + 400);
    const config = await ready;
    expect(attempts).toBe(4);
    expect(config.entities).toEqual(['counter']);
    expect(host.types).toEqual(['counter']);
    await host.close();
  });

  it('takes a 404 as "this app hosts no actors" and refuses actor calls before and after', async () => {
    const app: AppCaller = { call: async () => answer(404) };
    const host = new ActorHost({ appId: 'shop', app });
    const early = await host.invoke({ type: 'counter', id: 'a', method: 'm' });
    expect(!early.ok && early.error.code).toBe('WEFT_ACTOR_INSTANCE_MISSING');
    expect((await host.start()).entities).toEqual([]);
    const late = await host.invoke({ type: 'counter', id: 'a', method: 'm' });
    expect(!late.ok && late.error.code).toBe('WEFT_ACTOR_INSTANCE_MISSING');
  });

  it('close stops the retry loop', async () => {
    const app: AppCaller = { call: async () => { throw new WeftError('WEFT_APP_UNAVAILABLE'); } };
    const host = new ActorHost({ appId: 'shop', app, configRetry: { initialMs: 1000, maxMs: 1000 } });
    const ready = host.start();
    await vi.advanceTimersByTimeAsync(10);
    await host.close();
    expect((await ready).entities).toEqual([]);
  });
});

describe('ActorHost: method calls', () => {
  beforeEach(() => vi.useFakeTimers());
  afterEach(() => vi.useRealTimers());

  it('calls PUT /actors/{type}/{id}/method/{m} with the body, JSON content type by default', async () => {
    const { host, app } = await started();
    app.handle = (req) => answer(200, `got ${dec.decode(req.body ?? new Uint8Array())}`, ['content-type', 'text/plain']);
    const r = await host.invoke({ type: 'counter', id: 'a/b c', method: 'add', headers: ['x-trace', '1'], body: enc.encode('{"n":1}') });
    expect(r.ok).toBe(true);
    if (r.ok) {
      expect(r.value.status).toBe(200);
      expect(dec.decode(r.value.body)).toBe('got {"n":1}');
      expect(r.value.headers).toEqual(['content-type', 'text/plain']);
    }
    const [req] = app.calls;
    expect(req?.verb).toBe('PUT');
    expect(req?.path).toBe('/actors/counter/a%2Fb%20c/method/add');
    expect(req?.headers).toEqual(['x-trace', '1', 'content-type', 'application/json']);
    expect(dec.decode(req?.body ?? undefined)).toBe('{"n":1}');
    expect(host.isActive('counter', 'a/b c')).toBe(true);
  });

  it('keeps the caller\'s content type, and sends a reentrancy id only when the app enabled reentrancy', async () => {
    const { host, app } = await started();
    await host.invoke({ type: 'counter', id: 'a', method: 'm', headers: ['content-type', 'text/plain', 'dapr-reentrancy-id', 'x'] });
    expect(app.calls[0]?.headers).toEqual(['content-type', 'text/plain']);

    const re = await started({}, { entities: ['counter'], reentrancy: { enabled: true } });
    await re.host.invoke({ type: 'counter', id: 'a', method: 'm', reentrancyId: 'caller-rid' });
    await re.host.invoke({ type: 'counter', id: 'a', method: 'm' });
    expect(headerOf(re.app.calls[0] as AppCallRequest, 'dapr-reentrancy-id')).toBe('caller-rid');
    expect(headerOf(re.app.calls[1] as AppCallRequest, 'dapr-reentrancy-id')).toBe('rid-new');
  });

  it('answers a non-2xx from the app as WEFT_ACTOR_INVOKE_METHOD carrying the app\'s answer', async () => {
    const { host, app } = await started();
    app.handle = () => answer(500, '{"error":"ACTOR_METHOD_DOES_NOT_EXIST"}', ['content-type', 'application/json']);
    const r = await host.invoke({ type: 'counter', id: 'a', method: 'nope' });
    expect(r.ok).toBe(false);
    if (!r.ok) {
      expect(r.error.code).toBe('WEFT_ACTOR_INVOKE_METHOD');
      const app500 = (r.error as ActorError).app;
      expect(app500?.status).toBe(500);
      expect(dec.decode(app500?.body)).toContain('ACTOR_METHOD_DOES_NOT_EXIST');
      expect(r.error.toJSON().errorCode).toBe('ERR_ACTOR_INVOKE_METHOD');
    }
  });

  it('refuses unknown types and actors it does not own without calling the app', async () => {
    let own = false;
    const { host, app } = await started({ owns: () => own });
    const unknown = await host.invoke({ type: 'ghost', id: 'a', method: 'm' });
    expect(!unknown.ok && unknown.error.code).toBe('WEFT_ACTOR_INSTANCE_MISSING');
    const moved = await host.invoke({ type: 'counter', id: 'a', method: 'm' });
    expect(!moved.ok && moved.error.code).toBe('WEFT_ACTOR_MOVED');
    expect(!moved.ok && moved.error.retryable).toBe(true);
    expect(app.calls).toEqual([]);
    own = true;
    expect((await host.invoke({ type: 'counter', id: 'a', method: 'm' })).ok).toBe(true);
  });

  it('passes the app channel\'s own failure through', async () => {
    const { host, app } = await started();
    app.handle = () => { throw new WeftError('WEFT_APP_UNAVAILABLE', 'ECONNREFUSED'); };
    const r = await host.invoke({ type: 'counter', id: 'a', method: 'm' });
    expect(!r.ok && r.error.code).toBe('WEFT_APP_UNAVAILABLE');
  });

  it('runs one call at a time per actor, in order, and different actors side by side', async () => {
    const { host, app } = await started();
    const log: string[] = [];
    const gates = new Map<string, ReturnType<typeof gate>>();
    app.handle = async (req) => {
      const g = gate();
      gates.set(req.path, g);
      log.push(`start ${req.path}`);
      await g.promise;
      log.push(`end ${req.path}`);
      return answer();
    };
    const a1 = host.invoke({ type: 'counter', id: 'a', method: 'one' });
    const a2 = host.invoke({ type: 'counter', id: 'a', method: 'two' });
    const b1 = host.invoke({ type: 'counter', id: 'b', method: 'one' });
    await vi.advanceTimersByTimeAsync(0);
    expect(log).toEqual(['start /actors/counter/a/method/one', 'start /actors/counter/b/method/one']);
    expect(host.stats().pendingCalls).toBe(3);
    gates.get('/actors/counter/a/method/one')?.open();
    await vi.advanceTimersByTimeAsync(0);
    expect(log.at(-1)).toBe('start /actors/counter/a/method/two');
    gates.get('/actors/counter/a/method/two')?.open();
    gates.get('/actors/counter/b/method/one')?.open();
    await Promise.all([a1, a2, b1]);
    expect(host.stats().pendingCalls).toBe(0);
  });
});

describe('ActorHost: deactivation', () => {
  beforeEach(() => vi.useFakeTimers());
  afterEach(() => vi.useRealTimers());

  it('never sends DELETE for an actor the app never answered for', async () => {
    const { host, app } = await started();
    expect(await host.deactivate('counter', 'never-called')).toBe(false);
    app.handle = () => { throw new WeftError('WEFT_APP_UNAVAILABLE', 'ECONNREFUSED'); };
    await host.invoke({ type: 'counter', id: 'a', method: 'm' });
    expect(host.isActive('counter', 'a')).toBe(true);
    expect(await host.deactivate('counter', 'a')).toBe(true);
    expect(app.paths()).toEqual(['PUT /actors/counter/a/method/m']);
    expect(host.isActive('counter', 'a')).toBe(false);
  });

  it('sends DELETE for an actor whose first call may have reached the app without an answer', async () => {
    // The app got the call (it activated the actor) but its answer came too late: the caller's
    // deadline passed. The actor is active in the app, so moving it away needs the DELETE, and
    // settled() (what the node waits for before it acknowledges a table) must wait for it.
    const { host, app } = await started();
    app.handle = (req) => new Promise((_, reject) => {
      req.signal?.addEventListener('abort', () => reject(new WeftError('WEFT_DEADLINE_EXCEEDED', 'app shop did not answer before the deadline')));
    });
    const deadline = new AbortController();
    const call = host.invoke({ type: 'counter', id: 'late', method: 'm', signal: deadline.signal });
    await vi.advanceTimersByTimeAsync(0);
    deadline.abort();
    expect((await call).ok).toBe(false);
    // Cut off (fence) or broken after sending: in doubt as well.
    app.handle = () => { throw new WeftError('WEFT_APP_ABORTED', 'socket closed'); };
    expect((await host.invoke({ type: 'counter', id: 'broken', method: 'm' })).ok).toBe(false);
    const del = gate();
    app.handle = async (req) => {
      if (req.verb === 'DELETE') await del.promise;
      return answer();
    };
    let settled = false;
    expect(await host.drainAndDeactivate(() => true)).toBe(2);
    const done = host.settled().then(() => (settled = true));
    await vi.advanceTimersByTimeAsync(0);
    expect(app.paths().filter((p) => p.startsWith('DELETE')).sort()).toEqual(['DELETE /actors/counter/broken', 'DELETE /actors/counter/late']);
    expect(settled).toBe(false);
    del.open();
    await done;
    expect(host.isActive('counter', 'late')).toBe(false);
  });

  it('deactivates an active actor with DELETE after its calls, once', async () => {
    const { host, app } = await started();
    await host.invoke({ type: 'counter', id: 'a', method: 'm' });
    const g = gate();
    app.handle = async () => { await g.promise; return answer(); };
    const inflight = host.invoke({ type: 'counter', id: 'a', method: 'slow' });
    await vi.advanceTimersByTimeAsync(0);
    const gone = host.deactivate('counter', 'a');
    const again = host.deactivate('counter', 'a');
    await vi.advanceTimersByTimeAsync(0);
    expect(app.paths()).not.toContain('DELETE /actors/counter/a');
    g.open();
    await Promise.all([inflight, gone, again]);
    expect(app.paths().filter((p) => p.startsWith('DELETE'))).toEqual(['DELETE /actors/counter/a']);
    expect(host.stats().deactivations).toBe(1);
  });

  it('a call after a deactivation began waits for the DELETE, then activates again', async () => {
    const { host, app } = await started();
    await host.invoke({ type: 'counter', id: 'a', method: 'first' });
    const g = gate();
    app.handle = async (req) => {
      if (req.verb === 'DELETE') await g.promise;
      return answer();
    };
    const gone = host.deactivate('counter', 'a');
    const next = host.invoke({ type: 'counter', id: 'a', method: 'second' });
    await vi.advanceTimersByTimeAsync(0);
    expect(app.paths()).toEqual(['PUT /actors/counter/a/method/first', 'DELETE /actors/counter/a']);
    g.open();
    await Promise.all([gone, next]);
    expect(app.paths().at(-1)).toBe('PUT /actors/counter/a/method/second');
    expect(host.isActive('counter', 'a')).toBe(true);
  });

  it('deactivates actors idle past actorIdleTimeout on the scan, not busy or recently used ones', async () => {
    const { host, app } = await started({}, { entities: ['counter'], actorIdleTimeout: '1m', actorScanInterval: '10s', entitiesConfig: [] });
    await host.invoke({ type: 'counter', id: 'old', method: 'm' });
    await vi.advanceTimersByTimeAsync(40_000);
    await host.invoke({ type: 'counter', id: 'recent', method: 'm' });
    const g = gate();
    app.handle = async () => { await g.promise; return answer(); };
    const busy = host.invoke({ type: 'counter', id: 'busy', method: 'm' });
    await vi.advanceTimersByTimeAsync(30_000); // old: 70 s idle; recent: 30 s; busy: in a call
    expect(app.paths().filter((p) => p.startsWith('DELETE'))).toEqual(['DELETE /actors/counter/old']);
    expect(host.stats().active).toEqual({ counter: 2 });
    g.open();
    await busy;
    await host.close();
  });

  it('drainAndDeactivate lets calls in flight finish, fails the queued ones past drainOngoingCallTimeout as moved', async () => {
    const { host, app } = await started({}, { entities: ['counter'], drainOngoingCallTimeout: '2s' });
    const g = gate();
    app.handle = async (req) => {
      if (req.path.endsWith('/slow')) await g.promise;
      return answer();
    };
    await host.invoke({ type: 'counter', id: 'stay', method: 'm' });
    const slow = host.invoke({ type: 'counter', id: 'go', method: 'slow' });
    const queued = host.invoke({ type: 'counter', id: 'go', method: 'queued' });
    await vi.advanceTimersByTimeAsync(0);
    const drained = host.drainAndDeactivate((type, id) => type === 'counter' && id === 'go');
    await vi.advanceTimersByTimeAsync(2000);
    const q = await queued;
    expect(!q.ok && q.error.code).toBe('WEFT_ACTOR_MOVED');
    expect(await drained).toBe(1); // handed off while the slow call still runs
    // owns() still says yes here: a new activation, whose first call waits for the old one's DELETE
    const late = host.invoke({ type: 'counter', id: 'go', method: 'late' });
    await vi.advanceTimersByTimeAsync(0);
    expect(app.paths()).not.toContain('DELETE /actors/counter/go');
    g.open();
    expect((await slow).ok).toBe(true);
    expect((await late).ok).toBe(true);
    expect(app.paths()).toEqual([
      'PUT /actors/counter/stay/method/m', 'PUT /actors/counter/go/method/slow', 'DELETE /actors/counter/go', 'PUT /actors/counter/go/method/late',
    ]);
    expect(host.stats()).toMatchObject({ active: { counter: 2 }, rebalanced: 1, deactivations: 1 });
  });
});

describe('ActorHost: reentrancy and rebalancing', () => {
  beforeEach(() => vi.useFakeTimers());
  afterEach(() => vi.useRealTimers());

  it('lets a nested call of a draining actor\'s running turn in (A -> B -> A), refuses others as moved with the version', async () => {
    let own = true;
    const { host, app } = await started({ owns: () => own, placementVersion: () => 7 }, { entities: ['counter'], reentrancy: { enabled: true } });
    const g = gate();
    app.handle = async (req) => {
      if (req.path.endsWith('/outer')) await g.promise;
      return answer();
    };
    const outer = host.invoke({ type: 'counter', id: 'a', method: 'outer', reentrancyId: 'chain' });
    await vi.advanceTimersByTimeAsync(0);
    own = false; // the table changed: a moved away
    const drained = host.drainAndDeactivate(() => true);
    const nested = await host.invoke({ type: 'counter', id: 'a', method: 'nested', reentrancyId: 'chain' });
    expect(nested.ok).toBe(true);
    const stranger = await host.invoke({ type: 'counter', id: 'a', method: 'other', reentrancyId: 'other' });
    expect(!stranger.ok && stranger.error.code).toBe('WEFT_ACTOR_MOVED');
    expect(!stranger.ok && (stranger.error as ActorError).placementVersion).toBe(7);
    g.open();
    await outer;
    await drained;
    await vi.advanceTimersByTimeAsync(0);
    expect(app.paths()).toEqual(['PUT /actors/counter/a/method/outer', 'PUT /actors/counter/a/method/nested', 'DELETE /actors/counter/a']);
  });

  it('fails a call stuck past the call timeout, and the calls that waited as long, and frees the actor', async () => {
    const { host, app } = await started({ callTimeoutMs: 1000 });
    app.handle = async (req) => (req.path.endsWith('/stuck') ? new Promise<AppCallResponse>(() => {}) : answer());
    const stuck = host.invoke({ type: 'counter', id: 'a', method: 'stuck' });
    const early = host.invoke({ type: 'counter', id: 'a', method: 'early' });
    await vi.advanceTimersByTimeAsync(500);
    const later = host.invoke({ type: 'counter', id: 'a', method: 'later' });
    await vi.advanceTimersByTimeAsync(500);
    const s = await stuck;
    expect(!s.ok && s.error.code).toBe('WEFT_ACTOR_TIMEOUT');
    const e = await early;
    expect(!e.ok && e.error.message).toMatch(/waited longer than 1000 ms/);
    expect((await later).ok).toBe(true);
    expect(app.paths()).toEqual(['PUT /actors/counter/a/method/stuck', 'PUT /actors/counter/a/method/later']);
  });
});

describe('ActorHost: timers', () => {
  beforeEach(() => vi.useFakeTimers());
  afterEach(() => vi.useRealTimers());

  it('fires PUT .../method/timer/{name} with callback, data, dueTime and period, on schedule', async () => {
    const { host, app } = await started();
    await host.invoke({ type: 'counter', id: 'a', method: 'm' });
    const r = host.createTimer('counter', 'a', 'tick', { callback: 'onTick', data: { n: 1 }, dueTime: '1s', period: 'PT2S' });
    expect(r.ok).toBe(true);
    await vi.advanceTimersByTimeAsync(999);
    expect(app.calls).toHaveLength(1);
    await vi.advanceTimersByTimeAsync(1);
    const fire = app.calls[1] as AppCallRequest;
    expect(`${fire.verb} ${fire.path}`).toBe('PUT /actors/counter/a/method/timer/tick');
    expect(headerOf(fire, 'content-type')).toBe('application/json');
    expect(JSON.parse(dec.decode(fire.body ?? undefined))).toEqual({ callback: 'onTick', data: { n: 1 }, dueTime: '1s', period: 'PT2S' });
    await vi.advanceTimersByTimeAsync(4000);
    expect(app.calls).toHaveLength(4); // at 1 s, 3 s, 5 s
    expect(host.stats().timers).toBe(1);
    expect(host.deleteTimer('counter', 'a', 'tick')).toBe(true);
    await vi.advanceTimersByTimeAsync(10_000);
    expect(app.calls).toHaveLength(4);
    expect(host.stats().timers).toBe(0);
  });

  it('stops after the repetitions of R3/PT1S, after one fire without a period, and at its ttl', async () => {
    const { host, app } = await started();
    await host.invoke({ type: 'counter', id: 'a', method: 'm' });
    host.createTimer('counter', 'a', 'three', { callback: 'cb', period: 'R3/PT1S' });
    host.createTimer('counter', 'a', 'once', { callback: 'cb', dueTime: '500ms' });
    host.createTimer('counter', 'a', 'ttl', { callback: 'cb', dueTime: '0s', period: '1s', ttl: '2500ms' });
    await vi.advanceTimersByTimeAsync(10_000);
    const count = (name: string) => app.paths().filter((p) => p.endsWith(`/timer/${name}`)).length;
    expect(count('three')).toBe(3);
    expect(count('once')).toBe(1);
    expect(count('ttl')).toBe(3); // at 0, 1 s, 2 s
    expect(host.stats().timers).toBe(0);
  });

  it('counts a timer\'s ttl from its first fire, as Dapr does (dueTime + ttl)', async () => {
    const { host, app } = await started();
    await host.invoke({ type: 'counter', id: 'a', method: 'm' });
    // Counted from registration these would fire once, and `late` would be refused.
    expect(host.createTimer('counter', 'a', 'twice', { callback: 'cb', dueTime: '2s', period: '2s', ttl: '3s' }).ok).toBe(true);
    expect(host.createTimer('counter', 'a', 'late', { callback: 'cb', dueTime: '5s', ttl: '3s' }).ok).toBe(true);
    expect(host.createTimer('counter', 'a', 'iso', { callback: 'cb', dueTime: 'PT1S', period: 'PT1S', ttl: 'PT2.5S' }).ok).toBe(true);
    await vi.advanceTimersByTimeAsync(20_000);
    const count = (name: string) => app.paths().filter((p) => p.endsWith(`/timer/${name}`)).length;
    expect(count('twice')).toBe(2); // at 2 s and 4 s; expires at 5 s
    expect(count('late')).toBe(1); // at 5 s
    expect(count('iso')).toBe(3); // at 1, 2, 3 s; expires at 3.5 s
    expect(host.stats().timers).toBe(0);
    const past = host.createTimer('counter', 'a', 'past', { callback: 'cb', dueTime: '1s', ttl: '2000-01-01T00:00:00Z' });
    expect(!past.ok && past.error.message).toMatch(/ttl ends before the first fire/);
  });

  it('stops a timer the app refuses (unknown callback), and refuses timers it must never fire', async () => {
    const { host, app } = await started();
    const notActive = host.createTimer('counter', 'a', 't', { callback: 'cb', period: '1s' });
    expect(!notActive.ok && notActive.error.code).toBe('WEFT_ACTOR_TIMER_CREATE');
    const unknownType = host.createTimer('ghost', 'a', 't', { callback: 'cb' });
    expect(!unknownType.ok && unknownType.error.code).toBe('WEFT_ACTOR_INSTANCE_MISSING');
    await host.invoke({ type: 'counter', id: 'a', method: 'm' });
    const noCallback = host.createTimer('counter', 'a', 't', { period: '1s' });
    expect(!noCallback.ok && noCallback.error.code).toBe('WEFT_ACTOR_TIMER_CREATE');
    const badPeriod = host.createTimer('counter', 'a', 't', { callback: 'cb', period: 'often' });
    expect(!badPeriod.ok && badPeriod.error.message).toMatch(/period/);

    app.handle = (req) => (req.path.includes('/timer/') ? answer(500, 'no such method') : answer());
    expect(host.createTimer('counter', 'a', 'bad', { callback: 'missing', period: '1s' }).ok).toBe(true);
    await vi.advanceTimersByTimeAsync(5000);
    expect(app.paths().filter((p) => p.includes('/timer/'))).toHaveLength(1);
    expect(host.stats().timers).toBe(0);
  });

  it('fires inside the actor\'s turn and dies with the activation', async () => {
    const { host, app } = await started();
    await host.invoke({ type: 'counter', id: 'a', method: 'm' });
    const g = gate();
    app.handle = async (req) => {
      if (req.path.endsWith('/slow')) await g.promise;
      return answer();
    };
    const slow = host.invoke({ type: 'counter', id: 'a', method: 'slow' });
    host.createTimer('counter', 'a', 't', { callback: 'cb', period: '1s' });
    await vi.advanceTimersByTimeAsync(100);
    expect(app.paths().filter((p) => p.includes('/timer/'))).toHaveLength(0); // waiting for the turn
    g.open();
    await slow;
    await vi.advanceTimersByTimeAsync(0);
    expect(app.paths().at(-1)).toBe('PUT /actors/counter/a/method/timer/t');
    await host.deactivate('counter', 'a');
    const before = app.calls.length;
    await vi.advanceTimersByTimeAsync(5000);
    expect(app.calls.length).toBe(before);
    expect(host.stats().timers).toBe(0);
  });
});
