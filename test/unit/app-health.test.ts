/**
 * App health checks (src/appchannel/health.ts) against a real HTTP app on port 0: Dapr's
 * semantics (2xx within the timeout is a success; `threshold` failures in a row make the app
 * unhealthy; one success makes it healthy), and the app channel refusing calls meanwhile.
 */
import { afterEach, describe, expect, it } from 'vitest';
import type { AppConfig, AppHealthConfig } from '../../src/config.ts';
import { AppHealth } from '../../src/appchannel/health.ts';
import { HttpAppChannel } from '../../src/appchannel/http.ts';
import { startApp, type TestApp } from '../support/cluster.ts';
import { freePort } from '../support/ports.ts';

let mode: 'ok' | 'fail' | 'slow' = 'ok';
const open: Array<{ close(): Promise<void> | void }> = [];
afterEach(async () => {
  mode = 'ok';
  for (const o of open.splice(0).reverse()) await o.close();
});

async function app(): Promise<TestApp> {
  const a = await startApp((req, res) => {
    req.resume();
    if (req.url !== '/healthz') return void res.end('called');
    if (mode === 'ok') return void res.writeHead(204).end();
    if (mode === 'fail') return void res.writeHead(503).end('down');
    // slow: answers after the probe timeout
    setTimeout(() => res.writeHead(200).end(), 300).unref();
  });
  open.push(a);
  return a;
}

function config(port: number, health: Partial<AppHealthConfig> = {}): AppConfig {
  return {
    appId: 'echo', namespace: 'default', appPort: port, appHost: '127.0.0.1', appProtocol: 'http', appMaxConnections: 4,
    httpPort: undefined, accessControl: undefined,
    health: { enabled: true, path: '/healthz', intervalMs: 40, timeoutMs: 100, threshold: 3, ...health },
  };
}

/** Records transitions; resolves waiters on each. */
function watcher(): { changes: boolean[]; next: () => Promise<boolean>; onChange: (h: boolean) => void } {
  const changes: boolean[] = [];
  let wake: (() => void) | undefined;
  return {
    changes,
    onChange: (h) => {
      changes.push(h);
      wake?.();
    },
    next: () => {
      const seen = changes.length;
      return new Promise((resolve) => {
        wake = () => {
          if (changes.length > seen) resolve(changes[changes.length - 1] as boolean);
        };
      });
    },
  };
}

describe('app health checks', () => {
  it('goes unhealthy only after `threshold` failures in a row, and healthy again on one success', async () => {
    const a = await app();
    const w = watcher();
    const h = new AppHealth(config(a.port, { timeoutMs: 5000 }), w.onChange); // no timeouts on a busy machine: only 503s fail
    open.push({ close: () => h.stop() });
    await h.start();
    expect(h.status().state).toBe('healthy');
    mode = 'fail';
    const down = w.next();
    expect(await down).toBe(false);
    expect(h.status()).toMatchObject({ state: 'unhealthy', failures: 3, lastError: 'GET /healthz answered 503' });
    const probes = a.seen.filter((r) => r.url === '/healthz').length;
    mode = 'ok';
    expect(await w.next()).toBe(true);
    expect(h.status()).toMatchObject({ state: 'healthy', failures: 0 });
    expect(a.seen.filter((r) => r.url === '/healthz').length).toBe(probes + 1); // one success was enough
    expect(w.changes).toEqual([false, true]);
  });

  it('counts an answer slower than the probe timeout as a failure', async () => {
    const a = await app();
    const w = watcher();
    const h = new AppHealth(config(a.port, { threshold: 1 }), w.onChange);
    open.push({ close: () => h.stop() });
    await h.start();
    mode = 'slow';
    expect(await w.next()).toBe(false);
    expect(h.status().lastError).toBe('GET /healthz: no answer within 100 ms');
  });

  it('the first probe alone decides the initial state: an app that is not up starts unhealthy', async () => {
    const h = new AppHealth(config(await freePort()), () => {});
    open.push({ close: () => h.stop() });
    await h.start();
    expect(h.status()).toMatchObject({ state: 'unhealthy', lastError: 'GET /healthz: ECONNREFUSED' });
  });

  it('the app channel refuses calls to an unhealthy app (WEFT_APP_UNHEALTHY, never sent), and a closed port is WEFT_APP_REFUSED', async () => {
    const a = await app();
    const channel = new HttpAppChannel(config(a.port, { threshold: 1, timeoutMs: 5000 }));
    open.push(channel);
    const w = watcher();
    channel.health = new AppHealth(channel.app, w.onChange);
    const checks = channel.health;
    open.push({ close: () => checks.stop() });
    await channel.health.start();
    const call = () => channel.call({ method: 'work', verb: 'POST', query: '', headers: [], body: null, signal: AbortSignal.timeout(2000) });
    expect((await call()).status).toBe(200);
    mode = 'fail';
    await w.next();
    const before = a.seen.filter((r) => r.url === '/work').length;
    await expect(call()).rejects.toMatchObject({ code: 'WEFT_APP_UNHEALTHY', retryable: true });
    expect(a.seen.filter((r) => r.url === '/work').length).toBe(before);

    const closed = new HttpAppChannel(config(await freePort()));
    open.push(closed);
    await expect(closed.call({ method: 'work', verb: 'POST', query: '', headers: [], body: null, signal: AbortSignal.timeout(2000) }))
      .rejects.toMatchObject({ code: 'WEFT_APP_REFUSED', retryable: true });
  });
});
