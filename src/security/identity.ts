/**
 * The node's identities: one server/client certificate for the node itself and one workload
 * certificate per local app, all minted from the issuer this node holds, renewed at half life,
 * and handed out as plain PEM data (structured-clone safe) so the node can pass them to worker
 * threads.
 *
 * Contract:
 *   - `start()` issues everything before it resolves; until then `node()` throws.
 *   - Each identity renews on an unref'd timer at `renewFraction` (default ½) of its lifetime,
 *     counted from issuance. A failed renewal emits `renewal-failed` and retries after
 *     `retryMs`; the old certificate stays in use meanwhile.
 *   - Every new certificate, and every change of the trust bundle, emits `rotated` with the
 *     complete new IdentityBundle (one event per identity), after the manager's own state holds it.
 *     Listeners run synchronously from the emit; a listener that throws is reported via
 *     `listener-failed` and does not stop the others.
 *   - Trust bundle: the roots of the current issuer plus any extra roots, deduplicated. During CA
 *     rotation call `setIssuer(newCa)`: the old roots stay trusted (peers still present old
 *     certificates) and every identity is re-issued by the new issuer; later `setTrustBundle()`
 *     drops the old root.
 * Keys are generated asynchronously by node:crypto, so a renewal does not stall the event loop for
 * RSA key generation; the forge signature that follows is a few milliseconds.
 *   - The key of an identity's next certificate is generated halfway between the current one's
 *     issuance and its renewal, long before it is due. On a CPU-starved host RSA key generation takes seconds (measured: 0.2
 *     to 1.5 s at load 20 on 2 cores), which would come straight out of the certificate's remaining
 *     life if it ran at renewal time; with the key ready, a renewal is a signature.
 */
import { EventEmitter } from 'node:events';
import { X509Certificate } from 'node:crypto';
import {
  CA_DEFAULTS, generateKeyPem, issueNodeCert, issueWorkloadCert, splitPemCertificates,
  type CertificateAuthority, type IssuedCert,
} from './ca.ts';
import { APP_ID, NAMESPACE } from './spiffe.ts';

export interface IdentityBundle {
  readonly kind: 'node' | 'workload';
  /** `node`, or `<namespace>/<appId>`. */
  readonly key: string;
  readonly spiffeId: string;
  readonly keyPem: string;
  /** Leaf followed by the issuer: what the TLS endpoint presents. */
  readonly certPem: string;
  /** Roots to trust for the other side. */
  readonly rootsPem: string;
  readonly serialNumber: string;
  /** Milliseconds since the epoch. */
  readonly notBefore: number;
  readonly notAfter: number;
  /** When this bundle is due to be renewed. */
  readonly renewAt: number;
}

export interface RotatedEvent {
  readonly reason: 'issued' | 'renewed' | 'issuer-changed' | 'trust-changed' | 'forced';
  readonly bundle: IdentityBundle;
}

export interface AppRef {
  readonly namespace: string;
  readonly appId: string;
}

export interface IdentityManagerOptions {
  readonly ca: CertificateAuthority;
  readonly nodeId: string;
  readonly dnsNames?: readonly string[];
  readonly ipAddresses?: readonly string[];
  readonly workloadTtlMs?: number;
  readonly nodeTtlMs?: number;
  /** Fraction of the lifetime after which a certificate is renewed; Dapr renews at half life. */
  readonly renewFraction?: number;
  /** Extra roots to trust (PEM), e.g. a previous CA's root during rotation. */
  readonly extraRootsPem?: string;
  /** Delay before retrying a failed renewal. */
  readonly retryMs?: number;
  /** Clock, for tests. */
  readonly now?: () => number;
  /** Makes a private key (PEM); default an RSA 2048 key from node:crypto. */
  readonly generateKey?: () => Promise<string>;
  /** When the next certificate's key is made after an issuance; default halfway to the renewal. */
  readonly spareAfterMs?: number;
}

interface Slot {
  bundle: IdentityBundle;
  timer: NodeJS.Timeout | undefined;
  /** Bumped on every (re)issue and on removal, so a late renewal cannot overwrite newer state. */
  generation: number;
  /** The key for the next certificate, generated ahead (see the contract above). */
  nextKey: Promise<string> | undefined;
  /** Starts nextKey halfway to the renewal (not at issuance, when a starting node is busiest). */
  spareTimer: NodeJS.Timeout | undefined;
}

/** setTimeout cannot wait longer than this; longer waits are taken in steps. */
const MAX_TIMER = 2 ** 31 - 1;

