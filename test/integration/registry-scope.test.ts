/**
 * The embedded registry is one user's: nodes of two registries never route to each other, and a
 * registry directory others could write to (so they could register nodes that receive this
 * user's calls, or read the host-local CA's key beside it) is refused with a config error.
 * Regression: the default registry was shared by every user of a host, so one user's calls
 * round-robined to another user's nodes serving the same app id.
 */
import { chmodSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { request } from 'undici';
import { afterAll, describe, expect, it } from 'vitest';
import { validateConfig } from '../../src/config.ts';
import { WeftNode } from '../../src/node.ts';
import { createLogger } from '../../src/observability/log.ts';
import { Cluster, echoHandler, url } from '../support/cluster.ts';

const mine = new Cluster();
const theirs = new Cluster();
const dirs: string[] = [];
afterAll(async () => {
  await mine.close();
  await theirs.close();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

function nodeIn(dir: string) {
  return WeftNode.start(validateConfig({
    http: { port: 0 }, grpc: { port: 0 }, peer: { port: 0 }, metrics: { port: 0 }, logLevel: 'silent',
    apps: [{ appId: 'front' }],
    resolver: { type: 'local', local: { path: join(dir, 'registry.sqlite') } },
  }, {}), { logger: createLogger('silent') });
}

describe('registry scope', () => {
  it('nodes of two registries do not see each other', async () => {
    const echo = await theirs.app(echoHandler('theirs'));
    const other = await theirs.node({ apps: [{ appId: 'echo', appPort: echo.port }] });
    const peer = await theirs.node({ apps: [{ appId: 'front' }] });
    const caller = await mine.node({ apps: [{ appId: 'front' }] });
    // within their registry the app is reachable...
    let status = 0;
    for (let i = 0; i < 50 && status !== 200; i++) {
      const res = await request(url(peer, '/v1.0/invoke/echo/method/echo/x'), { method: 'POST', body: 'hi' });
      status = res.statusCode;
      await res.body.dump();
      if (status !== 200) await new Promise((r) => setTimeout(r, 100));
    }
    expect(status).toBe(200);
    // ...and from a node of another registry it does not exist
    const res = await request(url(caller, '/v1.0/invoke/echo/method/echo/x'), { method: 'POST', body: 'hi' });
    expect(res.statusCode).toBe(500);
    expect(((await res.body.json()) as { weftCode: string }).weftCode).toBe('WEFT_APP_NOT_FOUND');
    expect(other.nodeId).not.toBe(caller.nodeId);
  });

  it.each([[0o777, 'world-writable'], [0o770, 'group-writable']])('a registry directory with mode %s is refused: %s', async (mode, what) => {
    const dir = mkdtempSync(join(tmpdir(), 'weft-shared-'));
    dirs.push(dir);
    chmodSync(dir, mode);
    const started = nodeIn(dir);
    await expect(started).rejects.toMatchObject({ code: 'WEFT_CONFIG' });
    await expect(started).rejects.toThrow(`resolver.local.path: the registry directory ${dir} is ${what}`);
  });

  it('a new registry directory is created private (0700)', async () => {
    const parent = mkdtempSync(join(tmpdir(), 'weft-new-'));
    dirs.push(parent);
    const node = await nodeIn(join(parent, 'fresh', 'weft'));
    try {
      const { statSync } = await import('node:fs');
      expect(statSync(join(parent, 'fresh', 'weft')).mode & 0o777).toBe(0o700);
      expect(statSync(join(parent, 'fresh', 'weft', 'ca')).isDirectory()).toBe(true);
    } finally {
      await node.stop();
    }
  });
});
