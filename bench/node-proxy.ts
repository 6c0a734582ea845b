/**
 * One proxy of the benchmark's Node pair (bench/node-pair.ts): the same two-hop job as two weft
 * nodes, done the plainest fast way Node offers, with no routing, resiliency, metrics or logging.
 * It is a measuring instrument: what Node's own transports cost for weft's shape.
 *
 * - `--role a`: a `node:http` server (keep-alive) that reads each request's body whole and
 *   sends it over ONE long-lived `node:http2` session to B (TLS with a client certificate when
 *   `--cert` is given, h2c otherwise) as a stream with the method, path and the request's
 *   headers minus hop-by-hop ones, then writes B's status, headers and body back. With
 *   `--rewrite-from P --rewrite-to Q` it forwards path P (query kept) as Q and answers any
 *   other path 404 itself, as nginx A does in the benchmark.
 * - `--role b`: a `node:http2` server (with `--cert`: TLS that requires and verifies a client
 *   certificate from `--ca`) that forwards each stream to the app through an undici Pool with
 *   keep-alive, by `dispatch` as weft's app channel does (src/appchannel/http.ts), and streams
 *   the status, headers and body back.
 *
 * Failures answer 502 and never end the process. Prints `listening on <port>` once it listens
 * (port 0: any free one). Runs compiled (dist/bench/node-proxy.js, built with weft) when the
 * build is current; node-pair.ts says which.
 */
import { readFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type OutgoingHttpHeaders, type ServerResponse } from 'node:http';
import {
  connect,
  constants as h2,
  createSecureServer,
  createServer as createH2Server,
  type ClientHttp2Session,
  type IncomingHttpHeaders as H2Headers,
  type OutgoingHttpHeaders as H2OutHeaders,
  type ServerHttp2Stream,
} from 'node:http2';
import type { AddressInfo } from 'node:net';
import { parseArgs } from 'node:util';
import { Pool, type Dispatcher } from 'undici';

/** Headers of one connection (RFC 9110 §7.6.1 and HTTP/2's forbidden ones), never forwarded. */
const HOP_BY_HOP = new Set([
  'connection', 'keep-alive', 'proxy-authenticate', 'proxy-authorization', 'proxy-connection', 'te', 'trailer',
  'transfer-encoding', 'upgrade', 'host', 'http2-settings', 'expect',
]);

const { values: opts } = parseArgs({
  options: {
    role: { type: 'string' },
    port: { type: 'string', default: '0' },
    'upstream-port': { type: 'string' },
    cert: { type: 'string' },
    key: { type: 'string' },
    ca: { type: 'string' },
    'server-name': { type: 'string' },
    'rewrite-from': { type: 'string' },
    'rewrite-to': { type: 'string' },
    connections: { type: 'string', default: '128' },
  },
});
const upstreamPort = Number(opts['upstream-port']);
if ((opts.role !== 'a' && opts.role !== 'b') || !Number.isInteger(upstreamPort) || upstreamPort < 1) {
  process.stderr.write('usage: node-proxy --role a|b --upstream-port N [--port N] [--cert F --key F --ca F [--server-name S]] [--rewrite-from P --rewrite-to Q]\n');
  process.exit(2);
}
const tls = opts.cert !== undefined && opts.key !== undefined && opts.ca !== undefined
  ? { cert: readFileSync(opts.cert), key: readFileSync(opts.key), ca: readFileSync(opts.ca) }
  : null;

function listening(port: number): void {
  process.stdout.write(`listening on ${port}\n`);
}

// --- A: HTTP/1.1 in, one HTTP/2 session out ---------------------------------------------------

