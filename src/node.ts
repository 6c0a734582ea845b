/**
 * A weft node: wires the parts together, starts them in order and stops them in reverse.
 *
 * Start: security (CA, access policies) → app channels → peer server (mTLS) → identities →
 * resolver → outbound (workers or inline, fed the identities) → routing → HTTP/gRPC API
 * listeners → registrations. Stop (SIGTERM/SIGINT through the CLI): stop taking new
 * calls, deregister, let calls in flight finish for up to `timeouts.shutdown`, then close
 * peers, workers and the resolver.
 */
import { createServer, type Server } from 'node:http';
import { homedir, hostname } from 'node:os';
import type { AddressInfo } from 'node:net';
import type { NodeConfig, AppConfig } from './config.ts';
import { configError } from './config.ts';
import { WeftError } from './errors.ts';
import { Metrics } from './observability/metrics.ts';
import { createLogger, type Logger } from './observability/log.ts';
import { createResolver, type Registration, type Resolver } from './routing/resolver.ts';
import { loadResolvers } from './routing/setup.ts';
import { RoutingTable } from './routing/table.ts';
import { createDispatcher, type Dispatcher } from './dispatch.ts';
import { loadResiliency } from './resiliency/load.ts';
import { Invoker } from './invoker.ts';
import { HttpAppChannel } from './appchannel/http.ts';
import { AppHealth } from './appchannel/health.ts';
import { createAppChannel, speaksHttp, type AppChannel } from './appchannel/channel.ts';
import { PeerServer } from './peer/server.ts';
import { createHttpApi } from './ingress/http.ts';
import { closeServer, trackConnections } from './ingress/close.ts';
import { createGrpcApi, type GrpcApi } from './ingress/grpc.ts';
import { grpcStatusName, installFallback, proxyHandler } from './ingress/grpc-proxy.ts';
import type { NodeSecurity } from './security/node-security.ts';
import { NodeActors } from './actors/node-actors.ts';
import { chooseActorStore } from './state/components.ts';
import { defaultRegistryPath } from './routing/resolver-local.ts';
import { OFF, Tracer } from './observability/tracing.ts';
import type { TraceExport } from './observability/tracing-export.ts';

export const RUNTIME_VERSION = 'weft/0.1.0';

export interface NodePorts {
  readonly http: number;
  /** Dapr's gRPC API; null when `grpc.enabled` is false. */
  readonly grpc: number | null;
  readonly peer: number;
  readonly metrics: number | null;
  /** Per-app HTTP API listeners, by app id. */
  readonly apps: Readonly<Record<string, number>>;
}

/** A listener of the node, by the config section that sets its port. */
export type Listener = 'http' | 'grpc' | 'peer' | 'metrics';

export interface StartOptions {
  readonly logger?: Logger;
  /**
   * Listeners whose configured port is only a preference (`weft run`'s Dapr defaults): when it
   * is taken, the listener binds any free port instead and the ready line says which. The bind
   * itself is the claim, so two nodes starting at once cannot both pick the same free port, as
   * they could when a port was probed first and bound later.
   */
  readonly portFallback?: readonly Listener[];
}

function addressInUse(err: unknown): boolean {
  const e = err as { code?: unknown; message?: unknown; cause?: unknown } | null;
  if (e === null || typeof e !== 'object') return false;
  return e.code === 'EADDRINUSE' || /EADDRINUSE/.test(String(e.message)) || (e.cause !== undefined && addressInUse(e.cause));
}

function listen(server: Server, host: string, port: number): Promise<number> {
  trackConnections(server);
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve((server.address() as AddressInfo).port);
    });
  });
}

/** How a stop went. */
export interface StopReport {
  /** Parts whose calls were still running when the grace ran out, and were cut off. */
  readonly forced: readonly string[];
}

