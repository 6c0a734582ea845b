/**
 * `local`: the embedded single-host default. Nodes on one machine share a registry file
 * (SQLite through `node:sqlite`, WAL mode, safe across processes). Each node upserts a row
 * per app it serves with an expiry a few seconds out and refreshes it at a third of that,
 * so the rows of a node that died stop routing within `ttl` (default 5 s). Watches poll
 * the file (default every 500 ms): one indexed query per watched app.
 *
 * ```yaml
 * resolver:
 *   type: local
 *   local: { path: ~/.weft/registry.sqlite, ttl: 5s, refresh: 500ms }
 * ```
 * The path also comes from `--registry` or `WEFT_REGISTRY`.
 */
import { homedir } from 'node:os';
import { dirname, join } from 'node:path';
import { DatabaseSync, type StatementSync } from 'node:sqlite';
import { parseDuration } from '../duration.ts';
import { claimRegistryDir } from './registry-dir.ts';
import { appKey, registerResolver, type AppKey, type Instance, type Registration, type Resolver, type ResolverContext, type ResolverStatus } from './resolver.ts';

/** Row meta key marking an app that failed its health checks (Registration.appHealthy false). */
const APP_HEALTH_META = 'app_health';

interface Row {
  node_id: string;
  app_id: string;
  namespace: string;
  address: string;
  port: number;
  meta: string;
}

interface ActorWatch {
  readonly namespace: string;
  readonly listeners: Set<(list: readonly Instance[]) => void>;
  last: string | null;
}

interface Watch {
  readonly app: AppKey;
  readonly listeners: Set<(list: readonly Instance[]) => void>;
  last: string | null;
}

export function defaultRegistryPath(env: NodeJS.ProcessEnv = process.env): string {
  return env['WEFT_REGISTRY'] || join(homedir(), '.weft', 'registry.sqlite');
}

export class LocalResolver implements Resolver {
  readonly scheme = 'local';
  readonly path: string;
  private readonly ttlMs: number;
  private readonly refreshMs: number;
  private readonly ctx: ResolverContext;
  private db: DatabaseSync | null = null;
  private upsert: StatementSync | null = null;
  private select: StatementSync | null = null;
  private readonly registrations = new Map<string, Registration>();
  private readonly watches = new Map<string, Watch>();
  private readonly actorWatches = new Map<string, ActorWatch>();
  private selectActors: StatementSync | null = null;
  private heartbeat: NodeJS.Timeout | null = null;
  private poller: NodeJS.Timeout | null = null;
  private healthy = true;
  private lastError: string | undefined;
  private lastSuccessAt: number | undefined;
  /** When every registration's expiry was last pushed out (the time the rows' expiry counts from). */
  private renewedAt: number | undefined;

  constructor(ctx: ResolverContext) {
    this.ctx = ctx;
    const o = ctx.options;
    const path = o['path'] ?? defaultRegistryPath();
    if (typeof path !== 'string' || path === '') throw ctx.configError('resolver.local.path', 'must be a file path');
    this.path = path.startsWith('~/') ? join(homedir(), path.slice(2)) : path;
    const ttl = parseDuration(o['ttl'] ?? '5s');
    if (ttl === undefined || ttl < 1000) throw ctx.configError('resolver.local.ttl', 'must be a duration of at least 1s');
    const refresh = parseDuration(o['refresh'] ?? '500ms');
    if (refresh === undefined || refresh < 50) throw ctx.configError('resolver.local.refresh', 'must be a duration of at least 50ms');
    this.ttlMs = ttl;
    this.refreshMs = refresh;
  }

  async start(): Promise<void> {
    claimRegistryDir(dirname(this.path), 'resolver.local.path');
    const db = new DatabaseSync(this.path, { timeout: 2000 });
    db.exec(`
      PRAGMA journal_mode = WAL;
      PRAGMA synchronous = NORMAL;
      CREATE TABLE IF NOT EXISTS instances (
        node_id TEXT NOT NULL, app_id TEXT NOT NULL, namespace TEXT NOT NULL,
        address TEXT NOT NULL, port INTEGER NOT NULL, meta TEXT NOT NULL, expires_at INTEGER NOT NULL,
        PRIMARY KEY (namespace, app_id, node_id)
      );
    `);
    this.db = db;
    this.upsert = db.prepare(`INSERT INTO instances (node_id, app_id, namespace, address, port, meta, expires_at)
      VALUES (?, ?, ?, ?, ?, ?, ?)
      ON CONFLICT (namespace, app_id, node_id) DO UPDATE SET address = excluded.address, port = excluded.port,
        meta = excluded.meta, expires_at = excluded.expires_at`);
    // Routing leaves out apps that failed their health checks (meta app_health); actor membership does not.
    this.select = db.prepare(`SELECT node_id, app_id, namespace, address, port, meta FROM instances
      WHERE namespace = ? AND app_id = ? AND expires_at > ? AND json_extract(meta, '$.${APP_HEALTH_META}') IS NULL ORDER BY node_id`);
    // Actor membership: every live row of the namespace whose meta names actor types.
    this.selectActors = db.prepare(`SELECT node_id, app_id, namespace, address, port, meta FROM instances
      WHERE namespace = ? AND expires_at > ? AND json_type(meta, '$.actor_types') IS NOT NULL ORDER BY node_id, app_id`);
    this.heartbeat = setInterval(() => this.refreshRegistrations(), Math.max(200, Math.floor(this.ttlMs / 3)));
    this.heartbeat.unref();
    this.poller = setInterval(() => this.poll(), this.refreshMs);
    this.poller.unref();
  }

