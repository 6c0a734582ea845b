/**
 * grpc-js credentials for weft's peer links: the server side requires and verifies a client
 * certificate; the client side presents the calling app's workload certificate and accepts only
 * the node it meant to reach; and the caller's SPIFFE id is read back from a verified call.
 *
 * Rotation without restart (grpc-js 1.14). A secure grpc-js server builds its http2 server from
 * `ServerCredentials` and registers a watcher on them (`_addWatcher`); whenever the credentials
 * publish new secure-context options the watcher calls `http2SecureServer.setSecureContext()`, so
 * new TLS handshakes use the new certificate while established connections carry on with the one
 * they negotiated. The public way in is `experimental.createCertificateProviderServerCredentials`
 * with a `CertificateProvider`: weft's `TlsIdentityProvider` is such a provider, fed with PEMs by
 * `update()`. Two grpc-js details this file guards against:
 *   - if `setSecureContext` throws (say a key that does not match its certificate), grpc-js marks
 *     the credentials invalid and drops every new connection; so `update()` builds a secure context
 *     first and throws on a bad pair, leaving the serving one untouched;
 *   - the exported function names its first parameter `caCertificateProvider` but passes it on as
 *     the identity provider; the same provider object is given for both, so the order cannot bite.
 * There is no `server.updateSecureContext` in grpc-js 1.14; rebinding the port would drop calls.
 * The client side uses the same provider with `experimental.createCertificateProviderChannelCredentials`
 * (new connections of an existing channel pick up the new certificate), or plain `createSsl`
 * credentials for a channel that is replaced on rotation.
 */
import { X509Certificate } from 'node:crypto';
import { createSecureContext } from 'node:tls';
import type { PeerCertificate } from 'node:tls';
import * as grpc from '@grpc/grpc-js';
import { WeftError } from '../errors.ts';
import { formatNodeId, parseAnySpiffeId, parseSubjectAltName, type AnySpiffeId, type WorkloadId } from './spiffe.ts';

/** A TLS identity as pure data: what IdentityManager hands out and workers receive. */
export interface TlsMaterial {
  /** PEM private key. */
  readonly keyPem: string;
  /** PEM leaf certificate followed by its issuer. */
  readonly certPem: string;
  /** PEM roots to trust for the other side (one or several, e.g. old + new during CA rotation). */
  readonly rootsPem: string;
}

const buf = (s: string): Buffer => Buffer.from(s, 'utf8');

/** Throws a clear error unless the key, chain and roots make a usable TLS context. */
export function checkTlsMaterial(m: TlsMaterial): void {
  try {
    createSecureContext({ key: m.keyPem, cert: m.certPem, ca: m.rootsPem });
  } catch (err) {
    throw new WeftError('WEFT_CONFIG', `TLS identity is not usable: ${(err as Error).message}`, { cause: err });
  }
}

/** Static server credentials: TLS with this identity, client certificates required and verified against the roots. */
export function serverCredentials(m: TlsMaterial): grpc.ServerCredentials {
  checkTlsMaterial(m);
  return grpc.ServerCredentials.createSsl(buf(m.rootsPem), [{ private_key: buf(m.keyPem), cert_chain: buf(m.certPem) }], true);
}

type CaListener = grpc.experimental.CaCertificateUpdateListener;
type IdListener = grpc.experimental.IdentityCertificateUpdateListener;

/**
 * A grpc-js CertificateProvider holding one identity and its roots in memory. Listeners are told
 * the current value just after they subscribe (on a microtask) and synchronously on every `update()`.
 */
export class TlsIdentityProvider implements grpc.experimental.CertificateProvider {
  private material: TlsMaterial;
  private readonly caListeners = new Set<CaListener>();
  private readonly idListeners = new Set<IdListener>();

  constructor(initial: TlsMaterial) {
    checkTlsMaterial(initial);
    this.material = initial;
  }

  get current(): TlsMaterial {
    return this.material;
  }

  /**
   * Swaps the identity and/or the roots. Connections already made keep theirs; new handshakes use
   * the new ones. Throws (and keeps serving the old identity) if the new material is unusable.
   */
  update(next: Partial<TlsMaterial>): void {
    const merged: TlsMaterial = { ...this.material, ...next };
    checkTlsMaterial(merged);
    const rootsChanged = merged.rootsPem !== this.material.rootsPem;
    const idChanged = merged.keyPem !== this.material.keyPem || merged.certPem !== this.material.certPem;
    this.material = merged;
    // Roots first: a peer's new certificate may need them, and the old identity still verifies under them.
    if (rootsChanged) for (const l of this.caListeners) l({ caCertificate: buf(merged.rootsPem) });
    if (idChanged) for (const l of this.idListeners) l({ certificate: buf(merged.certPem), privateKey: buf(merged.keyPem) });
  }

  addCaCertificateListener(listener: CaListener): void {
    this.caListeners.add(listener);
    this.deliverLater(() => this.caListeners.has(listener) && listener({ caCertificate: buf(this.material.rootsPem) }));
  }