function roleA(): void {
  const authority = `${tls ? 'https' : 'http'}://127.0.0.1:${upstreamPort}`;
  let session: ClientHttp2Session | null = null;
  // The one session to B, opened again on the next request after it closes or fails.
  const toB = (): ClientHttp2Session => {
    if (session !== null && !session.closed && !session.destroyed) return session;
    const s = connect(authority, tls ? { ca: tls.ca, cert: tls.cert, key: tls.key, servername: opts['server-name'] } : {});
    s.on('error', () => {}); // each stream reports its own failure
    s.on('close', () => {
      if (session === s) session = null;
    });
    session = s;
    return s;
  };
  const from = opts['rewrite-from'];
  const to = opts['rewrite-to'] ?? '';

  const server = createServer({ keepAliveTimeout: 300_000, requestTimeout: 0 }, (req: IncomingMessage, res: ServerResponse) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('error', () => res.destroy());
    req.on('end', () => {
      let path = req.url ?? '/';
      if (from !== undefined) {
        const q = path.indexOf('?');
        if ((q === -1 ? path : path.slice(0, q)) !== from) {
          res.writeHead(404, { 'content-length': '0' }).end();
          return;
        }
        path = q === -1 ? to : to + path.slice(q);
      }
      const headers: H2OutHeaders = { [h2.HTTP2_HEADER_METHOD]: req.method ?? 'GET', [h2.HTTP2_HEADER_PATH]: path };
      const raw = req.rawHeaders;
      for (let i = 0; i < raw.length; i += 2) {
        const name = (raw[i] as string).toLowerCase();
        if (HOP_BY_HOP.has(name)) continue;
        const prev = headers[name];
        headers[name] = prev === undefined ? (raw[i + 1] as string) : ([] as string[]).concat(prev as string | string[], raw[i + 1] as string);
      }
      const body = chunks.length === 1 ? (chunks[0] as Buffer) : Buffer.concat(chunks);
      let stream;
      try {
        stream = toB().request(headers, { endStream: body.length === 0 });
      } catch {
        badGateway(res);
        return;
      }
      stream.on('response', (h: H2Headers) => {
        const out: OutgoingHttpHeaders = {};
        for (const name in h) if (name[0] !== ':' && !HOP_BY_HOP.has(name)) out[name] = h[name];
        const status = Number(h[h2.HTTP2_HEADER_STATUS]);
        if (!isWhole(h['content-length'])) {
          res.writeHead(status, out);
          stream.pipe(res);
          return;
        }
        // A small answer of known length is written in one go, as weft's ingress writes a whole answer.
        const parts: Buffer[] = [];
        stream.on('data', (c: Buffer) => parts.push(c));
        stream.on('end', () => res.writeHead(status, out).end(parts.length === 1 ? parts[0] : Buffer.concat(parts)));
      });
      stream.on('error', () => badGateway(res));
      // The client went away before the answer was written: so does the stream to B.
      res.on('close', () => {
        if (!res.writableFinished) stream.close(h2.NGHTTP2_CANCEL);
      });
      if (body.length > 0) stream.end(body);
    });
  });
  server.listen(Number(opts.port), '127.0.0.1', () => listening((server.address() as AddressInfo).port));
}

/** Answers of a known length up to this are collected and written whole (weft's app channel: the same limit). */
const WHOLE_ANSWER_LIMIT = 256 * 1024;

function isWhole(length: string | string[] | undefined): boolean {
  return typeof length === 'string' && Number(length) <= WHOLE_ANSWER_LIMIT;
}

function badGateway(res: ServerResponse): void {
  if (res.headersSent) res.destroy();
  else res.writeHead(502, { 'content-length': '0' }).end();
}

// --- B: HTTP/2 in, undici to the app ----------------------------------------------------------