export class WeftNode {
  readonly config: NodeConfig;
  log: Logger;
  readonly metrics: Metrics;
  nodeId = '';
  ports: NodePorts = { http: 0, grpc: null, peer: 0, metrics: null, apps: {} };
  private resolver: Resolver | null = null;
  private dispatcher: Dispatcher | null = null;
  private routing: RoutingTable | null = null;
  private peer: PeerServer | null = null;
  private security: NodeSecurity | null = null;
  private readonly channels = new Map<string, AppChannel>();
  /** App health checks, by `${namespace}/${appId}` (apps with enableAppHealthCheck). */
  private readonly health = new Map<string, AppHealth>();
  private readonly servers: Server[] = [];
  private grpcApi: GrpcApi | null = null;
  /** Peer channels of proxied gRPC calls, on the main thread (src/ingress/grpc-proxy.ts). */
  private proxyOutbound: { close(): void } | null = null;
  private metricsServer: Server | null = null;
  private registrations: Registration[] = [];
  private actors: NodeActors | null = null;
  /** The node's tracer (OFF unless tracing is configured) and its one exporter. */
  tracer: Tracer = OFF;
  private traces: TraceExport | null = null;
  private state: 'new' | 'starting' | 'ready' | 'stopping' | 'stopped' = 'new';
  private readonly portFallback: ReadonlySet<Listener>;

  private constructor(config: NodeConfig, log: Logger, portFallback: readonly Listener[]) {
    this.config = config;
    this.log = log;
    this.portFallback = new Set(portFallback);
    this.metrics = new Metrics(config.nodeId ?? `${hostname()}-${config.peer.port}`);
  }

  static async start(config: NodeConfig, options: StartOptions = {}): Promise<WeftNode> {
    const node = new WeftNode(config, options.logger ?? createLogger(config.logLevel), options.portFallback ?? []);
    try {
      await node.boot();
    } catch (err) {
      await node.stop().catch(() => {});
      throw err;
    }
    return node;
  }

  get ready(): boolean {
    return this.state === 'ready';
  }

  /** Binds `listener` on `port`; if that port is only a preference and taken, on any free port. */
  private async claim(listener: Listener, port: number, bind: (port: number) => Promise<number>): Promise<number> {
    try {
      return await bind(port);
    } catch (err) {
      if (port === 0 || !this.portFallback.has(listener) || !addressInUse(err)) throw err;
      this.log.info({ listener, port }, 'the preferred port is taken: listening on any free port');
      return bind(0);
    }
  }