  removeCaCertificateListener(listener: CaListener): void {
    this.caListeners.delete(listener);
  }

  addIdentityCertificateListener(listener: IdListener): void {
    this.idListeners.add(listener);
    this.deliverLater(() => this.idListeners.has(listener) && listener({ certificate: buf(this.material.certPem), privateKey: buf(this.material.keyPem) }));
  }

  removeIdentityCertificateListener(listener: IdListener): void {
    this.idListeners.delete(listener);
  }

  /**
   * The first value goes out on a microtask, not synchronously: grpc-js's server credentials
   * subscribe to the provider before registering the server's own watcher, so a synchronous answer
   * would never reach the http2 server and it would refuse every connection. A microtask still
   * runs before the bound socket can accept anything.
   */
  private deliverLater(fn: () => unknown): void {
    queueMicrotask(() => void fn());
  }
}

export interface RotatingServerCredentials {
  readonly credentials: grpc.ServerCredentials;
  readonly provider: TlsIdentityProvider;
  /** Same as `provider.update`. */
  update(next: Partial<TlsMaterial>): void;
}

/** Server credentials whose certificate and roots can be swapped while the server runs. */
export function rotatingServerCredentials(initial: TlsMaterial): RotatingServerCredentials {
  const provider = new TlsIdentityProvider(initial);
  const credentials = grpc.experimental.createCertificateProviderServerCredentials(provider, provider, true);
  return { credentials, provider, update: (next) => provider.update(next) };
}

/**
 * Server options for the peer server. TLS checks a client certificate once, at the handshake, and
 * an HTTP/2 connection may then live for days: past the certificate's expiry, and past a CA
 * rotation that removed its root. Capping the connection age (grpc-js sends GOAWAY, the client
 * reconnects transparently, calls in flight get the grace period) bounds how long an identity is
 * trusted after it stopped being valid: at most a quarter of the certificate lifetime, an hour at most.
 */
export function peerServerOptions(certTtlMs = 24 * 3_600_000): grpc.ServerOptions {
  return {
    'grpc.max_connection_age_ms': Math.max(1000, Math.min(3_600_000, Math.floor(certTtlMs / 4))),
    'grpc.max_connection_age_grace_ms': 30_000,
  };
}

// ---------------------------------------------------------------- client side

export interface PeerExpectation {
  /** The node id the client means to reach; its certificate must carry `spiffe://<td>/node/<id>`. */
  readonly expectedNodeId: string;
  readonly trustDomain: string;
}

/**
 * A `checkServerIdentity` that accepts only a certificate whose URI SAN is the expected node's
 * SPIFFE id. Host names are not checked: peers are addressed by IP and port from the resolver, and
 * the SPIFFE id is the stronger claim (the chain itself is verified by TLS before this runs).
 */
export function checkNodeIdentity(expect: PeerExpectation): (hostname: string, cert: PeerCertificate) => Error | undefined {
  const want = formatNodeId({ trustDomain: expect.trustDomain, nodeId: expect.expectedNodeId });
  return (_hostname, cert) => {
    const uris = parseSubjectAltName(cert.subjectaltname).uris.filter((u) => u.startsWith('spiffe://'));
    if (uris.length === 1 && uris[0] === want) return undefined;
    const got = uris.length === 0 ? 'no SPIFFE id' : uris.join(', ');
    const err = new Error(`peer certificate is for ${got}, expected ${want}`) as Error & { code: string };
    err.code = 'ERR_TLS_CERT_ALTNAME_INVALID';
    return err;
  };
}

/**
 * Channel options for a peer channel. Peers are dialled by IP, and grpc-js would send that IP as
 * the TLS server name, which RFC 6066 forbids and Node warns about (DEP0123); a name derived from
 * the node id goes out instead. Identity is still decided by checkNodeIdentity, not by this name.
 */
export function peerChannelOptions(expect: PeerExpectation): grpc.ChannelOptions {
  const name = `${expect.expectedNodeId.toLowerCase().replace(/[^a-z0-9-]/g, '-')}.node.${expect.trustDomain}`;
  return { 'grpc.ssl_target_name_override': name, 'grpc.default_authority': name };
}

export interface ChannelTlsOptions extends TlsMaterial, PeerExpectation {}

/** Client credentials presenting the calling app's certificate and insisting on the expected node. */
export function channelCredentials(o: ChannelTlsOptions): grpc.ChannelCredentials {
  checkTlsMaterial(o);
  return grpc.credentials.createSsl(buf(o.rootsPem), buf(o.keyPem), buf(o.certPem), { checkServerIdentity: checkNodeIdentity(o) });
}

/**
 * Client credentials fed by a provider: an existing channel's new connections pick up the
 * identity given to `provider.update()`; established connections keep theirs until they close.
 */
export function rotatingChannelCredentials(provider: TlsIdentityProvider, expect: PeerExpectation): grpc.ChannelCredentials {
  return grpc.experimental.createCertificateProviderChannelCredentials(provider, provider, { checkServerIdentity: checkNodeIdentity(expect) });
}

