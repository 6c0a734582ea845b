/**
 * A Consul-compatible test server: the part of a Consul agent's HTTP API (v1) that weft's
 * `consul` resolver uses, following Consul's documented behaviour, on 127.0.0.1 and a port
 * of its own (0 picks one; `restart()` keeps it).
 *
 * Served:
 * - `PUT /v1/agent/service/register` (Check/Checks of TTL type, Status,
 *   DeregisterCriticalServiceAfter; `?replace-existing-checks`), `PUT /v1/agent/service/deregister/:id`
 * - `PUT /v1/agent/check/pass|warn|fail/:check_id` (`?note=`), `PUT /v1/agent/check/update/:check_id`
 * - `GET /v1/agent/services`, `GET /v1/agent/checks`, `GET /v1/agent/self`, `GET /v1/status/leader`
 * - `GET /v1/health/service/:name` with `passing`, `tag`, `filter` (a subset of Consul's filter
 *   language: selectors, `==`, `!=`, `and`, `or`, `not`, parentheses), `dc`, `ns`, and
 *   blocking queries (`index` + `wait`, plus up to wait/16 of jitter as Consul adds).
 *
 * Faithful details: a TTL check that is not refreshed in time turns critical with output
 * "TTL expired"; a TTL check registered without Status starts critical; re-registering a
 * service keeps the status its existing checks have (the definition's Status only applies to a
 * new check), so a lapsed check stays critical until it is passed; the reaper runs every
 * `reapInterval` (Consul: 30s) and removes services whose check has been critical longer than
 * DeregisterCriticalServiceAfter, never sooner than `deregisterMin` (Consul: 1m); the index
 * only moves when what a query returns may have changed (a TTL pass that changes nothing does
 * not move it); `X-Consul-Index` is at least 1; a restart without `keepState` forgets
 * everything and starts the index over, as a dev agent does.
 *
 * ACL (when started with `token`): that token is the only one known (with full rights).
 * An unknown token gets 403 "ACL not found" everywhere; no token is the anonymous token,
 * which is refused writes (403 "Permission denied") and sees health results filtered to
 * nothing (200, `X-Consul-Results-Filtered-By-ACLs: true`). The token is read from
 * `X-Consul-Token`, `Authorization: Bearer`, or `?token=`. Status endpoints need no token.
 *
 * Namespaces: Consul OSS refuses `X-Consul-Namespace` and a non-default `ns` with 400; with
 * `enterprise: true` both scope services to a namespace.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createTlsServer, type Server as TlsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { parseDuration } from '../../src/duration.ts';

export interface FakeConsulOptions {
  /** Port to listen on (0: any free one, kept across restarts). */
  port?: number;
  /** Enables ACLs with this one (management) token. */
  token?: string;
  datacenter?: string;
  nodeName?: string;
  /** How often the reaper runs (Consul's check_reap_interval: 30s). */
  reapInterval?: number;
  /** The floor of DeregisterCriticalServiceAfter (Consul's check_deregister_interval_min: 1m). */
  deregisterMin?: number;
  /** Accept namespaces (Consul Enterprise). */
  enterprise?: boolean;
  /** Serve HTTPS with this key and certificate; with `ca`, require client certificates it signed (verify_incoming). */
  tls?: { key: string; cert: string; ca?: string };
}

export type CheckStatus = 'passing' | 'warning' | 'critical';

interface ServiceRecord {
  ID: string;
  Service: string;
  Tags: string[];
  Address: string;
  Port: number;
  Meta: Record<string, string>;
  Namespace: string;
  CreateIndex: number;
  ModifyIndex: number;
}

interface CheckRecord {
  CheckID: string;
  Name: string;
  Status: CheckStatus;
  Notes: string;
  Output: string;
  ServiceID: string;
  ServiceName: string;
  Namespace: string;
  Type: 'ttl';
  ttlMs: number;
  deregisterAfterMs: number | undefined;
  criticalSince: number | undefined;
  timer: NodeJS.Timeout | undefined;
  CreateIndex: number;
  ModifyIndex: number;
}

interface Waiter {
  name: string;
  min: number;
  wake: () => void;
}

export interface RequestRecord {
  method: string;
  path: string;
  query: Record<string, string>;
  token: string | undefined;
  namespace: string | undefined;
  body: unknown;
}

