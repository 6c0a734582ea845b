/**
 * The routing table: the main thread's view of where each app's instances are.
 *
 * Apps are watched lazily, from the first call that names them. Every change makes a new
 * immutable snapshot with a higher version, published to the outbound threads. A call carries
 * the version it was routed with, so a worker never routes with an older view than the main
 * thread had.
 *
 * Watches are per-target state that callers create, so they expire: a target no call named for
 * `idleMs` (default 5 min) is unwatched and leaves the snapshot; one with no instances (an
 * unknown id, or a typo) after `emptyIdleMs` (default 10 s), and at most `maxEmpty` of those are
 * watched at once (the least recently called goes first). So any number of distinct unknown ids
 * costs a bounded number of watches and no snapshot entries (an empty list is not published: a
 * missing app routes as "no instance").
 */
import type { PeerAddress, RoutingSnapshot } from '../../workers/protocol.ts';
import { appKey, type Instance, type Resolver } from './resolver.ts';

/** How long the first call for an app waits for the resolver's first answer. */
const FIRST_ANSWER_WAIT_MS = 3000;

interface Watched {
  instances: readonly PeerAddress[];
  ready: boolean;
  waiters: Array<() => void>;
  unwatch: () => void;
  /** ms (Date.now) of the last call routed to it. */
  lastUsed: number;
}

export interface RoutingTableOptions {
  /** Unwatch a target with instances no call named for this long (ms). */
  readonly idleMs?: number;
  /** Unwatch a target with no instances no call named for this long (ms). */
  readonly emptyIdleMs?: number;
  /** At most this many targets without instances are watched at once. */
  readonly maxEmpty?: number;
  readonly now?: () => number;
}

export class RoutingTable {
  private readonly resolver: Resolver;
  private readonly publish: (snapshot: RoutingSnapshot) => void;
  /** In order of last use, oldest first (a Map keeps insertion order; a use re-inserts). */
  private readonly watched = new Map<string, Watched>();
  private current: RoutingSnapshot = { version: 0, apps: {} };
  private readonly idleMs: number;
  private readonly emptyIdleMs: number;
  private readonly maxEmpty: number;
  private readonly now: () => number;
  private readonly sweeper: NodeJS.Timeout;
  private empty = 0;

  constructor(resolver: Resolver, publish: (snapshot: RoutingSnapshot) => void, options: RoutingTableOptions = {}) {
    this.resolver = resolver;
    this.publish = publish;
    this.idleMs = options.idleMs ?? 300_000;
    this.emptyIdleMs = options.emptyIdleMs ?? 10_000;
    this.maxEmpty = options.maxEmpty ?? 256;
    this.now = options.now ?? Date.now;
    this.sweeper = setInterval(() => this.sweep(), Math.max(50, Math.min(this.emptyIdleMs, this.idleMs) / 2));
    this.sweeper.unref();
  }

  /** Targets watched now (the `weft_routing_watches` gauge). */
  get watchCount(): number {
    return this.watched.size;
  }

  get snapshot(): RoutingSnapshot {
    return this.current;
  }

  /**
   * The snapshot version to route a call for this app with: at once when the app is already
   * watched, else after the resolver's first answer (or a short wait).
   */
  route(appId: string, namespace: string): number | Promise<number> {
    const key = appKey(appId, namespace);
    const w = this.watched.get(key);
    if (w !== undefined) {
      w.lastUsed = this.now();
      // most recently used last
      this.watched.delete(key);
      this.watched.set(key, w);
      if (w.ready) return this.current.version;
    }
    return this.firstAnswer(key, appId, namespace);
  }

  /** The instances currently known for an app (for metadata and tests). */
  instances(appId: string, namespace: string): readonly PeerAddress[] {
    return this.current.apps[appKey(appId, namespace)] ?? [];
  }

  private firstAnswer(key: string, appId: string, namespace: string): Promise<number> {
    let w = this.watched.get(key);
    if (w === undefined) {
      const entry: Watched = { instances: [], ready: false, waiters: [], unwatch: () => {}, lastUsed: this.now() };
      this.watched.set(key, entry);
      this.empty++;
      if (this.empty > this.maxEmpty) this.evictEmpty(key);
      entry.unwatch = this.resolver.watch({ appId, namespace }, (list) => {
        if (this.watched.get(key) === entry) this.update(key, entry, list);
      });
      w = entry;
    }
    const entry = w;
    return new Promise((resolve) => {
      const timer = setTimeout(() => done(), FIRST_ANSWER_WAIT_MS);
      timer.unref();
      const done = (): void => {
        clearTimeout(timer);
        resolve(this.current.version);
      };
      entry.waiters.push(done);
    });
  }

  private update(key: string, entry: Watched, list: readonly Instance[]): void {
    const next = list.map((i): PeerAddress => ({ nodeId: i.nodeId, address: i.address, port: i.port }));
    next.sort((a, b) => (a.nodeId < b.nodeId ? -1 : a.nodeId > b.nodeId ? 1 : 0));
    const changed = !sameInstances(entry.instances, next);
    if (entry.instances.length === 0 && next.length > 0) this.empty--;
    else if (entry.instances.length > 0 && next.length === 0) this.empty++;
    entry.instances = next;
    if (changed) {
      const apps = { ...this.current.apps };
      if (next.length === 0) delete apps[key];
      else apps[key] = next;
      this.current = { version: this.current.version + 1, apps };
      this.publish(this.current);
    }
    entry.ready = true;
    const waiters = entry.waiters.splice(0);
    for (const w of waiters) w();
  }

  /**
   * Unwatches the least recently used targets without instances, beyond `maxEmpty` (never
   * `keep`): first those whose resolver has answered (known to be empty), then, if that is not
   * enough, those still waiting for a first answer.
   */
  private evictEmpty(keep: string): void {
    for (const answered of [true, false]) {
      for (const [key, w] of this.watched) {
        if (this.empty <= this.maxEmpty) return;
        if (key === keep || w.instances.length > 0 || w.ready !== answered) continue;
        this.drop(key, w);
      }
    }
  }

  /** Unwatches what no call named recently; one snapshot for all of it. */
  private sweep(): void {
    const now = this.now();
    let removed: string[] | null = null;
    for (const [key, w] of this.watched) {
      const idle = now - w.lastUsed;
      if (idle < (w.instances.length === 0 ? this.emptyIdleMs : this.idleMs)) continue;
      if (w.instances.length > 0) (removed ??= []).push(key);
      this.drop(key, w);
    }
    if (removed !== null) {
      const apps = { ...this.current.apps };
      for (const key of removed) delete apps[key];
      this.current = { version: this.current.version + 1, apps };
      this.publish(this.current);
    }
  }

  private drop(key: string, w: Watched): void {
    this.watched.delete(key);
    if (w.instances.length === 0) this.empty--;
    w.unwatch();
    // a call still waiting for the first answer goes on with what is known (nothing)
    for (const waiter of w.waiters.splice(0)) waiter();
  }

  close(): void {
    clearInterval(this.sweeper);
    for (const w of this.watched.values()) w.unwatch();
    for (const w of this.watched.values()) for (const waiter of w.waiters.splice(0)) waiter();
    this.watched.clear();
    this.empty = 0;
  }
}

function sameInstances(a: readonly PeerAddress[], b: readonly PeerAddress[]): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) {
    const x = a[i] as PeerAddress;
    const y = b[i] as PeerAddress;
    if (x.nodeId !== y.nodeId || x.address !== y.address || x.port !== y.port) return false;
  }
  return true;
}
