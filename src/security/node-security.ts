/**
 * A node's mTLS, in one object: its CA, its identities (the node's certificate and one per app,
 * from IdentityManager, renewed at half life), the peer server's rotating credentials, the
 * identities handed to the outbound side, and the check of every incoming peer call (caller from
 * the verified client certificate, then the target app's access policy).
 *
 * Life: `load()` reads the CA (creating the host-local one if that is the configured default)
 * and the access policies; `serverSide()` gives the peer server's credentials before it binds;
 * `start(nodeId)` issues the identities once the node id is known (it may depend on the bound
 * port) and swaps the real node certificate in; `onIdentities()` feeds the outbound side now and
 * after every renewal.
 */
import { randomBytes } from 'node:crypto';
import { isIP } from 'node:net';
import { dirname } from 'node:path';
import type * as grpc from '@grpc/grpc-js';
import type { NodeConfig, AccessControlSource } from '../config.ts';
import { readAccessControlFile } from '../config.ts';
import { WeftError } from '../errors.ts';
import type { Logger } from '../observability/log.ts';
import type { Metrics } from '../observability/metrics.ts';
import { claimRegistryDir } from '../routing/registry-dir.ts';
import type { CallHead } from '../peer/codec.ts';
import type { IdentitySet, WorkloadIdentity } from '../../workers/protocol.ts';
import { ALLOW_ALL, parseAccessControl, type AccessControl } from './acl.ts';
import { PeerAuthorizer } from './authorize.ts';
import { generateKeyPem, initOrLoadCa, issueNodeCert, loadCa, type CertificateAuthority } from './ca.ts';
import { IdentityManager, type RotatedEvent } from './identity.ts';
import { peerServerOptions, rotatingServerCredentials, type CallWithAuthContext, type RotatingServerCredentials } from './tls.ts';

/** Repeated log lines (a denied caller retrying, a misconfigured peer) at most this often per key. */
const LOG_EVERY_MS = 10_000;

function aclOf(source: AccessControlSource | undefined): AccessControl {
  if (source === undefined) return ALLOW_ALL;
  if ('file' in source) return parseAccessControl(readAccessControlFile(source.file), source.file);
  return parseAccessControl(source.inline, source.field);
}

export class NodeSecurity {
  readonly ca: CertificateAuthority;
  readonly trustDomain: string;
  private readonly config: NodeConfig;
  private readonly log: Logger;
  private readonly metrics: Metrics;
  private readonly acls = new Map<string, AccessControl>();
  private readonly defaultAcl: AccessControl;
  private readonly authorizer: PeerAuthorizer;
  private manager: IdentityManager | null = null;
  private server: RotatingServerCredentials | null = null;
  private readonly entries = new Map<string, WorkloadIdentity>();
  private roots = '';
  private setVersion = 0;
  private entryVersion = 0;
  private readonly listeners: Array<(set: IdentitySet) => void> = [];
  private readonly lastLogged = new Map<string, number>();

  private constructor(config: NodeConfig, ca: CertificateAuthority, log: Logger, metrics: Metrics) {
    this.config = config;
    this.log = log;
    this.metrics = metrics;
    this.trustDomain = config.security.trustDomain ?? ca.trustDomain;
    // Certificates carry the configured trust domain; the CA's is only its default.
    this.ca = this.trustDomain === ca.trustDomain ? ca : { ...ca, trustDomain: this.trustDomain };
    this.defaultAcl = aclOf(config.security.accessControl);
    for (const app of config.apps) {
      this.acls.set(`${app.namespace}/${app.appId}`, app.accessControl === undefined ? this.defaultAcl : aclOf(app.accessControl));
    }
    this.authorizer = new PeerAuthorizer({
      trustDomain: this.trustDomain,
      acl: (namespace, appId) => this.acls.get(`${namespace}/${appId}`) ?? this.defaultAcl,
      onDecision: (target, caller, allowed, reason) => {
        this.metrics.accessChecked(target.appId, caller?.appId ?? 'unknown', caller?.namespace ?? 'unknown', allowed);
        if (!allowed) {
          const who = caller === undefined ? 'an unidentified caller' : `${caller.namespace}/${caller.appId}`;
          this.rateLimited(`deny|${target.namespace}/${target.appId}|${who}|${reason}`, () => this.log.warn({ app: target.appId, caller: who, reason }, 'peer call refused'));
        }
      },
    });
  }