class HttpError extends Error {
  readonly status: number;
  constructor(status: number, message: string) {
    super(message);
    this.status = status;
  }
}

const CHECK_STATUSES: readonly CheckStatus[] = ['passing', 'warning', 'critical'];
const META_KEY = /^[A-Za-z0-9_-]+$/;

/** Go-style durations as Consul reads them in JSON: a string ("10s"), or a number of nanoseconds. */
function goDuration(v: unknown, field: string): number {
  if (typeof v === 'number') return v / 1e6;
  if (typeof v === 'string' && v !== '' && !/^\d+(\.\d+)?$/.test(v)) {
    const ms = parseDuration(v);
    if (ms !== undefined) return ms;
  }
  if (v === '0' || v === 0) return 0;
  throw new HttpError(400, `Request decode failed: ${field}: invalid duration ${JSON.stringify(v)}`);
}

export class FakeConsul {
  readonly options: Required<Omit<FakeConsulOptions, 'token' | 'port' | 'tls'>> & { token: string | undefined; tls: FakeConsulOptions['tls'] };
  /** Every request served, in order (for assertions). */
  readonly requests: RequestRecord[] = [];
  private server: Server | TlsServer | null = null;
  private portNumber: number;
  private services = new Map<string, ServiceRecord>();
  private checks = new Map<string, CheckRecord>();
  /** Raft-like index: moves on every catalog change. */
  private index = 1;
  /** Index of the last change per service name (what a health query on that name reports). */
  private nameIndex = new Map<string, number>();
  private waiters = new Set<Waiter>();
  private reaper: NodeJS.Timeout | null = null;

  constructor(options: FakeConsulOptions = {}) {
    this.portNumber = options.port ?? 0;
    this.options = {
      token: options.token,
      datacenter: options.datacenter ?? 'dc1',
      nodeName: options.nodeName ?? 'fake-consul',
      reapInterval: options.reapInterval ?? 30_000,
      deregisterMin: options.deregisterMin ?? 60_000,
      enterprise: options.enterprise ?? false,
      tls: options.tls,
    };
  }

  get port(): number {
    return this.portNumber;
  }

  /** `127.0.0.1:<port>`, as CONSUL_HTTP_ADDR takes it. */
  get address(): string {
    return `127.0.0.1:${this.portNumber}`;
  }

  /** The base URL (`http://127.0.0.1:<port>`, or https with `tls`). */
  get url(): string {
    return `${this.options.tls ? 'https' : 'http'}://127.0.0.1:${this.portNumber}`;
  }

  get running(): boolean {
    return this.server !== null;
  }

  /** The service names of the blocking queries held open now (one per watch a client keeps). */
  get blockingQueries(): string[] {
    return [...this.waiters].map((w) => w.name);
  }