  private async boot(): Promise<void> {
    const { config } = this;
    this.state = 'starting';
    // The actor state store: a bad component (or a host-local store for nodes on several
    // hosts) stops the start here, before anything listens.
    const registryOption = config.resolver.options['path'];
    const actorStore = chooseActorStore({
      resourcesPaths: config.resourcesPaths, resolverType: config.resolver.type,
      registryPath: typeof registryOption === 'string' && registryOption !== '' ? registryOption.replace(/^~(?=\/)/, homedir()) : defaultRegistryPath(),
    });
    if (config.tracing.enabled) {
      // Loaded only with tracing on: the OTel SDK and exporters.
      const { TraceExport, createExporter, nodeResource } = await import('./observability/tracing-export.ts');
      const who = { nodeId: config.nodeId ?? hostname(), appId: config.apps[0]?.appId };
      this.traces = new TraceExport(config.tracing, await createExporter(config.tracing), nodeResource(config.tracing, who), this.metrics.registry);
      this.tracer = new Tracer(true, { ratio: config.tracing.ratio, parentBased: config.tracing.parentBased }, this.traces);
    }
    const tracer = this.tracer;
    // read by a getter in the peer server's hooks
    const self = this;
    for (const app of config.apps) {
      if (app.appPort !== undefined) this.channels.set(`${app.namespace}/${app.appId}`, createAppChannel(app));
    }

    // mTLS unless plaintext was asked for explicitly (config.ts refuses a missing CA elsewhere).
    let security: NodeSecurity | null = null;
    if (config.security.plaintext) {
      this.log.warn({ peer: `${config.peer.host}:${config.peer.port}` },
        'PLAINTEXT BETWEEN NODES (security.plaintext: true): node-to-node calls are neither encrypted nor authenticated, the calling node\'s word decides which app is calling, and access policies are not enforced. Use it only on one trusted host.');
    } else {
      // Loaded only with TLS: it brings node-forge.
      const { NodeSecurity } = await import('./security/node-security.ts');
      security = NodeSecurity.load(config, this.log, this.metrics);
      this.security = security;
    }
    // A peer port that is only a preference may end up another: the id waits for the bind.
    const knownNodeId = config.nodeId ?? (config.peer.port === 0 || this.portFallback.has('peer') ? undefined : `${hostname()}-${config.peer.port}`);
    const tls = security === null ? null : await security.serverSide(knownNodeId);
    this.peer = new PeerServer({
      lookup: (appId, namespace) => this.channels.get(`${namespace}/${appId}`),
      // With mTLS: the caller from its verified certificate, then the target's access policy.
      // Without: the caller's node vouches for the caller (plaintext is for one trusted host).
      authorize: security !== null
        ? (call, head) => security.authorize(call, head)
        : (_call, head) => ({ appId: head.callerAppId, namespace: head.callerNamespace }),
      onCall: (head, status, started, caller) => {
        const ms = Number(process.hrtime.bigint() - started) / 1e6;
        const src = caller?.appId ?? (security === null ? head.callerAppId : 'unknown');
        if (typeof status !== 'number' && status.code === 'WEFT_CANCELLED') this.metrics.servedCancelled(head.appId, src);
        else this.metrics.served(head.appId, src, typeof status === 'number' ? String(status) : status.code, ms);
      },
      onProxyCall: (head, outcome, started, caller) => {
        const ms = Number(process.hrtime.bigint() - started) / 1e6;
        const src = caller?.appId ?? (security === null ? head.callerAppId : 'unknown');
        const status = outcome instanceof WeftError ? outcome.code : outcome.cancelled ? 'CANCELLED' : grpcStatusName(outcome.code);
        this.metrics.served(head.appId, src, status, ms);
      },
      // Actor calls other nodes routed here (ownership check, turn, app callback).
      actor: (head, headers, body, signal, msLeft) => {
        if (this.actors === null) throw new WeftError('WEFT_ACTOR_MOVED', 'this node\'s actors are not started');
        return this.actors.serveRemote(head, headers, body, signal, msLeft);
      },
      tracer,
      // the node's logger as it is when a call fails (it gains the node id once the port is bound)
      get log() { return self.log; },
    }, tls?.options);
    const peer = this.peer;
    const peerPort = await this.claim('peer', config.peer.port, (port) => peer.bind(config.peer.host, port, tls?.credentials));
    this.nodeId = config.nodeId ?? `${hostname()}-${peerPort}`;
    this.log = this.log.child({ nodeId: this.nodeId });
    this.metrics.registry.setDefaultLabels({ node_id: this.nodeId }); // the port bound may not be the one configured
    if (this.traces !== null) {
      const { nodeResource } = await import('./observability/tracing-export.ts');
      this.traces.identify(nodeResource(config.tracing, { nodeId: this.nodeId, appId: config.apps[0]?.appId }));
    }
    if (security !== null) {
      this.peer.onTlsClientError((remote, err) => security.tlsFailure('incoming', remote, err.message));
      await security.start(this.nodeId);
    }

    await loadResolvers(config.resolver.type);
    this.resolver = createResolver(config.resolver.type, {
      nodeId: this.nodeId,
      options: config.resolver.options,
      log: (level, msg, fields) => this.log[level](fields ?? {}, msg),
      configError: (field, problem) => configError(field, problem),
    });
    await this.resolver.start();
    const resiliency = loadResiliency(config.resiliency);
    for (const warning of resiliency.policies.warnings) this.log.warn({ warning }, 'resiliency policy adjusted');
    this.dispatcher = await createDispatcher(config.workers, (batch) => this.metrics.absorb(batch), {
      tls: security !== null,
      resiliency: resiliency.texts,
      budget: config.retryBudget,
      outlier: config.outlierDetection,
    }, {
      onTlsFailure: (peer, message) => security?.tlsFailure('outgoing', peer, message),
      onWorkerError: (err) => this.log.error({ err }, 'an outbound worker thread failed; its calls in flight failed and another thread takes its place'),
      spans: this.traces ?? undefined,
    });
    const dispatcher = this.dispatcher;
    // Before any routing snapshot: a thread that can route a call holds the certificate for it.
    security?.onIdentities((set) => dispatcher.setIdentities(set));
    this.routing = new RoutingTable(this.resolver, (snapshot) => dispatcher.publish(snapshot), config.routing);
    const routing = this.routing;
    this.metrics.watchRouting(() => routing.watchCount);
    const invoker = new Invoker(this.routing, this.dispatcher, this.metrics, this.log);
    const actors = new NodeActors({
      // Actor callbacks are HTTP, as in Dapr: an app on a gRPC app protocol hosts no actors.
      nodeId: this.nodeId, namespace: config.namespace, apps: config.apps.filter(speaksHttp), channels: this.channels,
      resolver: this.resolver, dispatcher, registry: this.metrics.registry, settings: config.actors,
      reannounce: () => this.reannounce(),
      tracer,
      log: (level, msg, fields) => this.log[level](fields ?? {}, msg),
      state: actorStore,
    });
    this.actors = actors;

    let metricsPort: number | null = null;
    if (config.metrics.enabled) {
      const metrics = this.metrics;
      this.metricsServer = createServer((req, res) => {
        if (req.url !== '/metrics') {
          res.writeHead(404).end();
          return;
        }
        metrics.text().then(
          (text) => res.writeHead(200, { 'content-type': metrics.registry.contentType }).end(text),
          (err: unknown) => res.writeHead(500).end(String(err)),
        );
      });
      const server = this.metricsServer;
      metricsPort = await this.claim('metrics', config.metrics.port, (port) => listen(server, config.metrics.host, port));
    }

    const primary: AppConfig | undefined = config.apps[0];
    const api = (callerAppId: string, namespace: string): Server => createHttpApi({
      callerAppId, namespace,
      apiToken: config.apiToken,
      maxBodySize: config.maxBodySize,
      invokeTimeoutMs: config.timeouts.invoke,
      headersTimeoutMs: config.timeouts.headers,
      maxConnections: config.http.maxConnections,
      invoker,
      ready: () => this.ready,
      outboundReady: () => this.state === 'ready',
      servesApp: (appId) => config.apps.some((a) => a.appId === appId),
      appUnhealthy: (appId) => this.appUnhealthy(appId),
      metadata: () => this.metadata(),
      actors,
      tracer,
    });
    const httpServer = api(primary?.appId ?? '', primary?.namespace ?? config.namespace);
    this.servers.push(httpServer);
    const httpPort = await this.claim('http', config.http.port, (port) => listen(httpServer, config.http.host, port));
    const appPorts: Record<string, number> = {};
    for (const app of config.apps.slice(1)) {
      if (app.httpPort === undefined) continue;
      const server = api(app.appId, app.namespace);
      this.servers.push(server);
      appPorts[app.appId] = await listen(server, config.http.host, app.httpPort);
    }
    // Dapr's gRPC API, speaking for the primary app like the main HTTP listener.
    let grpcPort: number | null = null;
    if (config.grpc.enabled) {
      this.grpcApi = createGrpcApi({
        callerAppId: primary?.appId ?? '', namespace: primary?.namespace ?? config.namespace,
        apiToken: config.apiToken, maxBodySize: config.maxBodySize, invokeTimeoutMs: config.timeouts.invoke, invoker,
        ready: () => this.ready,
        metadata: () => this.metadata(),
        actors,
        tracer,
      });
      // Dapr's proxy mode on the same port. Its streams open on peer channels of their own, on
      // this thread: a relayed message is passed on as it comes, and a thread hop per message
      // would cost more than the relay itself; separate connections also keep a large stream's
      // flow control off the connections that carry invocations.
      const { Outbound } = await import('../workers/outbound.ts');
      const outbound = new Outbound({ tls: security !== null, onTlsFailure: (peer, message) => security?.tlsFailure('outgoing', peer, message) });
      this.proxyOutbound = outbound;
      security?.onIdentities((set) => outbound.setIdentities(set));
      const routing = this.routing;
      const proxying = installFallback(this.grpcApi.server, proxyHandler({
        callerAppId: primary?.appId ?? '', namespace: primary?.namespace ?? config.namespace, apiToken: config.apiToken,
        routing, channel: (peer, appId, ns) => outbound.peerChannel(peer, appId, ns), plaintext: security === null, metrics: this.metrics, tracer,
      }));
      if (!proxying) this.log.warn('gRPC proxy mode is off: this grpc-js version does not keep its handlers where weft looks for them');
      const grpcApi = this.grpcApi;
      grpcPort = await this.claim('grpc', config.grpc.port, (port) => grpcApi.bind(config.grpc.host, port));
    }
    this.ports = { http: httpPort, grpc: grpcPort, peer: peerPort, metrics: metricsPort, apps: appPorts };

    await this.startHealthChecks();
    this.registrations = config.apps.filter((a) => a.appPort !== undefined).map((app) => ({
      appId: app.appId,
      namespace: app.namespace,
      nodeId: this.nodeId,
      address: config.advertiseAddress,
      port: peerPort,
      meta: { weft_version: RUNTIME_VERSION, http_port: String(appPorts[app.appId] ?? httpPort) },
      healthUrl: `http://${config.http.host}:${httpPort}/v1.0/healthz?appid=${app.appId}`,
      ...this.appHealthField(app.namespace, app.appId),
    }));
    for (const r of this.registrations) await this.resolver.register(r);
    // Reads each app's /dapr/config once it is up, then announces its actor types (reannounce).
    actors.start();
    this.state = 'ready';
    this.log.info({ ports: this.ports, workers: config.workers, resolver: config.resolver.type, apps: config.apps.map((a) => a.appId), peerTls: security === null ? 'plaintext' : 'mtls' }, 'weft node ready');
  }

