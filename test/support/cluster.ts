/**
 * Test helpers: real nodes (in this process, with real piscina workers and real sockets on
 * 127.0.0.1), real HTTP apps, and an isolated registry file per test. Everything started
 * here is stopped by `Cluster.close()`.
 *
 * Nodes talk mTLS by default, as a node does with nothing configured: with the local resolver
 * they use the host-local CA beside the cluster's registry file (created by the first node);
 * with another resolver they are given that same CA directory. `plaintext: true` opts out.
 */
import { createServer, request as httpRequest, type IncomingHttpHeaders, type IncomingMessage, type OutgoingHttpHeaders, type Server, type ServerResponse } from 'node:http';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { AddressInfo } from 'node:net';
import { validateConfig } from '../../src/config.ts';
import { initOrLoadCa } from '../../src/security/ca.ts';
import { WeftNode } from '../../src/node.ts';
import { createLogger, type Logger } from '../../src/observability/log.ts';
import { HttpAppChannel } from '../../src/appchannel/http.ts';

export interface TestApp {
  readonly port: number;
  readonly server: Server;
  /** Requests seen, in order. */
  readonly seen: Array<{ method: string; url: string; headers: IncomingMessage['headers'] }>;
  close(): Promise<void>;
}

export type Handler = (req: IncomingMessage, res: ServerResponse) => void;

/** The echo behaviour of examples/echo-app.ts, in process, with a name to tell instances apart. */
export function echoHandler(name: string): Handler {
  return (req, res) => {
    const url = req.url ?? '/';
    const q = url.indexOf('?');
    const path = q === -1 ? url : url.slice(0, q);
    if (path.startsWith('/status/')) {
      req.resume();
      res.writeHead(Number(path.slice(8)), { 'content-type': 'application/json', 'x-echo-name': name });
      res.end(JSON.stringify({ status: Number(path.slice(8)), app: name }));
      return;
    }
    if (path.startsWith('/bytes/')) {
      req.resume();
      const n = Number(path.slice(7));
      res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': String(n), 'x-echo-name': name });
      const chunk = Buffer.alloc(64 * 1024, 7);
      let left = n;
      const pump = (): void => {
        while (left > 0) {
          const part = chunk.subarray(0, Math.min(left, chunk.length));
          left -= part.length;
          if (!res.write(part)) return void res.once('drain', pump);
        }
        res.end();
      };
      pump();
      return;
    }
    if (path === '/hang') {
      req.resume();
      return;
    }
    if (path === '/drain') {
      // answers only once the whole request body has arrived
      req.resume();
      req.once('end', () => res.end('drained'));
      return;
    }
    const headers: Record<string, string> = {
      'x-echo-name': name,
      'x-echo-method': req.method ?? '',
      'x-echo-path': path,
      'x-echo-query': q === -1 ? '' : url.slice(q + 1),
      'x-echo-headers': JSON.stringify(req.headers),
      'content-type': req.headers['content-type'] ?? 'application/octet-stream',
    };
    res.writeHead(200, headers);
    req.pipe(res);
  };
}

export async function startApp(handler: Handler): Promise<TestApp> {
  const seen: TestApp['seen'] = [];
  const server = createServer((req, res) => {
    seen.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers });
    handler(req, res);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as AddressInfo).port,
    server,
    seen,
    close: () => new Promise<void>((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    }),
  };
}

export interface NodeOptions {
  /** App entries as the config takes them (health check keys and the like pass through). */
  readonly apps?: ReadonlyArray<{ appId: string; appPort?: number; namespace?: string; httpPort?: number } & Record<string, unknown>>;
  readonly workers?: number;
  readonly extra?: Record<string, unknown>;
  readonly resolver?: Record<string, unknown>;
  /** No TLS between nodes (security.plaintext: true). */
  readonly plaintext?: boolean;
  /** Fields of the node's `security` section (caDir, trustDomain, workloadTtl, accessControl...). */
  readonly security?: Record<string, unknown>;
  /** The node's logger (default: warn level on stderr). */
  readonly logger?: Logger;
}

export class Cluster {
  readonly dir = mkdtempSync(join(tmpdir(), 'weft-test-'));
  readonly registry = join(this.dir, 'registry.sqlite');
  /** The CA every node of this cluster trusts (the local resolver's default location). */
  readonly caDir = join(this.dir, 'ca');
  readonly nodes: WeftNode[] = [];
  readonly apps: TestApp[] = [];

  async app(handler: Handler): Promise<TestApp> {
    const app = await startApp(handler);
    this.apps.push(app);
    return app;
  }

  async node(options: NodeOptions = {}): Promise<WeftNode> {
    const local = options.resolver === undefined || options.resolver['type'] === 'local';
    let security: Record<string, unknown> = {};
    if (options.plaintext === true) security = { plaintext: true };
    else if (!local && options.security?.['caDir'] === undefined) {
      initOrLoadCa(this.caDir, { trustDomain: 'public' });
      security = { caDir: this.caDir };
    }
    const config = validateConfig({
      http: { port: 0 },
      grpc: { port: 0 },
      peer: { port: 0 },
      metrics: { port: 0 },
      workers: options.workers ?? 0,
      logLevel: 'warn',
      apps: options.apps ?? [],
      timeouts: { shutdown: '2s' },
      maxBodySize: '16Mi',
      resolver: options.resolver ?? { type: 'local', local: { path: this.registry, ttl: '2s', refresh: '100ms' } },
      security: { ...security, ...options.security },
      ...options.extra,
    }, {});
    const node = await WeftNode.start(config, { logger: options.logger ?? createLogger('warn') });
    this.nodes.push(node);
    return node;
  }

  async close(): Promise<void> {
    await Promise.allSettled(this.nodes.map((n) => n.stop()));
    await Promise.allSettled(this.apps.map((a) => a.close()));
    rmSync(this.dir, { recursive: true, force: true });
  }
}

export function url(node: WeftNode, path: string): string {
  return `http://127.0.0.1:${node.ports.http}${path}`;
}

/** A request through node:http, for headers undici refuses to send (hop-by-hop ones). */
export function rawRequest(port: number, path: string, method: string, headers: OutgoingHttpHeaders, body?: string): Promise<{ status: number; headers: IncomingHttpHeaders; body: string }> {
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: '127.0.0.1', port, path, method, headers }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (text += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: text }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

/** An app channel to a test app on 127.0.0.1, as a peer server in a test reaches it (no health checks, no ACL). */
export function appChannel(appId: string, app: TestApp): HttpAppChannel {
  return new HttpAppChannel({
    appId, namespace: 'default', appPort: app.port, appHost: '127.0.0.1', appProtocol: 'http', appMaxConnections: 4,
    httpPort: undefined, accessControl: undefined,
    health: { enabled: false, path: '/healthz', intervalMs: 1000, timeoutMs: 1000, threshold: 3 },
  });
}