  /** Reads the CA (creating the host-local default on first use) and the access policies. */
  static load(config: NodeConfig, log: Logger, metrics: Metrics): NodeSecurity {
    const { caDir, caDirDefaulted } = config.security;
    if (caDir === undefined) throw new WeftError('WEFT_CONFIG', 'security.caDir: no CA directory (and plaintext is off)');
    let ca: CertificateAuthority;
    if (caDirDefaulted) {
      // The host-local CA lives in the registry's directory: one user's, like the registry.
      claimRegistryDir(dirname(caDir), 'resolver.local.path');
      const local = initOrLoadCa(caDir, { trustDomain: config.security.trustDomain ?? 'public' });
      if (local.created) log.info({ caDir, trustDomain: local.trustDomain }, 'created a host-local CA for mTLS between the nodes of this host (security.caDir to use your own)');
      ca = local;
    } else {
      ca = loadCa(caDir);
    }
    const security = new NodeSecurity(config, ca, log, metrics);
    if (security.trustDomain !== ca.trustDomain) {
      log.warn({ caTrustDomain: ca.trustDomain, trustDomain: security.trustDomain }, 'security.trustDomain differs from the CA\'s: this node\'s certificates name the configured one, and nodes of the CA\'s trust domain will refuse them');
    }
    return security;
  }

  /**
   * Credentials and options for the peer server. When the node id is not known yet (it is
   * derived from the port bound), the server starts with a throwaway certificate that no peer
   * accepts, replaced by `start()` before the node registers anywhere.
   */
  async serverSide(nodeId: string | undefined): Promise<{ credentials: grpc.ServerCredentials; options: grpc.ServerOptions }> {
    let material;
    if (nodeId !== undefined) {
      const node = (await this.start(nodeId)).node();
      material = { keyPem: node.keyPem, certPem: node.certPem, rootsPem: node.rootsPem };
    } else {
      const cert = issueNodeCert(this.ca, { nodeId: `starting-${randomBytes(6).toString('hex')}`, ttlMs: 10 * 60_000, keyPem: await generateKeyPem() });
      material = { keyPem: cert.keyPem, certPem: cert.chainPem, rootsPem: this.ca.trustBundlePem };
    }
    this.server = rotatingServerCredentials(material);
    return { credentials: this.server.credentials, options: peerServerOptions(this.config.security.nodeTtl) };
  }

  /** Issues the node's and the apps' certificates (once) and keeps them renewed. */
  async start(nodeId: string): Promise<IdentityManager> {
    if (this.manager !== null) return this.manager;
    const address = this.config.advertiseAddress;
    const manager = new IdentityManager({
      ca: this.ca,
      nodeId,
      ipAddresses: isIP(address) === 0 ? [] : [address],
      dnsNames: isIP(address) === 0 ? [address] : [],
      workloadTtlMs: this.config.security.workloadTtl,
      nodeTtlMs: this.config.security.nodeTtl,
      renewFraction: this.config.security.renewFraction,
      retryMs: Math.min(30_000, Math.max(500, Math.floor(this.config.security.workloadTtl / 20))),
    });
    this.manager = manager;
    await manager.start(this.config.apps.map((a) => ({ namespace: a.namespace, appId: a.appId })));
    for (const bundle of manager.all()) this.absorb({ reason: 'issued', bundle });
    manager.on('rotated', (e: RotatedEvent) => {
      this.absorb(e);
      this.publish();
    });
    manager.on('renewal-failed', ({ key, error }: { key: string; error: unknown }) => {
      this.metrics.certificate(key === 'node' ? 'node' : 'workload', 'failed');
      this.log.warn({ identity: key, err: (error as Error).message }, 'certificate renewal failed; the current certificate stays in use and renewal is retried');
    });
    manager.on('listener-failed', ({ error }: { error: unknown }) => {
      this.log.error({ err: (error as Error).message }, 'a renewed certificate could not be put to use');
    });
    const node = manager.node();
    this.server?.update({ keyPem: node.keyPem, certPem: node.certPem, rootsPem: node.rootsPem });
    this.log.info({ trustDomain: this.trustDomain, caDir: this.config.security.caDir, node: node.spiffeId, apps: manager.all().filter((b) => b.kind === 'workload').map((b) => b.spiffeId), notAfter: new Date(node.notAfter).toISOString() }, 'mTLS between nodes: identities issued');
    return manager;
  }