/** Joins PEM bundles, dropping duplicate certificates (by SHA-256), keeping first-seen order. */
export function mergeRoots(...bundles: ReadonlyArray<string | undefined>): string {
  const seen = new Set<string>();
  let out = '';
  for (const b of bundles) {
    if (b === undefined || b.trim() === '') continue;
    for (const cert of splitPemCertificates(b, 'trust bundle')) {
      if (seen.has(cert.fingerprint256)) continue;
      seen.add(cert.fingerprint256);
      out += cert.toString();
    }
  }
  return out;
}

export class IdentityManager extends EventEmitter {
  private ca: CertificateAuthority;
  private roots: string;
  private readonly options: IdentityManagerOptions;
  private readonly slots = new Map<string, Slot>();
  private readonly apps = new Map<string, AppRef>();
  private readonly pending = new Map<string, Promise<IdentityBundle>>();
  private closed = false;

  constructor(options: IdentityManagerOptions) {
    super();
    const f = options.renewFraction ?? 0.5;
    if (!(f > 0 && f < 1)) throw new RangeError('renewFraction must be between 0 and 1');
    this.options = options;
    this.ca = options.ca;
    this.roots = mergeRoots(options.ca.trustBundlePem, options.extraRootsPem);
  }

  private now(): number {
    return this.options.now?.() ?? Date.now();
  }

  get trustDomain(): string {
    return this.ca.trustDomain;
  }

  /** The roots every identity currently trusts. */
  get trustBundlePem(): string {
    return this.roots;
  }

  /** Issues the node's certificate and one per app; resolves when all are ready. */
  async start(apps: readonly AppRef[] = []): Promise<void> {
    await Promise.all([this.issue('node', 'issued'), ...apps.map((a) => this.addApp(a))]);
  }

  /** Issues (once) the workload certificate of a local app. */
  async addApp(app: AppRef): Promise<IdentityBundle> {
    if (!APP_ID.test(app.appId)) throw new RangeError(`appId "${app.appId}" is not valid`);
    if (!NAMESPACE.test(app.namespace)) throw new RangeError(`namespace "${app.namespace}" is not valid`);
    const key = `${app.namespace}/${app.appId}`;
    const existing = this.slots.get(key);
    if (existing !== undefined) return existing.bundle;
    const pending = this.pending.get(key);
    if (pending !== undefined) return pending;
    this.apps.set(key, app);
    const p = this.issue(key, 'issued').finally(() => this.pending.delete(key));
    this.pending.set(key, p);
    return p;
  }

  removeApp(app: AppRef): void {
    const key = `${app.namespace}/${app.appId}`;
    this.apps.delete(key);
    const slot = this.slots.get(key);
    if (slot !== undefined) {
      clearTimeout(slot.timer);
      clearTimeout(slot.spareTimer);
      this.slots.delete(key);
    }
  }

  node(): IdentityBundle {
    const slot = this.slots.get('node');
    if (slot === undefined) throw new Error('IdentityManager: start() has not finished');
    return slot.bundle;
  }

  workload(namespace: string, appId: string): IdentityBundle | undefined {
    return this.slots.get(`${namespace}/${appId}`)?.bundle;
  }

  /** Every current identity, node first. */
  all(): IdentityBundle[] {
    const out = [...this.slots.values()].map((s) => s.bundle);
    return out.sort((a, b) => (a.kind === b.kind ? a.key.localeCompare(b.key) : a.kind === 'node' ? -1 : 1));
  }

  /** Renews one identity (or all) now. */
  async renew(key?: string): Promise<void> {
    const keys = key === undefined ? [...this.slots.keys()] : [key];
    await Promise.all(keys.map((k) => this.issue(k, 'forced')));
  }

  /**
   * CA rotation: from now on sign with `ca`. The roots of the old and the new CA are both trusted,
   * and every identity is re-issued by the new issuer.
   */
  async setIssuer(ca: CertificateAuthority): Promise<void> {
    this.ca = ca;
    this.roots = mergeRoots(ca.trustBundlePem, this.roots);
    await Promise.all([...this.slots.keys()].map((k) => this.issue(k, 'issuer-changed')));
  }

  /** Replaces the trusted roots (they must include the current issuer's root) and republishes every identity. */
  setTrustBundle(rootsPem: string): void {
    const merged = mergeRoots(rootsPem);
    const issuer = new X509Certificate(this.ca.issuerCertPem);
    if (!splitPemCertificates(merged).some((r) => issuer.checkIssued(r) && issuer.verify(r.publicKey))) {
      throw new RangeError('the new trust bundle does not hold the root of the current issuer');
    }
    this.roots = merged;
    for (const slot of this.slots.values()) {
      slot.bundle = { ...slot.bundle, rootsPem: merged };
      this.publish('trust-changed', slot.bundle);
    }
  }

