/**
 * The HTTP API's cap on open connections (`http.maxConnections`): a client cannot hold an
 * unbounded number of them. One past the cap is answered 503 WEFT_OVERLOADED at once and
 * closed, and a request sent on it is never run; once a connection closes, a new one is taken.
 */
import { connect, type Socket } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { validateConfig } from '../../src/config.ts';
import type { WeftNode } from '../../src/node.ts';
import { Cluster, echoHandler, type TestApp } from '../support/cluster.ts';

const CAP = 3;

function open(port: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s = connect(port, '127.0.0.1', () => resolve(s));
    s.once('error', reject);
  });
}

/** Sends `request` and reads until `done(text)` holds or the connection ends. */
function exchange(s: Socket, request: string, done: (text: string) => boolean): Promise<{ text: string; ended: boolean }> {
  return new Promise((resolve) => {
    let text = '';
    const finish = (ended: boolean): void => {
      clearTimeout(timer);
      s.off('data', onData);
      resolve({ text, ended });
    };
    const onData = (d: Buffer): void => {
      text += d.toString('latin1');
      if (done(text)) finish(false);
    };
    s.on('data', onData);
    // a connection that is neither answered nor closed within 5 s is reported as it stands
    const timer = setTimeout(() => finish(false), 5000);
    s.once('end', () => finish(true));
    s.once('close', () => finish(true));
    s.on('error', () => {});
    if (request !== '') s.write(request);
  });
}

const HEALTH = 'GET /v1.0/healthz HTTP/1.1\r\nhost: weft\r\n\r\n';

describe('HTTP API: a bounded number of open connections', () => {
  const cluster = new Cluster();
  let app: TestApp;
  let node: WeftNode;
  const held: Socket[] = [];

  beforeAll(async () => {
    app = await cluster.app(echoHandler('echo'));
    node = await cluster.node({ workers: 0, apps: [{ appId: 'echo', appPort: app.port }], extra: { http: { port: 0, maxConnections: CAP } } });
  });

  afterAll(async () => {
    for (const s of held) s.destroy();
    await cluster.close();
  });

  it('answers a connection past the cap 503 WEFT_OVERLOADED, closes it, never runs its request; takes a new one once another closes', async () => {
    for (let i = 0; i < CAP; i++) {
      const s = await open(node.ports.http);
      held.push(s);
      const { text } = await exchange(s, HEALTH, (t) => t.includes('\r\n\r\n'));
      expect(text.startsWith('HTTP/1.1 204')).toBe(true);
    }
    const extra = await open(node.ports.http);
    const { text, ended } = await exchange(extra, 'POST /v1.0/invoke/echo/method/refused HTTP/1.1\r\nhost: weft\r\ncontent-length: 2\r\n\r\nhi', () => false);
    expect(ended).toBe(true);
    expect(text.startsWith('HTTP/1.1 503')).toBe(true);
    expect(text.toLowerCase()).toContain('connection: close');
    const body = JSON.parse(text.slice(text.indexOf('\r\n\r\n') + 4)) as { weftCode: string; message: string };
    expect(body.weftCode).toBe('WEFT_OVERLOADED');
    expect(body.message).toContain('http.maxConnections');
    expect(app.seen.some((r) => r.url.includes('refused'))).toBe(false);

    // One held connection closes: a new one is taken (once the node has seen the close).
    (held.shift() as Socket).destroy();
    let answer = '';
    for (let i = 0; i < 100 && !answer.startsWith('HTTP/1.1 204'); i++) {
      const s = await open(node.ports.http);
      answer = (await exchange(s, HEALTH, (t) => t.includes('\r\n\r\n'))).text;
      if (answer.startsWith('HTTP/1.1 204')) held.push(s);
      else {
        s.destroy();
        await new Promise((r) => setTimeout(r, 20));
      }
    }
    expect(answer.startsWith('HTTP/1.1 204')).toBe(true);
  });

  it('http.maxConnections is a positive integer, named when it is not', () => {
    expect(() => validateConfig({ http: { maxConnections: 0 } }, {})).toThrow('http.maxConnections');
    expect(validateConfig({}, {}).http.maxConnections).toBe(1024);
  });
});
