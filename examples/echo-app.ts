/**
 * A small HTTP app for the README, the demo, the tests and the benchmark.
 *
 * - `POST|PUT|... /echo/...`  answers with the request: status 200, the body as sent, and
 *   `x-echo-method`, `x-echo-path`, `x-echo-query` and `x-echo-caller` headers.
 * - `GET /status/{code}`       answers with that status and a small JSON body.
 * - `GET /bytes/{n}`           streams n bytes of a repeating pattern.
 * - `GET /hang`                never answers (for timeout tests).
 * - `/test`, and anything else: 200 with a fixed body (the benchmark's target).
 *
 * Listens on APP_PORT (default 3000) on 127.0.0.1; prints `listening on <port>` when ready.
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';

const port = Number(process.env['APP_PORT'] ?? 3000);
const appName = process.env['ECHO_NAME'] ?? 'echo';
const OK = Buffer.from('{"ok":true}');

function echo(req: IncomingMessage, res: ServerResponse, path: string, query: string): void {
  const headers: Record<string, string> = {
    'content-type': req.headers['content-type'] ?? 'application/octet-stream',
    'x-echo-method': req.method ?? '',
    'x-echo-path': path,
    'x-echo-query': query,
    'x-echo-caller': String(req.headers['dapr-caller-app-id'] ?? ''),
    'x-echo-callee': String(req.headers['dapr-callee-app-id'] ?? ''),
    'x-echo-name': appName,
  };
  const custom = req.headers['x-custom'];
  if (typeof custom === 'string') headers['x-custom'] = custom;
  const length = req.headers['content-length'];
  if (length !== undefined) headers['content-length'] = length;
  res.writeHead(200, headers);
  req.pipe(res);
}

function bytes(res: ServerResponse, n: number): void {
  res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': String(n) });
  const chunk = Buffer.alloc(64 * 1024);
  for (let i = 0; i < chunk.length; i++) chunk[i] = i % 251;
  let left = n;
  const pump = (): void => {
    while (left > 0) {
      const part = left >= chunk.length ? chunk : chunk.subarray(0, left);
      left -= part.length;
      if (!res.write(part)) {
        res.once('drain', pump);
        return;
      }
    }
    res.end();
  };
  pump();
}

const server = createServer((req, res) => {
  const url = req.url ?? '/';
  const q = url.indexOf('?');
  const path = q === -1 ? url : url.slice(0, q);
  const query = q === -1 ? '' : url.slice(q + 1);
  if (path.startsWith('/echo')) return echo(req, res, path, query);
  if (path.startsWith('/status/')) {
    const code = Number(path.slice('/status/'.length));
    req.resume();
    res.writeHead(Number.isInteger(code) && code >= 200 && code < 600 ? code : 400, { 'content-type': 'application/json', 'x-echo-name': appName });
    res.end(JSON.stringify({ status: code, app: appName }));
    return;
  }
  if (path.startsWith('/bytes/')) {
    req.resume();
    return bytes(res, Number(path.slice('/bytes/'.length)) || 0);
  }
  if (path === '/hang') {
    req.resume();
    return;
  }
  req.resume();
  req.on('end', () => {
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': OK.length, 'x-echo-name': appName });
    res.end(OK);
  });
});
server.keepAliveTimeout = 65_000;
server.listen(port, '127.0.0.1', () => {
  const address = server.address();
  console.log(`listening on ${typeof address === 'object' && address ? address.port : port}`);
});
const stop = (): void => {
  server.close();
  server.closeAllConnections();
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
