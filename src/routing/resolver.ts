/**
 * Name resolution: how a node learns where the instances of an app are.
 *
 * A resolver is registered by scheme (`local`, `static`, `consul`) and created once per node
 * from the node's config. Contract:
 * - `register` announces an app this node serves; it may be called before `start` has
 *   reached its backend, and must keep retrying in the background rather than fail the node.
 * - `watch` delivers the full current instance list of one app whenever it changes, never
 *   synchronously from inside `watch`; the first delivery may be an empty list. A resolver
 *   whose backend is unreachable keeps delivering nothing new: the last known good list stays.
 * - `status` is cheap and synchronous (it is read by `/v1.0/metadata`).
 */
import type { WeftError } from '../errors.ts';

/** One app served by one node: where to call it node-to-node. */
export interface Instance {
  readonly appId: string;
  readonly namespace: string;
  /** Stable id of the node that serves it (unique per host and port). */
  readonly nodeId: string;
  /** Address and port of that node's peer (node-to-node) server. */
  readonly address: string;
  readonly port: number;
  /** Free-form facts: API ports, actor types, version. */
  readonly meta: Readonly<Record<string, string>>;
}

/** What a node announces for each app it serves. */
export interface Registration extends Instance {
  /** The node's health endpoint, for resolvers whose backend checks over HTTP. */
  readonly healthUrl?: string;
  /** Tags for resolvers that have them. */
  readonly tags?: readonly string[];
  /**
   * false: the app failed its health checks. The registration stays (the node lives, its lease
   * is renewed) but `watch` leaves the instance out until it is registered healthy again;
   * `watchActors` still lists it (actor membership follows the node, not the app's health).
   */
  readonly appHealthy?: boolean;
}

export interface AppKey {
  readonly appId: string;
  readonly namespace: string;
}

export interface ResolverStatus {
  readonly scheme: string;
  /** The backend answered its last request. */
  readonly healthy: boolean;
  /** Why not, when it did not. */
  readonly lastError?: string;
  /** ms since the epoch of the last successful exchange with the backend. */
  readonly lastSuccessAt?: number;
  /**
   * This node's lease: ms since the epoch when the oldest of its registrations was last renewed,
   * taken when the renewal was sent (the backend keeps a registration alive no longer than its
   * TTL past that); 0 when the backend forgot one. Absent while the node registered nothing.
   * Actor fencing judges contact by it, since only a renewal keeps others from counting the
   * node gone.
   */
  readonly renewedAt?: number;
}

export interface Resolver {
  readonly scheme: string;
  start(): Promise<void>;
  register(registration: Registration): Promise<void>;
  deregister(registration: Registration): Promise<void>;
  watch(app: AppKey, onChange: (instances: readonly Instance[]) => void): () => void;
  /**
   * Actor placement's membership: delivers, like `watch`, the full list of instances in
   * `namespace` whose registration meta carries `actor_types` (a comma-separated list, possibly
   * empty while an app is leaving), whenever that list or any of their meta changes.
   * Optional: a resolver without it hosts no actors across nodes.
   */
  watchActors?(namespace: string, onChange: (instances: readonly Instance[]) => void): () => void;
  status(): ResolverStatus;
  close(): Promise<void>;
}

/** What a resolver factory gets: its own section of the node config, and the node's identity. */
export interface ResolverContext {
  readonly nodeId: string;
  readonly options: Readonly<Record<string, unknown>>;
  readonly log: (level: 'info' | 'warn' | 'error', msg: string, fields?: Record<string, unknown>) => void;
  /** Throws a config error naming the field, e.g. `resolver.consul.address`. */
  readonly configError: (field: string, problem: string) => WeftError;
}

export type ResolverFactory = (ctx: ResolverContext) => Resolver;

const factories = new Map<string, ResolverFactory>();

export function registerResolver(scheme: string, factory: ResolverFactory): void {
  factories.set(scheme, factory);
}

export function resolverSchemes(): string[] {
  return [...factories.keys()];
}

export function createResolver(scheme: string, ctx: ResolverContext): Resolver {
  const factory = factories.get(scheme);
  if (factory === undefined) {
    throw ctx.configError('resolver.type', `unknown resolver "${scheme}" (known: ${resolverSchemes().join(', ')})`);
  }
  return factory(ctx);
}

/** Registration meta key: the actor types an app hosts, comma-separated (empty: hosts none now). */
export const ACTOR_TYPES_META = 'actor_types';
/** Registration meta key: the placement fingerprint this node has applied and drained for (its handoff acknowledgement). */
export const PLACEMENT_ACK_META = 'weft_placement';

export function appKey(appId: string, namespace: string): string {
  return `${namespace}/${appId}`;
}