function roleB(): void {
  const pool = new Pool(`http://127.0.0.1:${upstreamPort}`, { connections: Number(opts.connections), pipelining: 1, keepAliveTimeout: 30_000, headersTimeout: 0, bodyTimeout: 0 });
  const server = tls
    ? createSecureServer({ cert: tls.cert, key: tls.key, ca: tls.ca, requestCert: true, rejectUnauthorized: true })
    : createH2Server();
  server.on('stream', (stream: ServerHttp2Stream, headers: H2Headers) => {
    const chunks: Buffer[] = [];
    stream.on('data', (c: Buffer) => chunks.push(c));
    stream.on('error', () => {});
    stream.on('end', () => {
      const list: string[] = [];
      for (const name in headers) {
        if (name[0] === ':' || HOP_BY_HOP.has(name)) continue;
        const value = headers[name];
        if (typeof value === 'string') list.push(name, value);
        else if (value !== undefined) for (const v of value) list.push(name, v);
      }
      const body = chunks.length === 0 ? null : chunks.length === 1 ? (chunks[0] as Buffer) : Buffer.concat(chunks);
      try {
        pool.dispatch({ path: headers[h2.HTTP2_HEADER_PATH] as string, method: headers[h2.HTTP2_HEADER_METHOD] as 'GET', headers: list, body }, new ToStream(stream));
      } catch {
        failStream(stream);
      }
    });
  });
  server.on('sessionError', () => {});
  server.listen(Number(opts.port), '127.0.0.1', () => listening((server.address() as AddressInfo).port));
}

function failStream(stream: ServerHttp2Stream): void {
  if (stream.destroyed || stream.closed) return;
  if (stream.headersSent) stream.close(h2.NGHTTP2_INTERNAL_ERROR);
  else stream.respond({ [h2.HTTP2_HEADER_STATUS]: 502 }, { endStream: true });
}

/**
 * The app's answer onto the HTTP/2 stream it answers: whole when it has a known length up to
 * WHOLE_ANSWER_LIMIT (headers and body in one go, as weft's app channel collects such answers),
 * else as it comes (paused while the stream is full).
 */
class ToStream implements Dispatcher.DispatchHandler {
  private readonly stream: ServerHttp2Stream;
  private done = false;
  private head: H2OutHeaders | null = null;
  private parts: Buffer[] | null = null;

  constructor(stream: ServerHttp2Stream) {
    this.stream = stream;
  }

  onRequestStart(controller: Dispatcher.DispatchController): void {
    if (this.stream.destroyed) controller.abort(new Error('the caller went away'));
    else this.stream.once('close', () => {
      if (!this.done) controller.abort(new Error('the caller went away'));
    });
  }

  onResponseStart(_controller: Dispatcher.DispatchController, status: number, headers: Record<string, string | string[] | undefined>): void {
    if (this.stream.destroyed) return;
    const out: H2OutHeaders = { [h2.HTTP2_HEADER_STATUS]: status };
    for (const name in headers) if (!HOP_BY_HOP.has(name)) out[name] = headers[name];
    if (isWhole(headers['content-length'])) {
      this.head = out;
      this.parts = [];
    } else {
      this.stream.respond(out);
    }
  }

  onResponseData(controller: Dispatcher.DispatchController, chunk: Buffer): void {
    if (this.parts !== null) this.parts.push(chunk);
    else if (!this.stream.destroyed && !this.stream.write(chunk)) {
      controller.pause();
      this.stream.once('drain', () => controller.resume());
    }
  }

  onResponseEnd(): void {
    this.done = true;
    if (this.stream.destroyed) return;
    if (this.head === null || this.parts === null) {
      this.stream.end();
      return;
    }
    const body = this.parts.length === 1 ? (this.parts[0] as Buffer) : Buffer.concat(this.parts);
    this.stream.respond(this.head, { endStream: body.length === 0 });
    if (body.length > 0) this.stream.end(body);
  }

  onResponseError(_controller: Dispatcher.DispatchController, _err: Error): void {
    this.done = true;
    failStream(this.stream);
  }
}

// A normal exit on SIGTERM, so that Node's exit-time work (a --cpu-prof profile) is done.
process.on('SIGTERM', () => process.exit(0));
if (opts.role === 'a') roleA();
else roleB();