  /**
   * Starts each app's health checks (first probe awaited, so a dead app is never announced as
   * routable) and attaches them to its channel, which then refuses calls while it is unhealthy.
   */
  private async startHealthChecks(): Promise<void> {
    for (const app of this.config.apps) {
      const channel = this.channels.get(`${app.namespace}/${app.appId}`);
      if (!app.health.enabled || channel === undefined) continue;
      // The checks are HTTP probes: an app on a gRPC app protocol is not probed (Dapr probes those with its gRPC health check, which weft does not call yet).
      if (!(channel instanceof HttpAppChannel)) {
        this.log.warn({ appId: app.appId, appProtocol: app.appProtocol }, 'app health checks are HTTP probes: not run for an app on a gRPC app protocol');
        continue;
      }
      const checks = new AppHealth(app, (healthy, why) => this.appHealthChanged(app.namespace, app.appId, healthy, why));
      this.health.set(`${app.namespace}/${app.appId}`, checks);
      channel.health = checks;
      await checks.start();
      if (!checks.healthy) this.log.warn({ appId: app.appId, err: checks.status().lastError }, 'app failed its first health check: not routed to until it passes');
    }
  }

  private appHealthField(namespace: string, appId: string): { appHealthy?: boolean } {
    const checks = this.health.get(`${namespace}/${appId}`);
    return checks === undefined ? {} : { appHealthy: checks.healthy };
  }

