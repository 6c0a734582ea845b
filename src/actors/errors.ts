/**
 * The actor building blocks' errors. Their codes live in the registry (`src/errors.ts`, and
 * the README's table) like every other code; `ActorError` is a WeftError that can carry two
 * facts the actor path needs:
 * - `app`: on WEFT_ACTOR_INVOKE_METHOD, the app's own answer, which the edge passes through
 *   unchanged as Dapr does;
 * - `placementVersion`: on WEFT_ACTOR_MOVED, the table version the refusing node routed with.
 */
import { WeftError, type ErrorCode } from '../errors.ts';

export type ActorErrorCode = Extract<ErrorCode, `WEFT_ACTOR_${string}`>;

/** The app's own answer, carried by WEFT_ACTOR_INVOKE_METHOD so that the edge can pass it through as Dapr does. */
export interface AppAnswer {
  readonly status: number;
  readonly headers: readonly string[];
  readonly body: Uint8Array;
}

export class ActorError extends WeftError {
  /** Set on WEFT_ACTOR_INVOKE_METHOD when the app answered. */
  readonly app: AppAnswer | undefined;
  /** Set on WEFT_ACTOR_MOVED: the placement version the refusing node routed with. */
  readonly placementVersion: number | undefined;

  constructor(code: ActorErrorCode, message?: string, extra?: { app?: AppAnswer; placementVersion?: number; cause?: unknown }) {
    super(code, message, extra?.cause === undefined ? undefined : { cause: extra.cause });
    this.name = 'ActorError';
    this.app = extra?.app;
    this.placementVersion = extra?.placementVersion;
  }
}
