/**
 * How a failed peer call is described on the outbound side: weft's `{code, message}` plus
 * whether it surely never reached the target app (and so may be tried on another instance).
 */
import type { WireErrorShape } from './protocol.ts';

/** Failures weft decided itself, by stable code, that never reached the app. */
const NEVER_REACHED_APP = new Set(['WEFT_PEER_UNAVAILABLE', 'WEFT_NOT_SERVING', 'WEFT_SHUTTING_DOWN', 'WEFT_APP_REFUSED', 'WEFT_APP_UNHEALTHY']);

export class CallFailure extends Error {
  readonly wire: WireErrorShape;
  readonly retryable: boolean;

  constructor(wire: WireErrorShape, retryable: boolean) {
    super(wire.message);
    this.wire = wire;
    this.retryable = retryable;
  }
}

/** A failure by code; retryable exactly when the code says the app never saw the call. */
export function failure(code: string, message: string): CallFailure {
  return new CallFailure({ code, message }, NEVER_REACHED_APP.has(code));
}