  /** An app's health changed: announce it so routing leaves it out (or takes it back). */
  private appHealthChanged(namespace: string, appId: string, healthy: boolean, why: string | undefined): void {
    if (healthy) this.log.info({ appId }, 'app passes its health checks again: routed to again');
    else this.log.warn({ appId, err: why, threshold: this.config.apps.find((a) => a.appId === appId && a.namespace === namespace)?.health.threshold }, 'app failed its health checks: no longer routed to');
    const resolver = this.resolver;
    if (resolver === null || this.state === 'stopping' || this.state === 'stopped') return;
    this.registrations = this.registrations.map((r) => (r.appId === appId && r.namespace === namespace ? { ...r, appHealthy: healthy } : r));
    for (const r of this.registrations) {
      if (r.appId !== appId || r.namespace !== namespace) continue;
      resolver.register(r).catch((err: unknown) => this.log.warn({ err: (err as Error).message, appId }, 'could not announce the app\'s health'));
    }
  }

  /** Why an app this node serves is not taking calls (its health checks), or undefined. */
  appUnhealthy(appId: string): string | undefined {
    const checks = this.config.apps.filter((a) => a.appId === appId).map((a) => this.health.get(`${a.namespace}/${a.appId}`)).find((h) => h !== undefined);
    return checks === undefined || checks.healthy ? undefined : (checks.status().lastError ?? 'unhealthy');
  }

  /** Re-registers the apps with their current actor meta (types hosted, placement acknowledgement). */
  private reannounce(): void {
    const resolver = this.resolver;
    const actors = this.actors;
    if (resolver === null || actors === null || this.state === 'stopped') return;
    this.registrations = this.registrations.map((r) => ({ ...r, meta: { ...r.meta, ...actors.meta(r.appId) } }));
    for (const r of this.registrations) {
      resolver.register(r).catch((err: unknown) => this.log.warn({ err: (err as Error).message, appId: r.appId }, 'could not update the registration\'s actor meta'));
    }
  }

