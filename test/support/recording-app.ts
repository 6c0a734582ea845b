/**
 * A plain node:http app for the SDK compatibility tests: it records every request it gets
 * (method, url, headers, body) and answers by path:
 * - `/text`: 200 text/plain `got <VERB> <body>`
 * - `/empty`: 204
 * - `/teapot`: 418 `{"reason":"short and stout"}`
 * - `/status/<n>`: status n, `{"reason":"status <n> from the app"}`
 * - anything else: 200 JSON `{method, url, body, contentType}` with `x-app: plain`
 */
import type { IncomingMessage } from 'node:http';
import type { Handler } from './cluster.ts';

export interface Received {
  readonly method: string;
  readonly url: string;
  readonly headers: IncomingMessage['headers'];
  readonly body: string;
}

export function recordingHandler(received: Received[]): Handler {
  return (req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks).toString('utf8');
      received.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers, body });
      const path = (req.url ?? '/').split('?')[0] as string;
      if (path === '/text') {
        res.writeHead(200, { 'content-type': 'text/plain' });
        res.end(`got ${req.method} ${body}`);
      } else if (path === '/empty') {
        res.writeHead(204);
        res.end();
      } else if (path === '/teapot') {
        res.writeHead(418, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ reason: 'short and stout' }));
      } else if (path.startsWith('/status/')) {
        res.writeHead(Number(path.slice(8)), { 'content-type': 'application/json' });
        res.end(JSON.stringify({ reason: `status ${path.slice(8)} from the app` }));
      } else {
        res.writeHead(200, { 'content-type': 'application/json', 'x-app': 'plain' });
        res.end(JSON.stringify({ method: req.method, url: req.url, body, contentType: req.headers['content-type'] ?? null }));
      }
    });
  };
}
