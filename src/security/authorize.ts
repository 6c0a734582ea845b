/**
 * The receiving node's check for one peer call, in one place: the caller's identity from its
 * verified client certificate, then the target app's access policy. Throws a WeftError
 * (WEFT_ACCESS_DENIED) to refuse; returns who called and the decision, for logs and metrics.
 */
import { WeftError } from '../errors.ts';
import { accessDenied, evaluate, type AccessControl, type AclDecision, type AclRequest } from './acl.ts';
import type { WorkloadId } from './spiffe.ts';
import { peerIdentityFromCall, type CallWithAuthContext } from './tls.ts';

export interface Authorized {
  readonly caller: WorkloadId;
  readonly decision: AclDecision;
}

/**
 * `acl` is the policy of the app being called (each app's Configuration carries its own).
 * `targetAppId` goes into the denial so the caller sees Dapr's `failed to invoke, id: X` text.
 */
export function authorizePeerCall(call: CallWithAuthContext, acl: AccessControl, request: AclRequest, targetAppId?: string): Authorized {
  let caller: WorkloadId;
  try {
    caller = peerIdentityFromCall(call);
  } catch (err) {
    const e = WeftError.from(err);
    throw targetAppId === undefined ? e : new WeftError(e.code, e.message, { appId: targetAppId, cause: err });
  }
  const decision = evaluate(acl, caller, request);
  if (!decision.allowed) throw accessDenied(decision, targetAppId);
  return { caller, decision };
}