  /** Takes in a new or renewed certificate: the server's own, or an app's for the outbound side. */
  private absorb(e: RotatedEvent): void {
    const b = e.bundle;
    this.metrics.certificate(b.kind, e.reason === 'issued' ? 'issued' : 'renewed', b.spiffeId, b.notAfter);
    if (e.reason !== 'issued') this.log.debug({ identity: b.spiffeId, reason: e.reason, notAfter: new Date(b.notAfter).toISOString() }, 'certificate renewed');
    if (b.kind === 'node') {
      // New handshakes use it; connections already open keep theirs (and are aged out).
      this.server?.update({ keyPem: b.keyPem, certPem: b.certPem, rootsPem: b.rootsPem });
    } else {
      this.entries.set(b.key, { keyPem: b.keyPem, certPem: b.certPem, version: ++this.entryVersion });
    }
    if (b.rootsPem !== this.roots) {
      this.roots = b.rootsPem;
      if (b.kind !== 'node') this.server?.update({ rootsPem: b.rootsPem });
      // Channels pin their roots: every identity gets a new version, so new channels are opened.
      for (const [k, v] of this.entries) this.entries.set(k, { ...v, version: ++this.entryVersion });
    }
  }

  private identitySet(): IdentitySet {
    return { version: ++this.setVersion, trustDomain: this.trustDomain, rootsPem: this.roots, identities: Object.fromEntries(this.entries) };
  }

  private publish(): void {
    if (this.listeners.length === 0) return;
    const set = this.identitySet();
    for (const l of this.listeners) l(set);
  }

  /** Calls `listener` with the current identities now and with every change. */
  onIdentities(listener: (set: IdentitySet) => void): void {
    this.listeners.push(listener);
    listener(this.identitySet());
  }

  /** The peer server's `authorize` hook: the caller from its certificate, then the policy. */
  authorize(call: CallWithAuthContext, head: CallHead): { appId: string; namespace: string } {
    const { caller } = this.authorizer.authorize(call, { namespace: head.namespace, appId: head.appId }, { method: head.method, verb: head.verb === '' ? undefined : head.verb });
    return { appId: caller.appId, namespace: caller.namespace };
  }

  /** A TLS handshake that failed, seen by either side: logged, at most once per peer and problem per 10 s. */
  tlsFailure(side: 'incoming' | 'outgoing', peer: string, message: string): void {
    this.rateLimited(`tls|${side}|${peer}|${message}`, () => this.log.warn({ peer, side, err: message }, side === 'incoming'
      ? 'TLS handshake from a peer failed (a certificate this node does not trust, or none)'
      : 'refused a peer node\'s certificate'));
  }

  private rateLimited(key: string, fn: () => void): void {
    const now = Date.now();
    const last = this.lastLogged.get(key);
    if (last !== undefined && now - last < LOG_EVERY_MS) return;
    if (this.lastLogged.size > 1000) this.lastLogged.clear();
    this.lastLogged.set(key, now);
    fn();
  }

  close(): void {
    this.manager?.close();
    this.listeners.length = 0;
  }
}