  async register(registration: Registration): Promise<void> {
    this.registrations.set(appKey(registration.appId, registration.namespace), registration);
    const at = Date.now();
    if (this.write(registration, at)) this.renewedAt ??= at;
    this.poll();
  }

  async deregister(registration: Registration): Promise<void> {
    this.registrations.delete(appKey(registration.appId, registration.namespace));
    this.guard(() => {
      this.db?.prepare('DELETE FROM instances WHERE namespace = ? AND app_id = ? AND node_id = ?').run(registration.namespace, registration.appId, registration.nodeId);
    });
    this.poll();
  }

  watch(app: AppKey, onChange: (instances: readonly Instance[]) => void): () => void {
    const key = appKey(app.appId, app.namespace);
    let w = this.watches.get(key);
    if (w === undefined) this.watches.set(key, (w = { app, listeners: new Set(), last: null }));
    const watch = w;
    watch.listeners.add(onChange);
    setImmediate(() => {
      if (!watch.listeners.has(onChange)) return;
      const list = this.query(watch.app);
      if (list !== null) {
        watch.last = JSON.stringify(list);
        onChange(list);
      }
    });
    return () => {
      watch.listeners.delete(onChange);
      if (watch.listeners.size === 0) this.watches.delete(key);
    };
  }

  watchActors(namespace: string, onChange: (instances: readonly Instance[]) => void): () => void {
    let w = this.actorWatches.get(namespace);
    if (w === undefined) this.actorWatches.set(namespace, (w = { namespace, listeners: new Set(), last: null }));
    const watch = w;
    watch.listeners.add(onChange);
    setImmediate(() => {
      if (!watch.listeners.has(onChange)) return;
      const list = this.queryActors(namespace);
      if (list !== null) {
        watch.last = JSON.stringify(list);
        onChange(list);
      }
    });
    return () => {
      watch.listeners.delete(onChange);
      if (watch.listeners.size === 0) this.actorWatches.delete(namespace);
    };
  }

  status(): ResolverStatus {
    const s: { scheme: string; healthy: boolean; lastError?: string; lastSuccessAt?: number; renewedAt?: number } = { scheme: this.scheme, healthy: this.healthy };
    if (this.lastError !== undefined) s.lastError = this.lastError;
    if (this.lastSuccessAt !== undefined) s.lastSuccessAt = this.lastSuccessAt;
    if (this.renewedAt !== undefined && this.registrations.size > 0) s.renewedAt = this.renewedAt;
    return s;
  }

  async close(): Promise<void> {
    if (this.heartbeat !== null) clearInterval(this.heartbeat);
    if (this.poller !== null) clearInterval(this.poller);
    this.heartbeat = this.poller = null;
    for (const r of this.registrations.values()) await this.deregister(r);
    this.watches.clear();
    this.actorWatches.clear();
    this.db?.close();
    this.db = null;
  }

  private refreshRegistrations(): void {
    const at = Date.now();
    let all = true;
    for (const r of this.registrations.values()) all = this.write(r, at) && all;
    if (all) this.renewedAt = at;
    // rows of nodes long gone are swept so the file does not grow
    this.guard(() => this.db?.prepare('DELETE FROM instances WHERE expires_at < ?').run(Date.now() - 60_000));
  }

  /** Writes one row, expiring a TTL after `at`; false when the registry refused it. */
  private write(r: Registration, at = Date.now()): boolean {
    return this.guard(() => {
      const meta = r.appHealthy === false ? { ...r.meta, [APP_HEALTH_META]: 'unhealthy' } : r.meta;
      this.upsert?.run(r.nodeId, r.appId, r.namespace, r.address, r.port, JSON.stringify(meta), at + this.ttlMs);
      return true;
    }) === true;
  }

  private query(app: AppKey): Instance[] | null {
    return this.guard(() => {
      const rows = (this.select?.all(app.namespace, app.appId, Date.now()) ?? []) as unknown as Row[];
      return rows.map((row) => ({
        appId: row.app_id, namespace: row.namespace, nodeId: row.node_id, address: row.address, port: row.port,
        meta: JSON.parse(row.meta) as Record<string, string>,
      }));
    });
  }

  private queryActors(namespace: string): Instance[] | null {
    return this.guard(() => {
      const rows = (this.selectActors?.all(namespace, Date.now()) ?? []) as unknown as Row[];
      return rows.map((row) => ({
        appId: row.app_id, namespace: row.namespace, nodeId: row.node_id, address: row.address, port: row.port,
        meta: JSON.parse(row.meta) as Record<string, string>,
      }));
    });
  }

  private poll(): void {
    for (const w of this.watches.values()) {
      const list = this.query(w.app);
      if (list === null) continue;
      const text = JSON.stringify(list);
      if (text === w.last) continue;
      w.last = text;
      for (const l of w.listeners) l(list);
    }
    for (const w of this.actorWatches.values()) {
      const list = this.queryActors(w.namespace);
      if (list === null) continue;
      const text = JSON.stringify(list);
      if (text === w.last) continue;
      w.last = text;
      for (const l of w.listeners) l(list);
    }
  }

  /** Runs a registry operation; a failure keeps the last known good state and is reported once. */
  private guard<T>(fn: () => T): T | null {
    if (this.db === null) return null;
    try {
      const v = fn();
      if (!this.healthy) this.ctx.log('info', 'local registry is readable again', { path: this.path });
      this.healthy = true;
      this.lastSuccessAt = Date.now();
      return v;
    } catch (err) {
      if (this.healthy) this.ctx.log('warn', 'local registry failed; routing with the last known instances', { path: this.path, err: (err as Error).message });
      this.healthy = false;
      this.lastError = (err as Error).message;
      return null;
    }
  }
}

registerResolver('local', (ctx) => new LocalResolver(ctx));