  async start(): Promise<void> {
    if (this.server !== null) return;
    const tls = this.options.tls;
    const handler = (req: IncomingMessage, res: ServerResponse): void => this.handle(req, res);
    const server = tls === undefined
      ? createServer(handler)
      : createTlsServer({ key: tls.key, cert: tls.cert, ...(tls.ca !== undefined ? { ca: tls.ca, requestCert: true, rejectUnauthorized: true } : {}) }, handler);
    server.keepAliveTimeout = 30_000;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.portNumber, '127.0.0.1', () => {
        server.off('error', reject);
        resolve();
      });
    });
    this.portNumber = (server.address() as AddressInfo).port;
    this.server = server;
    for (const c of this.checks.values()) this.armTtl(c);
    this.reaper = setInterval(() => this.reap(), this.options.reapInterval);
  }

  /** Stops listening and drops every connection, blocking queries included. */
  async stop(): Promise<void> {
    const server = this.server;
    if (server === null) return;
    this.server = null;
    if (this.reaper !== null) clearInterval(this.reaper);
    this.reaper = null;
    for (const c of this.checks.values()) {
      if (c.timer !== undefined) clearTimeout(c.timer);
      c.timer = undefined;
    }
    for (const w of this.waiters) w.wake();
    this.waiters.clear();
    const closed = new Promise<void>((resolve) => server.close(() => resolve()));
    server.closeAllConnections();
    await closed;
  }

  /**
   * Stops and starts again on the same port. Without `keepState` the agent forgets every
   * service and check and its index starts over, like a restarted dev agent.
   */
  async restart(opts: { keepState?: boolean; downFor?: number } = {}): Promise<void> {
    await this.stop();
    if (!opts.keepState) this.forget();
    if (opts.downFor !== undefined) await new Promise((r) => setTimeout(r, opts.downFor));
    await this.start();
  }

  /** Forgets every service and check at once (an agent that lost its state), index starting over. */
  forget(): void {
    for (const c of this.checks.values()) if (c.timer !== undefined) clearTimeout(c.timer);
    this.services.clear();
    this.checks.clear();
    this.nameIndex.clear();
    this.index = 1;
    for (const w of this.waiters) w.wake();
  }

  /** The services the agent knows, with their checks' status (for assertions). */
  catalog(): Array<ServiceRecord & { Checks: Array<{ CheckID: string; Status: CheckStatus; Output: string }> }> {
    return [...this.services.values()].map((s) => ({
      ...s,
      Checks: [...this.checks.values()].filter((c) => c.ServiceID === s.ID && c.Namespace === s.Namespace)
        .map((c) => ({ CheckID: c.CheckID, Status: c.Status, Output: c.Output })),
    }));
  }

  /** Forces a check's status, as if its TTL had lapsed (`critical`) or someone updated it. */
  setCheckStatus(checkId: string, status: CheckStatus, output = ''): void {
    const c = [...this.checks.values()].find((x) => x.CheckID === checkId);
    if (c === undefined) throw new Error(`no check ${checkId}`);
    this.updateCheck(c, status, output);
  }

  /** Runs the reaper now instead of waiting for its interval. */
  reap(): void {
    const now = Date.now();
    for (const c of [...this.checks.values()]) {
      if (c.Status !== 'critical' || c.deregisterAfterMs === undefined || c.criticalSince === undefined) continue;
      const after = Math.max(c.deregisterAfterMs, this.options.deregisterMin);
      if (now - c.criticalSince > after && this.services.has(this.key(c.Namespace, c.ServiceID))) {
        this.removeService(c.Namespace, c.ServiceID);
      }
    }
  }

  // ---- HTTP ----

  private handle(req: IncomingMessage, res: ServerResponse): void {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const url = new URL(req.url ?? '/', 'http://fake');
      const query: Record<string, string> = {};
      for (const [k, v] of url.searchParams) if (!(k in query)) query[k] = v;
      const bearer = /^Bearer\s+(.+)$/i.exec(String(req.headers['authorization'] ?? ''))?.[1];
      const headerToken = req.headers['x-consul-token'];
      const token = (typeof headerToken === 'string' && headerToken !== '' ? headerToken : undefined) ?? bearer ?? (query['token'] || undefined);
      const nsHeader = req.headers['x-consul-namespace'];
      const namespace = (typeof nsHeader === 'string' && nsHeader !== '' ? nsHeader : undefined) ?? (query['ns'] || undefined);
      let body: unknown;
      const text = Buffer.concat(chunks).toString('utf8');
      const record: RequestRecord = { method: req.method ?? 'GET', path: url.pathname, query, token, namespace, body: undefined };
      this.requests.push(record);
      Promise.resolve()
        .then(() => {
          if (text !== '') {
            try {
              body = JSON.parse(text);
            } catch {
              throw new HttpError(400, 'Request decode failed: invalid JSON');
            }
            record.body = body;
          }
          if (nsHeader !== undefined && !this.options.enterprise) {
            throw new HttpError(400, 'Invalid header: "X-Consul-Namespace" - Namespaces are a Consul Enterprise feature');
          }
          if (query['ns'] !== undefined && query['ns'] !== '' && query['ns'] !== 'default' && !this.options.enterprise) {
            throw new HttpError(400, `"ns" is a Consul Enterprise feature`);
          }
          return this.route(req.method ?? 'GET', url.pathname, query, token, namespace ?? 'default', body, res, req);
        })
        .catch((err: unknown) => {
          const status = err instanceof HttpError ? err.status : 500;
          const message = err instanceof Error ? err.message : String(err);
          if (!res.headersSent) res.writeHead(status, { 'content-type': 'text/plain; charset=utf-8' });
          res.end(message);
        });
    });
  }

  private async route(method: string, path: string, query: Record<string, string>, token: string | undefined, ns: string, body: unknown, res: ServerResponse, req: IncomingMessage): Promise<void> {
    const need = (verb: string): void => {
      if (method !== verb) throw new HttpError(405, `method ${method} not allowed`);
    };
    let m: RegExpExecArray | null;

    if (path === '/v1/status/leader') {
      need('GET');
      return this.json(res, '127.0.0.1:8300');
    }
    if (path === '/v1/status/peers') {
      need('GET');
      return this.json(res, ['127.0.0.1:8300']);
    }

    // Everything below is behind the ACL system when it is on.
    const acl = this.acl(token);

    if (path === '/v1/agent/self') {
      need('GET');
      acl.write();
      return this.json(res, {
        Config: { Datacenter: this.options.datacenter, NodeName: this.options.nodeName, Server: true, Version: '1.16.0-fake' },
        Member: { Name: this.options.nodeName, Addr: '127.0.0.1', Port: 8301, Status: 1 },
        Meta: {},
      });
    }
    if (path === '/v1/agent/service/register') {
      need('PUT');
      acl.write();
      this.registerService(body, ns, query['replace-existing-checks'] !== undefined && query['replace-existing-checks'] !== 'false');
      return this.empty(res);
    }
    if ((m = /^\/v1\/agent\/service\/deregister\/(.+)$/.exec(path)) !== null) {
      need('PUT');
      acl.write();
      const id = decodeURIComponent(m[1] as string);
      if (!this.services.has(this.key(ns, id))) throw new HttpError(404, `Unknown service ID "${id}"`);
      this.removeService(ns, id);
      return this.empty(res);
    }
    if ((m = /^\/v1\/agent\/check\/(pass|warn|fail|update)\/(.+)$/.exec(path)) !== null) {
      need('PUT');
      acl.write();
      const kind = m[1] as string;
      const id = decodeURIComponent(m[2] as string);
      const check = this.checks.get(this.key(ns, id));
      if (check === undefined) throw new HttpError(404, `Unknown check ID "${id}"`);
      if (kind === 'update') {
        const b = (body ?? {}) as { Status?: unknown; Output?: unknown };
        if (typeof b.Status !== 'string' || !CHECK_STATUSES.includes(b.Status as CheckStatus)) throw new HttpError(400, `Invalid check status: "${String(b.Status)}"`);
        this.updateCheck(check, b.Status as CheckStatus, typeof b.Output === 'string' ? b.Output : '');
      } else {
        const status: CheckStatus = kind === 'pass' ? 'passing' : kind === 'warn' ? 'warning' : 'critical';
        this.updateCheck(check, status, query['note'] ?? '');
      }
      return this.empty(res);
    }
    if (path === '/v1/agent/services') {
      need('GET');
      acl.read();
      const out: Record<string, unknown> = {};
      for (const s of this.services.values()) if (s.Namespace === ns) out[s.ID] = this.serviceView(s);
      return this.json(res, out);
    }
    if (path === '/v1/agent/checks') {
      need('GET');
      acl.read();
      const out: Record<string, unknown> = {};
      for (const c of this.checks.values()) if (c.Namespace === ns) out[c.CheckID] = this.checkView(c);
      return this.json(res, out);
    }
    if ((m = /^\/v1\/health\/service\/(.+)$/.exec(path)) !== null) {
      need('GET');
      acl.read();
      const name = decodeURIComponent(m[1] as string);
      if (query['dc'] !== undefined && query['dc'] !== '' && query['dc'] !== this.options.datacenter) throw new HttpError(500, 'No path to datacenter');
      const predicate = query['filter'] !== undefined && query['filter'] !== '' ? compileFilter(query['filter']) : undefined;
      const min = query['index'] !== undefined ? Number(query['index']) : 0;
      if (!Number.isFinite(min) || min < 0) throw new HttpError(400, 'Invalid index');
      if (min > 0) await this.block(name, min, query['wait'], req);
      if (res.destroyed) return;
      const passing = query['passing'] !== undefined && query['passing'] !== 'false' && query['passing'] !== '0';
      const tags = new URL(req.url ?? '/', 'http://fake').searchParams.getAll('tag');
      let entries = [...this.services.values()]
        .filter((s) => s.Service === name && s.Namespace === ns)
        .map((s) => this.healthEntry(s))
        .filter((e) => !passing || e.Checks.every((c) => c.Status === 'passing'))
        .filter((e) => tags.every((t) => e.Service.Tags.includes(t)));
      if (predicate !== undefined) entries = entries.filter((e) => predicate(e));
      const headers: Record<string, string> = {};
      if (!acl.canRead) {
        entries = [];
        headers['X-Consul-Results-Filtered-By-ACLs'] = 'true';
      }
      return this.json(res, entries, { ...headers, ...this.queryMeta(name) });
    }
    throw new HttpError(404, `Invalid URL path: not a recognized HTTP API endpoint: ${path}`);
  }

  private acl(token: string | undefined): { write: () => void; read: () => void; canRead: boolean } {
    const required = this.options.token;
    if (required === undefined) return { write: () => {}, read: () => {}, canRead: true };
    if (token !== undefined && token !== required) throw new HttpError(403, 'ACL not found');
    const anonymous = token === undefined;
    return {
      write: () => {
        if (anonymous) throw new HttpError(403, 'Permission denied: anonymous token lacks permission');
      },
      read: () => {},
      canRead: !anonymous,
    };
  }

  private json(res: ServerResponse, value: unknown, headers: Record<string, string> = {}): void {
    const text = JSON.stringify(value);
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text), ...headers });
    res.end(text);
  }

  private empty(res: ServerResponse): void {
    res.writeHead(200, { 'content-length': 0 });
    res.end();
  }

  private queryMeta(name: string): Record<string, string> {
    return {
      'X-Consul-Index': String(Math.max(1, this.nameIndex.get(name) ?? 1)),
      'X-Consul-KnownLeader': 'true',
      'X-Consul-LastContact': '0',
      'X-Consul-Effective-Consistency': 'leader',
    };
  }

  /** Holds a blocking query until the name's index moves past `min`, the wait lapses, or the client goes. */
  private block(name: string, min: number, waitText: string | undefined, req: IncomingMessage): Promise<void> {
    let wait = 5 * 60_000;
    if (waitText !== undefined && waitText !== '') {
      const ms = /^\d+$/.test(waitText) ? undefined : parseDuration(waitText);
      if (ms === undefined) throw new HttpError(400, `Invalid wait time "${waitText}"`);
      wait = Math.min(ms, 10 * 60_000);
    }
    wait += Math.random() * (wait / 16);
    if ((this.nameIndex.get(name) ?? 1) > min) return Promise.resolve();
    return new Promise((resolve) => {
      const waiter: Waiter = {
        name,
        min,
        wake: () => {
          clearTimeout(timer);
          this.waiters.delete(waiter);
          req.socket.off('close', waiter.wake);
          resolve();
        },
      };
      const timer = setTimeout(waiter.wake, wait);
      req.socket.once('close', waiter.wake);
      this.waiters.add(waiter);
    });
  }

  private bump(name: string): void {
    this.index += 1;
    this.nameIndex.set(name, this.index);
    for (const w of [...this.waiters]) if (w.name === name && this.index > w.min) w.wake();
  }

  private key(ns: string, id: string): string {
    return `${ns}\u0000${id}`;
  }

  // ---- agent state ----

  private registerService(raw: unknown, ns: string, replaceChecks: boolean): void {
    if (typeof raw !== 'object' || raw === null) throw new HttpError(400, 'Request decode failed: expected a JSON object');
    const b = raw as Record<string, unknown>;
    if (typeof b['Name'] !== 'string' || b['Name'] === '') throw new HttpError(400, 'Missing service name');
    const name = b['Name'];
    const id = typeof b['ID'] === 'string' && b['ID'] !== '' ? b['ID'] : name;
    const port = b['Port'] ?? 0;
    if (typeof port !== 'number' || !Number.isInteger(port) || port < 0 || port > 65535) throw new HttpError(400, 'Invalid Port');
    const meta = (b['Meta'] ?? {}) as Record<string, unknown>;
    if (typeof meta !== 'object' || meta === null) throw new HttpError(400, 'Invalid Meta');
    if (Object.keys(meta).length > 64) throw new HttpError(400, 'Invalid Service Meta: Node metadata cannot contain more than 64 key/value pairs');
    for (const [k, v] of Object.entries(meta)) {
      if (!META_KEY.test(k) || k.length > 128) throw new HttpError(400, `Invalid Service Meta: Key contains invalid characters: ${k}`);
      if (k.startsWith('consul-')) throw new HttpError(400, `Invalid Service Meta: Key prefix 'consul-' is reserved for internal use`);
      if (typeof v !== 'string' || v.length > 512) throw new HttpError(400, `Invalid Service Meta: Value is too long or not a string: ${k}`);
    }
    const tags = b['Tags'] ?? [];
    if (!Array.isArray(tags) || tags.some((t) => typeof t !== 'string')) throw new HttpError(400, 'Invalid Tags');
    const svcNs = typeof b['Namespace'] === 'string' && b['Namespace'] !== '' && this.options.enterprise ? b['Namespace'] : ns;

    const defs: Array<Record<string, unknown>> = [];
    if (b['Check'] !== undefined && b['Check'] !== null) defs.push(b['Check'] as Record<string, unknown>);
    if (Array.isArray(b['Checks'])) defs.push(...(b['Checks'] as Array<Record<string, unknown>>));
    const multiple = defs.length > 1;
    const parsed = defs.map((d, i) => {
      if (typeof d !== 'object' || d === null) throw new HttpError(400, 'Invalid check definition');
      if (d['TTL'] === undefined) throw new HttpError(400, 'this test server only runs TTL checks');
      const ttlMs = goDuration(d['TTL'], 'TTL');
      if (ttlMs <= 0) throw new HttpError(400, 'TTL must be > 0 for TTL checks');
      const status = d['Status'];
      if (status !== undefined && status !== '' && !CHECK_STATUSES.includes(status as CheckStatus)) throw new HttpError(400, `Status for checks must 'passing', 'warning', 'critical'`);
      const checkId = typeof d['CheckID'] === 'string' && d['CheckID'] !== '' ? d['CheckID'] : multiple ? `service:${id}:${i + 1}` : `service:${id}`;
      return {
        checkId,
        name: typeof d['Name'] === 'string' && d['Name'] !== '' ? d['Name'] : `Service '${name}' check`,
        notes: typeof d['Notes'] === 'string' ? d['Notes'] : '',
        status: (status === undefined || status === '' ? undefined : status) as CheckStatus | undefined,
        ttlMs,
        deregisterAfterMs: d['DeregisterCriticalServiceAfter'] !== undefined ? goDuration(d['DeregisterCriticalServiceAfter'], 'DeregisterCriticalServiceAfter') : undefined,
      };
    });

    const key = this.key(svcNs, id);
    const before = this.services.get(key);
    const service: ServiceRecord = {
      ID: id,
      Service: name,
      Tags: tags as string[],
      Address: typeof b['Address'] === 'string' ? b['Address'] : '',
      Port: port,
      Meta: meta as Record<string, string>,
      Namespace: svcNs,
      CreateIndex: before?.CreateIndex ?? this.index + 1,
      ModifyIndex: before?.ModifyIndex ?? this.index + 1,
    };
    let changed = before === undefined || before.Service !== name ||
      JSON.stringify([before.Tags, before.Address, before.Port, before.Meta]) !== JSON.stringify([service.Tags, service.Address, service.Port, service.Meta]);
    if (before !== undefined && before.Service !== name) this.bump(before.Service);

    if (replaceChecks) {
      const keep = new Set(parsed.map((p) => p.checkId));
      for (const [ck, c] of this.checks) {
        if (c.ServiceID === id && c.Namespace === svcNs && !keep.has(c.CheckID)) {
          if (c.timer !== undefined) clearTimeout(c.timer);
          this.checks.delete(ck);
          changed = true;
        }
      }
    }
    for (const p of parsed) {
      const ck = this.key(svcNs, p.checkId);
      const existing = this.checks.get(ck);
      if (existing?.timer !== undefined) clearTimeout(existing.timer);
      // An existing check keeps its status: Consul snapshots the agent's check states and
      // restores them over the definition's Status (agent.go, addServiceInternal), so a
      // re-registered check that had lapsed stays critical until its next pass.
      const status: CheckStatus = existing?.Status ?? p.status ?? 'critical';
      const check: CheckRecord = {
        CheckID: p.checkId,
        Name: p.name,
        Status: status,
        Notes: p.notes,
        Output: existing !== undefined && existing.Status === status ? existing.Output : '',
        ServiceID: id,
        ServiceName: name,
        Namespace: svcNs,
        Type: 'ttl',
        ttlMs: p.ttlMs,
        deregisterAfterMs: p.deregisterAfterMs,
        criticalSince: status === 'critical' ? (existing?.criticalSince ?? Date.now()) : undefined,
        timer: undefined,
        CreateIndex: existing?.CreateIndex ?? this.index + 1,
        ModifyIndex: existing !== undefined && existing.Status === status ? existing.ModifyIndex : this.index + 1,
      };
      if (existing === undefined || existing.Status !== status || existing.Name !== check.Name || existing.ServiceName !== name) changed = true;
      this.checks.set(ck, check);
      this.armTtl(check);
    }
    if (changed) {
      this.bump(name);
      service.ModifyIndex = this.index;
    }
    this.services.set(key, service);
  }

  private removeService(ns: string, id: string): void {
    const s = this.services.get(this.key(ns, id));
    if (s === undefined) return;
    this.services.delete(this.key(ns, id));
    for (const [ck, c] of this.checks) {
      if (c.ServiceID === id && c.Namespace === ns) {
        if (c.timer !== undefined) clearTimeout(c.timer);
        this.checks.delete(ck);
      }
    }
    this.bump(s.Service);
  }

  private armTtl(c: CheckRecord): void {
    if (c.timer !== undefined) clearTimeout(c.timer);
    if (this.server === null) return;
    c.timer = setTimeout(() => {
      c.timer = undefined;
      this.updateCheck(c, 'critical', `TTL expired (last output before timeout follows): ${c.Output}`, false);
    }, c.ttlMs);
  }

  private updateCheck(c: CheckRecord, status: CheckStatus, output: string, rearm = true): void {
    if (rearm) this.armTtl(c);
    if (c.Status === status && c.Output === output) return;
    const statusChanged = c.Status !== status;
    c.Status = status;
    c.Output = output;
    if (status === 'critical') c.criticalSince ??= Date.now();
    else c.criticalSince = undefined;
    // Consul syncs output-only changes lazily (check_update_interval); status changes at once.
    if (statusChanged) {
      this.bump(c.ServiceName);
      c.ModifyIndex = this.index;
    }
  }

  private serviceView(s: ServiceRecord): Record<string, unknown> {
    return {
      ID: s.ID, Service: s.Service, Tags: s.Tags, Address: s.Address, Port: s.Port, Meta: s.Meta,
      Weights: { Passing: 1, Warning: 1 }, EnableTagOverride: false, Datacenter: this.options.datacenter,
      ...(this.options.enterprise ? { Namespace: s.Namespace } : {}),
    };
  }

  private checkView(c: CheckRecord): Record<string, unknown> {
    return {
      Node: this.options.nodeName, CheckID: c.CheckID, Name: c.Name, Status: c.Status, Notes: c.Notes, Output: c.Output,
      ServiceID: c.ServiceID, ServiceName: c.ServiceName, ServiceTags: this.services.get(this.key(c.Namespace, c.ServiceID))?.Tags ?? [],
      Type: c.Type, Interval: '', Timeout: '', ExposedPort: 0, Definition: {}, CreateIndex: c.CreateIndex, ModifyIndex: c.ModifyIndex,
      ...(this.options.enterprise ? { Namespace: c.Namespace } : {}),
    };
  }

  private healthEntry(s: ServiceRecord): { Node: Record<string, unknown>; Service: ServiceRecord & Record<string, unknown>; Checks: Array<{ Status: CheckStatus } & Record<string, unknown>> } {
    const node = {
      ID: '00000000-0000-4000-8000-000000000001', Node: this.options.nodeName, Address: '127.0.0.1', Datacenter: this.options.datacenter,
      TaggedAddresses: { lan: '127.0.0.1', wan: '127.0.0.1' }, Meta: { 'consul-network-segment': '' }, CreateIndex: 1, ModifyIndex: 1,
    };
    const serf = {
      Node: this.options.nodeName, CheckID: 'serfHealth', Name: 'Serf Health Status', Status: 'passing' as CheckStatus, Notes: '',
      Output: 'Agent alive and reachable', ServiceID: '', ServiceName: '', ServiceTags: [], Type: '', CreateIndex: 1, ModifyIndex: 1,
    };
    const checks = [...this.checks.values()].filter((c) => c.ServiceID === s.ID && c.Namespace === s.Namespace)
      .map((c) => this.checkView(c) as { Status: CheckStatus } & Record<string, unknown>);
    return {
      Node: node,
      Service: { ...s, ...this.serviceView(s), CreateIndex: s.CreateIndex, ModifyIndex: s.ModifyIndex } as ServiceRecord & Record<string, unknown>,
      Checks: [serf, ...checks],
    };
  }
}

