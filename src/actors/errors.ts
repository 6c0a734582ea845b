/**
 * The actor building blocks' error codes. TEMPORARY: these belong in `src/errors.ts` (and the
 * README's table); they live here until the node wiring lands, so that the actor modules can
 * be built and tested without touching files other engineers are editing. Once they move,
 * `ActorError` becomes `WeftError` and callers keep comparing the same `code` strings.
 *
 * Codes follow the registry's shape: HTTP status, gRPC status, Dapr `errorCode`, and
 * `retryable` when the call surely never reached the app.
 */
import { GrpcStatus, type GrpcStatusCode } from '../errors.ts';

interface ActorErrorSpec {
  readonly http: number;
  readonly grpc: GrpcStatusCode;
  readonly dapr: string;
  readonly summary: string;
  readonly retryable?: boolean;
}

export const ActorErrors = {
  /** The app answered a method call with a non-2xx status; Dapr returns the app's answer as it is. */
  WEFT_ACTOR_INVOKE_METHOD: { http: 500, grpc: GrpcStatus.INTERNAL, dapr: 'ERR_ACTOR_INVOKE_METHOD', summary: 'the actor method failed' },
  /** No local app hosts this actor type (or the app's actor config is not read yet). */
  WEFT_ACTOR_INSTANCE_MISSING: { http: 400, grpc: GrpcStatus.INVALID_ARGUMENT, dapr: 'ERR_ACTOR_INSTANCE_MISSING', summary: 'no app hosts this actor type' },
  WEFT_ACTOR_REMINDER_NOT_FOUND: { http: 404, grpc: GrpcStatus.NOT_FOUND, dapr: 'ERR_ACTOR_REMINDER_NOT_FOUND', summary: 'no such reminder' },
  /** A reentrant call chain went deeper than `reentrancy.maxStackDepth`. */
  WEFT_ACTOR_STACK_DEPTH: { http: 500, grpc: GrpcStatus.FAILED_PRECONDITION, dapr: 'ERR_ACTOR_STACK_DEPTH', summary: 'the reentrant call stack is deeper than maxStackDepth' },
  /** This node does not own the actor (its placement table disagrees, or the actor is draining): never reached the app. */
  WEFT_ACTOR_MOVED: { http: 500, grpc: GrpcStatus.UNAVAILABLE, dapr: 'ERR_ACTOR_INSTANCE_MISSING', summary: 'the actor is owned by another node', retryable: true },
  /** A call waited for its turn, or ran in it, longer than the actor call timeout. */
  WEFT_ACTOR_TIMEOUT: { http: 504, grpc: GrpcStatus.DEADLINE_EXCEEDED, dapr: 'ERR_ACTOR_INVOKE_METHOD', summary: 'the actor call did not finish within the actor call timeout' },
  /** A timer could not be created: bad duration, no callback, actor not active. */
  WEFT_ACTOR_TIMER_CREATE: { http: 500, grpc: GrpcStatus.INVALID_ARGUMENT, dapr: 'ERR_ACTOR_TIMER_CREATE', summary: 'the actor timer could not be created' },
  /** Actor state and reminders need a state store; weft does not serve them yet. */
  WEFT_ACTOR_NOT_SUPPORTED: { http: 501, grpc: GrpcStatus.UNIMPLEMENTED, dapr: 'ERR_ACTOR_NOT_SUPPORTED', summary: 'this actor API is not supported yet' },
} as const satisfies Record<string, ActorErrorSpec>;

export type ActorErrorCode = keyof typeof ActorErrors;

/** The app's own answer, carried by WEFT_ACTOR_INVOKE_METHOD so that the edge can pass it through as Dapr does. */
export interface AppAnswer {
  readonly status: number;
  readonly headers: readonly string[];
  readonly body: Uint8Array;
}

export class ActorError extends Error {
  readonly code: ActorErrorCode;
  /** Set on WEFT_ACTOR_INVOKE_METHOD when the app answered. */
  readonly app: AppAnswer | undefined;
  /** Set on WEFT_ACTOR_MOVED: the placement version the refusing node routed with. */
  readonly placementVersion: number | undefined;

  constructor(code: ActorErrorCode, message?: string, extra?: { app?: AppAnswer; placementVersion?: number; cause?: unknown }) {
    super(message ?? ActorErrors[code].summary, extra?.cause === undefined ? undefined : { cause: extra.cause });
    this.name = 'ActorError';
    this.code = code;
    this.app = extra?.app;
    this.placementVersion = extra?.placementVersion;
  }

  get httpStatus(): number {
    return ActorErrors[this.code].http;
  }

  get retryable(): boolean {
    return (ActorErrors[this.code] as ActorErrorSpec).retryable === true;
  }

  toJSON(): { errorCode: string; message: string; weftCode: ActorErrorCode } {
    return { errorCode: ActorErrors[this.code].dapr, message: this.message, weftCode: this.code };
  }

  toWire(): { code: string; message: string } {
    return { code: this.code, message: this.message };
  }
}
