/**
 * A tiny HTTP app hosting one actor type, `Counter`, by Dapr's actor callback protocol: the
 * benchmark's actor target (`node bench/run.ts --modes actors`), and a starting point for
 * trying weft's actors without a Dapr SDK.
 *
 * - `GET /dapr/config`                → `{"entities":["Counter"],"actorIdleTimeout":"1h","reentrancy":{"enabled":false}}`
 * - `PUT /actors/Counter/{id}/method/{m}` → 200 `{"id":"<id>","calls":<n>}`: any method counts one
 *   call for that id (its activation's state, in memory) and answers the count; the body is read
 *   and ignored
 * - `DELETE /actors/Counter/{id}`     → 200: deactivation, the id's count is forgotten
 * - `GET /healthz`                    → 200
 * - anything else                     → 404
 *
 * Listens on APP_PORT (default 3000; 0 picks a free port) on 127.0.0.1; prints
 * `listening on <port>` when ready. Behind a node: `weft run --app-id actorapp --app-port 3000`,
 * then `curl -X PUT localhost:3500/v1.0/actors/Counter/a/method/get` → `{"id":"a","calls":1}`.
 */
import { createServer, type ServerResponse } from 'node:http';

const port = Number(process.env['APP_PORT'] ?? 3000);
const CONFIG = Buffer.from(JSON.stringify({ entities: ['Counter'], actorIdleTimeout: '1h', reentrancy: { enabled: false } }));
const PREFIX = '/actors/Counter/';
/** Calls per active actor id. */
const calls = new Map<string, number>();

function answer(res: ServerResponse, status: number, body: Buffer | string | null): void {
  if (body === null) {
    res.writeHead(status, { 'content-length': 0 });
    res.end();
    return;
  }
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
  res.end(body);
}

const server = createServer((req, res) => {
  // Answer once the body is read (and dropped): no request leaves data behind on the socket.
  req.resume();
  req.once('end', () => {
    const url = req.url ?? '/';
    const q = url.indexOf('?');
    const path = q === -1 ? url : url.slice(0, q);
    if (path.startsWith(PREFIX)) {
      const rest = path.slice(PREFIX.length);
      const slash = rest.indexOf('/');
      let id: string;
      try {
        id = decodeURIComponent(slash === -1 ? rest : rest.slice(0, slash));
      } catch {
        return answer(res, 400, null); // a malformed %-escape
      }
      if (id === '') return answer(res, 404, null);
      if (slash === -1 && req.method === 'DELETE') {
        calls.delete(id);
        return answer(res, 200, null);
      }
      if (req.method === 'PUT' && rest.startsWith('/method/', slash) && rest.length > slash + 8) {
        const n = (calls.get(id) ?? 0) + 1;
        calls.set(id, n);
        return answer(res, 200, `{"id":${JSON.stringify(id)},"calls":${n}}`);
      }
      return answer(res, 404, null);
    }
    if (path === '/dapr/config' && req.method === 'GET') return answer(res, 200, CONFIG);
    if (path === '/healthz') return answer(res, 200, null);
    answer(res, 404, null);
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