  metadata(): Record<string, unknown> {
    const primary = this.config.apps[0];
    return {
      id: primary?.appId ?? '',
      runtimeVersion: RUNTIME_VERSION,
      enabledFeatures: [],
      actors: this.actors?.metadataList() ?? [],
      components: [],
      httpEndpoints: [],
      subscriptions: [],
      extended: {
        nodeId: this.nodeId,
        namespace: this.config.namespace,
        outbound: this.dispatcher?.mode ?? 'none',
        peerTls: this.config.security.plaintext ? 'plaintext' : 'mtls',
        tracing: this.config.tracing.enabled ? { protocol: this.config.tracing.protocol, endpoint: this.config.tracing.endpoint, samplingRatio: this.config.tracing.ratio, parentBased: this.config.tracing.parentBased } : null,
        trustDomain: this.security?.trustDomain ?? null,
        resolver: this.resolver?.status() ?? null,
        apps: this.config.apps.map((a) => a.appId),
        appHealth: Object.fromEntries([...this.health.values()].map((h) => [h.app.appId, h.status()])),
      },
      appConnectionProperties: primary?.appPort === undefined ? {} : {
        port: primary.appPort,
        protocol: primary.appProtocol,
        channelAddress: primary.appHost,
        maxConcurrency: primary.appMaxConnections,
        // As Dapr shows it: only with health checks on; interval and timeout as Go durations.
        ...(primary.health.enabled ? {
          health: {
            healthCheckPath: primary.health.path,
            healthProbeInterval: `${primary.health.intervalMs / 1000}s`,
            healthProbeTimeout: `${primary.health.timeoutMs}ms`,
            healthThreshold: primary.health.threshold,
          },
        } : {}),
      },
    };
  }

  /** Graceful stop: no new calls, deregister, finish calls in flight (bounded), close everything. */
  async stop(): Promise<StopReport> {
    if (this.state === 'stopping' || this.state === 'stopped') return { forced: [] };
    this.state = 'stopping';
    const grace = this.config.timeouts.shutdown;
    const errors: unknown[] = [];
    const forced: string[] = [];
    const attempt = async (what: string, fn: () => Promise<void> | void): Promise<void> => {
      try {
        await fn();
      } catch (err) {
        errors.push(err);
        this.log.warn({ err: (err as Error).message }, `stopping: ${what} failed`);
      }
    };
    // Actors first: hand them over (drain, DELETEs, acknowledgement) while still registered.
    await attempt('actors', () => this.actors?.leave());
    for (const r of this.registrations) await attempt('deregister', () => this.resolver?.deregister(r));
    await Promise.all([
      ...this.servers.map((s) => attempt('http api', async () => {
        if (!(await closeServer(s, grace))) forced.push('http api');
      })),
      attempt('grpc api', () => this.grpcApi?.close(grace)),
      attempt('peer server', async () => {
        if (this.peer !== null && !(await this.peer.close(grace))) forced.push('peer server');
      }),
    ]);
    if (forced.length > 0) this.log.warn({ forced }, 'stopping: calls still running at the end of the grace were cut off');
    // Stop routing updates before the dispatcher closes: a resolver poll landing while the
    // worker pool shuts down would publish into a closed BroadcastChannel and throw.
    await attempt('actors', () => this.actors?.close());
    this.routing?.close();
    await attempt('outbound', () => this.dispatcher?.close());
    this.proxyOutbound?.close();
    this.security?.close();
    for (const h of this.health.values()) await attempt('app health checks', () => h.stop());
    await attempt('resolver', () => this.resolver?.close());
    for (const c of this.channels.values()) await attempt('app channel', () => c.close());
    // Last: what the calls above traced is exported (bounded) before the exporter stops.
    await attempt('tracing', () => this.traces?.shutdown());
    if (this.metricsServer !== null) await attempt('metrics', async () => void await closeServer(this.metricsServer as Server, 100));
    this.state = 'stopped';
    this.log.info('weft node stopped');
    this.log.flush?.();
    if (errors.length > 0 && errors.every((e) => e instanceof WeftError)) throw errors[0];
    return { forced };
  }
}
