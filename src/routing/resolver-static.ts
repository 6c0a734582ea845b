/**
 * `static`: instances listed in the node's config, for tests and fixed topologies.
 *
 * ```yaml
 * resolver:
 *   type: static
 *   static:
 *     instances:
 *       - { appId: orders, namespace: default, address: 10.0.0.5, port: 50002, nodeId: host-b }
 * ```
 * The node's own apps are added as they register, so a node can always call itself.
 */
import { appKey, registerResolver, type AppKey, type Instance, type Registration, type Resolver, type ResolverContext, type ResolverStatus } from './resolver.ts';

export class StaticResolver implements Resolver {
  readonly scheme = 'static';
  private readonly instances: Instance[] = [];
  private readonly listeners = new Map<string, Set<(list: readonly Instance[]) => void>>();

  constructor(ctx: ResolverContext) {
    const list = ctx.options['instances'] ?? [];
    if (!Array.isArray(list)) throw ctx.configError('resolver.static.instances', 'must be a list');
    list.forEach((raw: unknown, i) => {
      const field = `resolver.static.instances[${i}]`;
      if (typeof raw !== 'object' || raw === null) throw ctx.configError(field, 'must be a mapping');
      const r = raw as Record<string, unknown>;
      if (typeof r['appId'] !== 'string' || r['appId'] === '') throw ctx.configError(`${field}.appId`, 'is required');
      if (typeof r['address'] !== 'string' || r['address'] === '') throw ctx.configError(`${field}.address`, 'is required');
      const port = r['port'];
      if (typeof port !== 'number' || !Number.isInteger(port) || port < 1 || port > 65535) throw ctx.configError(`${field}.port`, 'must be an integer from 1 to 65535');
      this.instances.push({
        appId: r['appId'],
        namespace: typeof r['namespace'] === 'string' ? r['namespace'] : 'default',
        nodeId: typeof r['nodeId'] === 'string' ? r['nodeId'] : `${r['address']}:${port}`,
        address: r['address'],
        port,
        meta: {},
      });
    });
  }

  async start(): Promise<void> {}

  async register(registration: Registration): Promise<void> {
    this.instances.push(registration);
    this.notify(registration);
  }

  async deregister(registration: Registration): Promise<void> {
    const i = this.instances.findIndex((x) => x.nodeId === registration.nodeId && x.appId === registration.appId && x.namespace === registration.namespace);
    if (i >= 0) this.instances.splice(i, 1);
    this.notify(registration);
  }

  watch(app: AppKey, onChange: (instances: readonly Instance[]) => void): () => void {
    const key = appKey(app.appId, app.namespace);
    let set = this.listeners.get(key);
    if (set === undefined) this.listeners.set(key, (set = new Set()));
    set.add(onChange);
    queueMicrotask(() => onChange(this.list(app)));
    return () => {
      set.delete(onChange);
      if (set.size === 0 && this.listeners.get(key) === set) this.listeners.delete(key);
    };
  }

  status(): ResolverStatus {
    return { scheme: this.scheme, healthy: true };
  }

  async close(): Promise<void> {
    this.listeners.clear();
  }

  private list(app: AppKey): Instance[] {
    return this.instances.filter((i) => i.appId === app.appId && i.namespace === app.namespace);
  }

  private notify(app: AppKey): void {
    const set = this.listeners.get(appKey(app.appId, app.namespace));
    if (set === undefined) return;
    const list = this.list(app);
    for (const l of set) queueMicrotask(() => l(list));
  }
}

registerResolver('static', (ctx) => new StaticResolver(ctx));