// ---------------------------------------------------------------- the caller's identity on the server

/** What grpc-js server calls expose (ServerUnaryCall and friends, ≥1.10). */
export interface CallWithAuthContext {
  getAuthContext(): { transportSecurityType?: string; sslPeerCertificate?: PeerCertificate } | null;
}

const CLIENT_AUTH = '1.3.6.1.5.5.7.3.2';

/** The caller could not be identified: 401, not 403 (no policy was asked). */
function unauthenticated(problem: string): WeftError {
  return new WeftError('WEFT_PEER_UNAUTHENTICATED', `caller identity: ${problem}`);
}

/**
 * The connection is gone: its socket was destroyed before the call's identity was read (say the
 * session was torn down by an HTTP/2 protection, a keepalive timeout or the caller, with streams
 * of it still queued on a busy event loop). Not an authentication failure: the caller is no
 * longer there to answer, so the call ends as cancelled.
 */
export function connectionClosed(): WeftError {
  return new WeftError('WEFT_CANCELLED', 'the calling node\'s connection closed before its identity was read');
}

/**
 * The HTTP/2 session (one per TCP/TLS connection) a grpc-js server call arrived on: an object
 * while it is open, null once it is closed, undefined when this grpc-js keeps it elsewhere.
 *
 * grpc-js has no public way to it. A server call object holds its intercepting call in `call`,
 * interceptors chain through `nextCall`, and the innermost one holds the http2 stream in
 * `stream` (grpc-js 1.10 to 1.14); `getAuthContext()` itself goes the same way. If a later
 * grpc-js moves them, the answer is undefined and callers fall back to reading the certificate
 * per call (slower, never wrong); the per-connection test in test/integration then fails.
 */
export function connectionOf(call: object): object | null | undefined {
  let inner = (call as { call?: unknown }).call;
  for (let i = 0; i < 8 && typeof inner === 'object' && inner !== null; i++) {
    const stream = (inner as { stream?: unknown }).stream;
    if (typeof stream === 'object' && stream !== null) {
      const session = (stream as { session?: { destroyed?: boolean } | undefined }).session;
      return session === undefined || session.destroyed === true ? null : session;
    }
    inner = (inner as { nextCall?: unknown }).nextCall;
  }
  return undefined;
}

/**
 * The SPIFFE id of the caller's verified client certificate, either shape. grpc-js reports a peer
 * certificate only when the TLS socket is `authorized` (its chain verified against the server's
 * roots), so a returned id is one the CA vouched for. Throws `connectionClosed()` when the
 * connection's socket is already destroyed (grpc-js then fails reading its certificate).
 */
export function peerSpiffeIdFromCall(call: CallWithAuthContext): AnySpiffeId {
  let auth: ReturnType<CallWithAuthContext['getAuthContext']>;
  try {
    auth = call.getAuthContext();
  } catch {
    // grpc-js 1.14 reads `getPeerCertificate().raw`, and a destroyed TLS socket answers null
    throw connectionClosed();
  }
  const peer = auth?.sslPeerCertificate;
  if (auth?.transportSecurityType !== 'ssl' || peer?.raw === undefined) {
    throw unauthenticated('the connection carries no verified client certificate');
  }
  const cert = new X509Certificate(peer.raw);
  const eku = cert.keyUsage; // node names extended key usages here, as OIDs
  if (cert.ca) throw unauthenticated('the client certificate is a CA certificate');
  if (eku !== undefined && eku.length > 0 && !eku.includes(CLIENT_AUTH)) throw unauthenticated('the client certificate is not valid for client authentication');
  const ids = parseSubjectAltName(cert.subjectAltName).uris.filter((u) => u.startsWith('spiffe://'));
  if (ids.length !== 1) throw unauthenticated(ids.length === 0 ? 'the client certificate has no SPIFFE id' : 'the client certificate has several SPIFFE ids');
  try {
    return parseAnySpiffeId(ids[0] as string);
  } catch (err) {
    throw unauthenticated((err as Error).message);
  }
}

/**
 * The calling app's identity `{trustDomain, namespace, appId}` from a grpc-js server call. Throws
 * WEFT_PEER_UNAUTHENTICATED when there is no verified certificate, its id is not a workload id, or (when
 * `trustDomains` is given) its trust domain is not one of them. Access policies then decide on it.
 */
export function peerIdentityFromCall(call: CallWithAuthContext, options: { trustDomains?: readonly string[] } = {}): WorkloadId {
  const id = peerSpiffeIdFromCall(call);
  if (id.kind !== 'workload') throw unauthenticated(`${formatNodeId(id)} is a node identity, not an app's`);
  if (options.trustDomains !== undefined && !options.trustDomains.includes(id.trustDomain)) {
    throw unauthenticated(`trust domain ${id.trustDomain} is not trusted here (trusted: ${options.trustDomains.join(', ')})`);
  }
  return { trustDomain: id.trustDomain, namespace: id.namespace, appId: id.appId };
}