// ---- a subset of Consul's filter language (go-bexpr) ----

type Token = { t: 'str' | 'word' | 'op' | 'lp' | 'rp'; v: string };

function tokenize(text: string): Token[] {
  const out: Token[] = [];
  let i = 0;
  while (i < text.length) {
    const ch = text[i] as string;
    if (/\s/.test(ch)) {
      i++;
    } else if (ch === '(' || ch === ')') {
      out.push({ t: ch === '(' ? 'lp' : 'rp', v: ch });
      i++;
    } else if (text.startsWith('==', i) || text.startsWith('!=', i)) {
      out.push({ t: 'op', v: text.slice(i, i + 2) });
      i += 2;
    } else if (ch === '"' || ch === '`') {
      let j = i + 1;
      let s = '';
      while (j < text.length && text[j] !== ch) {
        if (ch === '"' && text[j] === '\\' && j + 1 < text.length) j++;
        s += text[j];
        j++;
      }
      if (j >= text.length) throw new HttpError(400, 'Failed to create boolean expression evaluator: unterminated string');
      out.push({ t: 'str', v: s });
      i = j + 1;
    } else {
      const m = /^[A-Za-z0-9_.\-[\]"]+/.exec(text.slice(i));
      if (m === null) throw new HttpError(400, `Failed to create boolean expression evaluator: unexpected "${ch}"`);
      out.push({ t: 'word', v: m[0] });
      i += m[0].length;
    }
  }
  return out;
}

type Pred = (entry: unknown) => boolean;

function compileFilter(text: string): Pred {
  const tokens = tokenize(text);
  let pos = 0;
  const peek = (): Token | undefined => tokens[pos];
  const fail = (why: string): never => {
    throw new HttpError(400, `Failed to create boolean expression evaluator: ${why}`);
  };
  const orExpr = (): Pred => {
    let left = andExpr();
    while (peek()?.t === 'word' && peek()?.v === 'or') {
      pos++;
      const l = left;
      const r = andExpr();
      left = (e) => l(e) || r(e);
    }
    return left;
  };
  const andExpr = (): Pred => {
    let left = unary();
    while (peek()?.t === 'word' && peek()?.v === 'and') {
      pos++;
      const l = left;
      const r = unary();
      left = (e) => l(e) && r(e);
    }
    return left;
  };
  const unary = (): Pred => {
    const tok = peek();
    if (tok === undefined) return fail('unexpected end of expression');
    if (tok.t === 'word' && tok.v === 'not') {
      pos++;
      const inner = unary();
      return (e) => !inner(e);
    }
    if (tok.t === 'lp') {
      pos++;
      const inner = orExpr();
      if (peek()?.t !== 'rp') fail('missing )');
      pos++;
      return inner;
    }
    if (tok.t !== 'word') return fail(`expected a selector, got ${JSON.stringify(tok.v)}`);
    pos++;
    const path = parseSelector(tok.v);
    const op = peek();
    if (op?.t !== 'op') return fail(`expected == or != after ${tok.v}`);
    pos++;
    const value = peek();
    if (value === undefined || (value.t !== 'str' && value.t !== 'word')) return fail('expected a value');
    pos++;
    const want = value.v;
    return (e) => {
      const got = select(e, path);
      const eq = got !== undefined && got !== null && String(got) === want;
      return op.v === '==' ? eq : !eq;
    };
  };
  const pred = orExpr();
  if (pos !== tokens.length) fail(`unexpected ${JSON.stringify(tokens[pos]?.v)}`);
  return pred;
}

function parseSelector(text: string): string[] {
  const parts: string[] = [];
  const re = /([A-Za-z0-9_-]+)|\["([^"]*)"\]|\./g;
  let m: RegExpExecArray | null;
  while ((m = re.exec(text)) !== null) {
    if (m[1] !== undefined) parts.push(m[1]);
    else if (m[2] !== undefined) parts.push(m[2]);
  }
  const top = parts[0];
  if (top !== 'Node' && top !== 'Service' && top !== 'Checks') {
    throw new HttpError(400, `Failed to create boolean expression evaluator: Selector "${text}" is not valid`);
  }
  return parts;
}

function select(value: unknown, path: readonly string[]): unknown {
  let v: unknown = value;
  for (const p of path) {
    if (typeof v !== 'object' || v === null) return undefined;
    v = (v as Record<string, unknown>)[p];
  }
  return v;
}
