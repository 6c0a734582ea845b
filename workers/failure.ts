/**
 * How a failed peer call is described on the outbound side: weft's `{code, message}` plus
 * whether it surely never reached the target app (and so may be tried on another instance).
 */
import type { WireErrorShape } from './protocol.ts';
import { Errors } from '../src/errors.ts';

/**
 * Failures of an invocation that surely never reached the app, by stable code: exactly those
 * src/errors.ts marks `retryable` (and `invoke`), so the registry, docs/resiliency.md and the
 * retries cannot disagree. A list of its own here once left out WEFT_OVERLOADED (a node that
 * refused the call before its app was asked), which the docs said was retried.
 */
const NEVER_REACHED_APP: ReadonlySet<string> = new Set(
  Object.entries(Errors).filter(([, spec]) => 'retryable' in spec && spec.retryable && 'invoke' in spec && spec.invoke).map(([code]) => code),
);

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