  /** Stops every renewal timer. */
  close(): void {
    this.closed = true;
    for (const slot of this.slots.values()) {
      clearTimeout(slot.timer);
      clearTimeout(slot.spareTimer);
    }
  }

  private async issue(key: string, reason: RotatedEvent['reason']): Promise<IdentityBundle> {
    const before = this.slots.get(key);
    const generation = (before?.generation ?? 0) + 1;
    if (before !== undefined) before.generation = generation;
    const spare = before?.nextKey;
    if (before !== undefined) before.nextKey = undefined;
    const keyPem = await (spare === undefined ? this.newKey() : spare.catch(() => this.newKey()));
    const ca = this.ca;
    const now = this.now();
    let cert: IssuedCert;
    let ttl: number;
    if (key === 'node') {
      ttl = this.options.nodeTtlMs ?? CA_DEFAULTS.nodeTtlMs;
      cert = issueNodeCert(ca, { nodeId: this.options.nodeId, dnsNames: this.options.dnsNames, ipAddresses: this.options.ipAddresses, ttlMs: ttl, keyPem, now });
    } else {
      const app = this.apps.get(key);
      if (app === undefined) throw new Error(`IdentityManager: no app ${key}`);
      ttl = this.options.workloadTtlMs ?? CA_DEFAULTS.workloadTtlMs;
      cert = issueWorkloadCert(ca, { appId: app.appId, namespace: app.namespace, ttlMs: ttl, keyPem, now });
    }
    const current = this.slots.get(key);
    // Removed meanwhile, or a newer issue started after this one: drop this certificate.
    if ((before !== undefined && current === undefined) || (current !== undefined && current.generation !== generation)) {
      return current?.bundle ?? this.bundleOf(key, cert, now);
    }
    if (key !== 'node' && !this.apps.has(key)) return this.bundleOf(key, cert, now);
    const bundle = this.bundleOf(key, cert, now);
    const slot: Slot = current ?? { bundle, timer: undefined, generation, nextKey: undefined, spareTimer: undefined };
    slot.bundle = bundle;
    clearTimeout(slot.timer);
    this.slots.set(key, slot);
    this.schedule(key, slot, bundle.renewAt);
    clearTimeout(slot.spareTimer);
    if (!this.closed && slot.nextKey === undefined) {
      slot.spareTimer = setTimeout(() => {
        if (this.closed || slot.nextKey !== undefined) return;
        slot.nextKey = this.newKey();
        slot.nextKey.catch(() => {}); // a failed spare is replaced at renewal time
      }, this.options.spareAfterMs ?? Math.min(MAX_TIMER, Math.max(0, bundle.renewAt - this.now()) / 2));
      slot.spareTimer.unref();
    }
    this.publish(before === undefined ? 'issued' : reason, bundle);
    return bundle;
  }

  private newKey(): Promise<string> {
    return this.options.generateKey?.() ?? generateKeyPem();
  }

  private bundleOf(key: string, cert: IssuedCert, issuedAt: number): IdentityBundle {
    const fraction = this.options.renewFraction ?? 0.5;
    return {
      kind: key === 'node' ? 'node' : 'workload',
      key,
      spiffeId: cert.spiffeId,
      keyPem: cert.keyPem,
      certPem: cert.chainPem,
      rootsPem: this.roots,
      serialNumber: cert.serialNumber,
      notBefore: cert.notBefore,
      notAfter: cert.notAfter,
      // From issuance, not from the backdated notBefore.
      renewAt: issuedAt + Math.max(0, cert.notAfter - issuedAt) * fraction,
    };
  }

  private schedule(key: string, slot: Slot, at: number): void {
    if (this.closed) return;
    const delay = Math.max(0, at - this.now());
    const generation = slot.generation;
    slot.timer = setTimeout(() => {
      if (this.slots.get(key) !== slot || slot.generation !== generation) return;
      if (delay > MAX_TIMER) {
        this.schedule(key, slot, at);
        return;
      }
      this.issue(key, 'renewed').catch((err: unknown) => {
        this.emit('renewal-failed', { key, error: err });
        if (this.slots.get(key) === slot) this.schedule(key, slot, this.now() + (this.options.retryMs ?? 30_000));
      });
    }, Math.min(delay, MAX_TIMER));
    slot.timer.unref();
  }

  private publish(reason: RotatedEvent['reason'], bundle: IdentityBundle): void {
    const event: RotatedEvent = { reason, bundle };
    for (const listener of this.listeners('rotated')) {
      try {
        (listener as (e: RotatedEvent) => void).call(this, event);
      } catch (err) {
        this.emit('listener-failed', { event, error: err });
      }
    }
  }
}
