/**
 * The receiving node's check for one peer call, in one place: the caller's identity from its
 * verified client certificate, then the target app's access policy. Throws a WeftError to
 * refuse (WEFT_PEER_UNAUTHENTICATED when the caller cannot be identified, WEFT_ACCESS_DENIED
 * when the policy says no); returns who called and the decision, for logs and metrics.
 */
import { WeftError } from '../errors.ts';
import { accessDenied, evaluate, type AccessControl, type AclDecision, type AclRequest } from './acl.ts';
import type { WorkloadId } from './spiffe.ts';
import { connectionClosed, connectionOf, peerIdentityFromCall, type CallWithAuthContext } from './tls.ts';

export interface Authorized {
  readonly caller: WorkloadId;
  readonly decision: AclDecision;
}

export interface AuthorizeOptions {
  /** Trust domains a caller may come from; any (that the roots vouch for) when absent. */
  readonly trustDomains?: readonly string[];
}

/**
 * `acl` is the policy of the app being called (each app's Configuration carries its own).
 * `targetAppId` goes into the denial so the caller sees Dapr's `failed to invoke, id: X` text.
 */
export function authorizePeerCall(call: CallWithAuthContext, acl: AccessControl, request: AclRequest, targetAppId?: string, options: AuthorizeOptions = {}): Authorized {
  let caller: WorkloadId;
  try {
    caller = peerIdentityFromCall(call, options);
  } catch (err) {
    const e = WeftError.from(err);
    throw targetAppId === undefined ? e : new WeftError(e.code, e.message, { appId: targetAppId, cause: err });
  }
  const decision = evaluate(acl, caller, request);
  if (!decision.allowed) throw accessDenied(decision, targetAppId);
  return { caller, decision };
}

export interface PeerAuthorizerOptions {
  /** The node's own trust domain: callers from it are always identifiable. */
  readonly trustDomain: string;
  /** The access policy of a local app (ALLOW_ALL when it has none). */
  acl(namespace: string, appId: string): AccessControl;
  /** Every decision, allowed or denied, and every caller that could not be identified. */
  onDecision?(target: { namespace: string; appId: string }, caller: WorkloadId | undefined, allowed: boolean, reason: string): void;
}

/**
 * authorizePeerCall for a node, with what can be remembered remembered: the caller's identity
 * per connection, and per policy the trust domains it accepts (the node's own plus those its
 * policies name, as Dapr's per-policy `trustDomain` allows).
 */
export class PeerAuthorizer {
  private readonly options: PeerAuthorizerOptions;
  /** Keyed by the HTTP/2 session of the call (or by the call, where grpc-js hides the session). */
  private readonly callers = new WeakMap<object, WorkloadId | WeftError>();
  private readonly domains = new WeakMap<AccessControl, readonly string[]>();

  constructor(options: PeerAuthorizerOptions) {
    this.options = options;
  }

  private trustDomains(acl: AccessControl): readonly string[] {
    let d = this.domains.get(acl);
    if (d === undefined) {
      d = [...new Set([this.options.trustDomain, ...acl.policies.map((p) => p.trustDomain)])];
      this.domains.set(acl, d);
    }
    return d;
  }

  /**
   * Who is calling, read once per connection. A TLS connection carries one client certificate
   * for its whole life, so it is read and parsed on the connection's first call and every later
   * call or stream on it pays one WeakMap lookup. Reading it per call cost ~1 ms of CPU (grpc-js
   * translates the whole certificate into an object on every getAuthContext(), then X509 parsing):
   * a node took a few hundred proxied calls a second, fell behind under a burst, and stayed
   * behind for as long as the backlog lasted. A renewed certificate arrives on a new connection
   * (the caller's successor channel; connections also age out, see peerServerOptions), so it is
   * a new key. A connection that closed before its identity was read fails that one call as
   * cancelled, and nothing is remembered for it.
   */
  private callerOf(call: CallWithAuthContext): WorkloadId | WeftError {
    const conn = connectionOf(call);
    if (conn === null) return connectionClosed();
    const key = conn ?? call;
    let caller = this.callers.get(key);
    if (caller !== undefined) return caller;
    try {
      caller = peerIdentityFromCall(call);
    } catch (err) {
      caller = WeftError.from(err);
      if (caller.code === 'WEFT_CANCELLED') return caller;
    }
    this.callers.set(key, caller);
    return caller;
  }

  authorize(call: CallWithAuthContext, target: { namespace: string; appId: string }, request: AclRequest): Authorized {
    const acl = this.options.acl(target.namespace, target.appId);
    const caller = this.callerOf(call);
    if (caller instanceof WeftError) {
      // a closed connection is no decision about anyone: not logged or counted as a refusal
      if (caller.code !== 'WEFT_CANCELLED') this.options.onDecision?.(target, undefined, false, caller.message);
      throw new WeftError(caller.code, caller.message, { appId: target.appId });
    }
    const domains = this.trustDomains(acl);
    if (!domains.includes(caller.trustDomain)) {
      const message = `caller identity: trust domain ${caller.trustDomain} is not trusted here (trusted: ${domains.join(', ')})`;
      this.options.onDecision?.(target, caller, false, message);
      throw new WeftError('WEFT_PEER_UNAUTHENTICATED', message, { appId: target.appId });
    }
    const decision = evaluate(acl, caller, request);
    this.options.onDecision?.(target, caller, decision.allowed, decision.reason);
    if (!decision.allowed) throw accessDenied(decision, target.appId);
    return { caller, decision };
  }
}
