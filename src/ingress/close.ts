/**
 * Closing an HTTP listener without waiting on connections that carry no call.
 *
 * Node's `server.close()` closes the connections idle at that moment and then waits for every
 * other one to close by itself. Two kinds never do, so shutdown would wait its whole grace:
 * - a keep-alive connection whose call was still running at close time: once answered, it is
 *   idle again and stays open until its keep-alive timeout;
 * - a connection a client opened and sent nothing on (undici opens a spare one when a
 *   response is abandoned): Node counts it as busy, so `closeIdleConnections` skips it.
 * Here each connection is ended as soon as it is idle: at once if it carries no answer, else
 * right after its answer is sent.
 */
import type { Server, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';

const tracked = new WeakMap<Server, Set<Socket>>();

/** Starts tracking `server`'s connections (call before it listens). */
export function trackConnections(server: Server): void {
  const sockets = new Set<Socket>();
  tracked.set(server, sockets);
  server.on('connection', (socket: Socket) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
  });
}

/**
 * Stops listening; ends each connection once it carries no answer; cuts the rest after
 * `graceMs`. Resolves true when every connection ended by itself, false when some were cut.
 */
export function closeServer(server: Server, graceMs: number): Promise<boolean> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      server.closeAllConnections();
      resolve(false);
    }, graceMs);
    timer.unref();
    server.close(() => {
      clearTimeout(timer);
      resolve(true);
    });
    server.closeIdleConnections();
    for (const socket of tracked.get(server) ?? []) endWhenIdle(socket);
  });
}

function endWhenIdle(socket: Socket): void {
  // Node's own link from a connection to the answer it is writing (null between requests).
  const res = (socket as { _httpMessage?: ServerResponse | null })._httpMessage;
  if (res === undefined || res === null) {
    socket.destroy();
    return;
  }
  if (res.writableFinished) {
    socket.end();
    return;
  }
  if (!res.headersSent) res.shouldKeepAlive = false;
  res.once('finish', () => socket.end());
}
