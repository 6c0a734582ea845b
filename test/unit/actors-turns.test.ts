import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { ActorError } from '../../src/actors/errors.ts';
import { TurnLock } from '../../src/actors/turns.ts';
import type { TurnOptions } from '../../src/actors/turns.ts';

function lock(over: Partial<TurnOptions> = {}): TurnLock {
  return new TurnLock({ reentrancy: false, maxStackDepth: 32, turnTimeoutMs: 10_000, ...over });
}

/** A promise to settle by hand. */
function gate<T = void>(): { promise: Promise<T>; open: (v: T) => void } {
  let open!: (v: T) => void;
  const promise = new Promise<T>((r) => (open = r));
  return { promise, open };
}

function codeOf(err: unknown): string | undefined {
  return err instanceof ActorError ? err.code : undefined;
}

describe('TurnLock', () => {
  beforeEach(() => {
    vi.useFakeTimers();
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  it('runs one call at a time, in arrival order', async () => {
    const t = lock();
    const log: string[] = [];
    let inside = 0;
    const call = (name: string) => t.run(async () => {
      inside++;
      expect(inside).toBe(1);
      log.push(`start ${name}`);
      await Promise.resolve();
      await Promise.resolve();
      log.push(`end ${name}`);
      inside--;
      return name;
    });
    const results = await Promise.all(['a', 'b', 'c', 'd'].map(call));
    expect(results).toEqual(['a', 'b', 'c', 'd']);
    expect(log).toEqual(['start a', 'end a', 'start b', 'end b', 'start c', 'end c', 'start d', 'end d']);
    expect(t.busy).toBe(false);
  });

  it('goes on with the next call after a failing one', async () => {
    const t = lock();
    const a = t.run(() => Promise.reject(new Error('boom')));
    const b = t.run(async () => 'b');
    await expect(a).rejects.toThrow('boom');
    await expect(b).resolves.toBe('b');
  });

  it('lets a call with the running turn\'s reentrancy id in, and queues others', async () => {
    const t = lock({ reentrancy: true });
    const log: string[] = [];
    let other: Promise<void> | undefined;
    const outer = t.run(async () => {
      log.push('outer start');
      // A → B → A: the nested call carries the same id and must not wait for the outer one.
      other = t.run(async () => void log.push('other'), { reentrancyId: 'r2' });
      await t.run(async () => void log.push('reentered'), { reentrancyId: 'r1' });
      log.push('outer end');
    }, { reentrancyId: 'r1' });
    await outer;
    await other;
    expect(log).toEqual(['outer start', 'reentered', 'outer end', 'other']);
  });

  it('queues a same-id call when reentrancy is disabled (so a nested call would wait)', async () => {
    const t = lock({ reentrancy: false });
    const log: string[] = [];
    const g = gate();
    const outer = t.run(async () => {
      void t.run(async () => void log.push('second'), { reentrancyId: 'r1' });
      await g.promise;
      log.push('first');
    }, { reentrancyId: 'r1' });
    await Promise.resolve();
    g.open();
    await outer;
    await vi.runAllTimersAsync();
    expect(log).toEqual(['first', 'second']);
  });

  it('fails reentrant calls past maxStackDepth with WEFT_ACTOR_STACK_DEPTH', async () => {
    const t = lock({ reentrancy: true, maxStackDepth: 3 });
    let deepest = 0;
    const dive = (depth: number): Promise<number> => t.run(async () => {
      deepest = Math.max(deepest, depth);
      return depth >= 10 ? depth : dive(depth + 1);
    }, { reentrancyId: 'chain' });
    const err = await dive(1).catch((e: unknown) => e);
    expect(codeOf(err)).toBe('WEFT_ACTOR_STACK_DEPTH');
    expect(deepest).toBe(3);
    // the lock is usable afterwards
    await expect(t.run(async () => 'ok')).resolves.toBe('ok');
  });

  it('releases a stuck turn after its timeout and runs the next call', async () => {
    const t = lock({ turnTimeoutMs: 1000, waitTimeoutMs: 5000 });
    const stuck = t.run(() => new Promise(() => {}));
    const next = t.run(async () => 'next');
    const stuckResult = stuck.catch((e: unknown) => e);
    await vi.advanceTimersByTimeAsync(999);
    expect(t.busy).toBe(true);
    await vi.advanceTimersByTimeAsync(1);
    expect(codeOf(await stuckResult)).toBe('WEFT_ACTOR_TIMEOUT');
    await expect(next).resolves.toBe('next');
    expect(t.busy).toBe(false);
  });

  it('drops the late result of a released turn', async () => {
    const t = lock({ turnTimeoutMs: 100 });
    const g = gate<string>();
    const stuck = t.run(() => g.promise).catch((e: unknown) => codeOf(e));
    await vi.advanceTimersByTimeAsync(100);
    const after = t.run(async () => 'after');
    g.open('late');
    expect(await stuck).toBe('WEFT_ACTOR_TIMEOUT');
    await expect(after).resolves.toBe('after');
  });

  it('fails a call that waits past its wait timeout, without running it', async () => {
    const t = lock({ turnTimeoutMs: 10_000, waitTimeoutMs: 500 });
    const g = gate();
    const first = t.run(() => g.promise);
    let ran = false;
    const waiting = t.run(async () => void (ran = true)).catch((e: unknown) => codeOf(e));
    await vi.advanceTimersByTimeAsync(500);
    expect(await waiting).toBe('WEFT_ACTOR_TIMEOUT');
    expect(t.waiting).toBe(0);
    g.open();
    await first;
    expect(ran).toBe(false);
  });

  it('removes a waiting call whose signal aborts', async () => {
    const t = lock();
    const g = gate();
    const first = t.run(() => g.promise);
    const ac = new AbortController();
    const waiting = t.run(async () => 'never', { signal: ac.signal }).catch((e: unknown) => e);
    const third = t.run(async () => 'third');
    ac.abort(new Error('caller gone'));
    expect(((await waiting) as Error).message).toBe('caller gone');
    expect(t.waiting).toBe(1);
    g.open();
    await first;
    await expect(third).resolves.toBe('third');
  });

  it('drain waits for running and queued calls and refuses new ones as moved', async () => {
    const t = lock({ reentrancy: true });
    const g = gate();
    const done: string[] = [];
    const a = t.run(async () => {
      await g.promise;
      // a reentrant call of the running turn is still let in while draining
      await t.run(async () => void done.push('reentrant'), { reentrancyId: 'r' });
      done.push('a');
    }, { reentrancyId: 'r' });
    const b = t.run(async () => void done.push('b'));
    let drained = false;
    const drain = t.drain().then(() => void (drained = true));
    const refused = await t.run(async () => 'no').catch((e: unknown) => e);
    expect(codeOf(refused)).toBe('WEFT_ACTOR_MOVED');
    expect((refused as ActorError).retryable).toBe(true);
    await Promise.resolve();
    expect(drained).toBe(false);
    g.open();
    await Promise.all([a, b, drain]);
    expect(done).toEqual(['reentrant', 'a', 'b']);
    expect(drained).toBe(true);
  });

  it('drain of an idle lock resolves at once; abortQueued ends a bounded drain', async () => {
    await lock().drain();
    const t = lock();
    const g = gate();
    const first = t.run(() => g.promise);
    const queued = t.run(async () => 'x').catch((e: unknown) => codeOf(e));
    const drain = t.drain();
    t.abortQueued(new ActorError('WEFT_ACTOR_MOVED'));
    expect(await queued).toBe('WEFT_ACTOR_MOVED');
    g.open();
    await first;
    await drain;
  });

  it('keeps one timer however many calls wait', async () => {
    const t = lock();
    const g = gate();
    void t.run(() => g.promise);
    for (let i = 0; i < 1000; i++) void t.run(async () => i);
    expect(vi.getTimerCount()).toBe(1);
    g.open();
    await vi.runAllTimersAsync();
    expect(t.busy).toBe(false);
  });
});
