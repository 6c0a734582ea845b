/**
 * The routing table: the main thread's view of where each app's instances are.
 *
 * Apps are watched lazily, from the first call that names them, and stay watched. Every
 * change makes a new immutable snapshot with a higher version, published to the outbound
 * threads. A call carries the version it was routed with, so a worker never routes with an
 * older view than the main thread had.
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
}

export class RoutingTable {
  private readonly resolver: Resolver;
  private readonly publish: (snapshot: RoutingSnapshot) => void;
  private readonly watched = new Map<string, Watched>();
  private current: RoutingSnapshot = { version: 0, apps: {} };

  constructor(resolver: Resolver, publish: (snapshot: RoutingSnapshot) => void) {
    this.resolver = resolver;
    this.publish = publish;
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
    if (w !== undefined && w.ready) return this.current.version;
    return this.firstAnswer(key, appId, namespace);
  }

  /** The instances currently known for an app (for metadata and tests). */
  instances(appId: string, namespace: string): readonly PeerAddress[] {
    return this.current.apps[appKey(appId, namespace)] ?? [];
  }

  private firstAnswer(key: string, appId: string, namespace: string): Promise<number> {
    let w = this.watched.get(key);
    if (w === undefined) {
      const entry: Watched = { instances: [], ready: false, waiters: [], unwatch: () => {} };
      this.watched.set(key, entry);
      entry.unwatch = this.resolver.watch({ appId, namespace }, (list) => this.update(key, entry, list));
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
    const changed = !sameInstances(entry.instances, next) || !(key in this.current.apps);
    entry.instances = next;
    if (changed) {
      this.current = { version: this.current.version + 1, apps: { ...this.current.apps, [key]: next } };
      this.publish(this.current);
    }
    entry.ready = true;
    const waiters = entry.waiters.splice(0);
    for (const w of waiters) w();
  }

  close(): void {
    for (const w of this.watched.values()) w.unwatch();
    this.watched.clear();
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
