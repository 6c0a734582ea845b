/**
 * The one registry of weft's errors.
 *
 * Every failure weft reports has a stable `code` (compare codes, never messages), and the
 * code fixes how the failure looks at each edge: the HTTP status, the gRPC status and the
 * Dapr `errorCode` an app sees. Errors cross thread and node boundaries as `{code, message}`
 * and are rebuilt with `WeftError.from`.
 *
 * `retryable` marks failures where the request surely never reached the target app, so that
 * trying another instance can never run the app's method twice.
 */

/** gRPC status codes (numeric values from the gRPC spec), kept here so `src/` need not import grpc-js to name them. */
export const GrpcStatus = {
  OK: 0,
  CANCELLED: 1,
  UNKNOWN: 2,
  INVALID_ARGUMENT: 3,
  DEADLINE_EXCEEDED: 4,
  NOT_FOUND: 5,
  ALREADY_EXISTS: 6,
  PERMISSION_DENIED: 7,
  RESOURCE_EXHAUSTED: 8,
  FAILED_PRECONDITION: 9,
  ABORTED: 10,
  OUT_OF_RANGE: 11,
  UNIMPLEMENTED: 12,
  INTERNAL: 13,
  UNAVAILABLE: 14,
  DATA_LOSS: 15,
  UNAUTHENTICATED: 16,
} as const;
export type GrpcStatusCode = (typeof GrpcStatus)[keyof typeof GrpcStatus];

interface ErrorSpec {
  readonly http: number;
  readonly grpc: GrpcStatusCode;
  readonly dapr: string;
  /** What the failure means, for the docs and the default message. */
  readonly summary: string;
  /** The request surely never reached the target app: safe to try again elsewhere. */
  readonly retryable?: boolean;
  /** Rendered as Dapr's `failed to invoke, id: X, err: ...` when an app id is known. */
  readonly invoke?: boolean;
}

export const Errors = {
  WEFT_NO_APP_ID: { http: 404, grpc: GrpcStatus.INVALID_ARGUMENT, dapr: 'ERR_DIRECT_INVOKE', summary: 'the request names no target app id' },
  WEFT_BAD_APP_ID: { http: 400, grpc: GrpcStatus.INVALID_ARGUMENT, dapr: 'ERR_DIRECT_INVOKE', summary: 'the target app id is not valid (appId or appId.namespace, each 1-63 ASCII letters, digits, - or _)' },
  WEFT_BAD_PATH: { http: 400, grpc: GrpcStatus.INVALID_ARGUMENT, dapr: 'ERR_MALFORMED_REQUEST', summary: 'the method path cannot be normalized unambiguously (encoded slash or backslash, control character, double encoding, ".." above the root)' },
  WEFT_REQUEST_TIMEOUT: { http: 408, grpc: GrpcStatus.DEADLINE_EXCEEDED, dapr: 'ERR_MALFORMED_REQUEST', summary: 'the request head did not arrive within timeouts.headers' },
  WEFT_URI_TOO_LONG: { http: 414, grpc: GrpcStatus.INVALID_ARGUMENT, dapr: 'ERR_MALFORMED_REQUEST', summary: 'the request URL is longer than the limit' },
  WEFT_HEADERS_TOO_LARGE: { http: 431, grpc: GrpcStatus.INVALID_ARGUMENT, dapr: 'ERR_MALFORMED_REQUEST', summary: 'the request headers are larger than the limit' },
  WEFT_EXPECTATION_FAILED: { http: 417, grpc: GrpcStatus.INVALID_ARGUMENT, dapr: 'ERR_MALFORMED_REQUEST', summary: 'the request has an Expect header other than 100-continue' },
  WEFT_BAD_REQUEST: { http: 400, grpc: GrpcStatus.INVALID_ARGUMENT, dapr: 'ERR_MALFORMED_REQUEST', summary: 'the request is malformed' },
  WEFT_ROUTE_NOT_FOUND: { http: 404, grpc: GrpcStatus.UNIMPLEMENTED, dapr: 'ERR_NOT_FOUND', summary: 'no such API route' },
  WEFT_METHOD_NOT_ALLOWED: { http: 405, grpc: GrpcStatus.UNIMPLEMENTED, dapr: 'ERR_METHOD_NOT_ALLOWED', summary: 'the HTTP verb is not allowed on this route' },
  WEFT_UNAUTHORIZED: { http: 401, grpc: GrpcStatus.UNAUTHENTICATED, dapr: 'ERR_UNAUTHORIZED', summary: 'the API token is missing or wrong' },
  WEFT_BODY_TOO_LARGE: { http: 413, grpc: GrpcStatus.RESOURCE_EXHAUSTED, dapr: 'ERR_BODY_TOO_LARGE', summary: 'the request body is larger than the configured limit' },
  WEFT_APP_NOT_FOUND: { http: 500, grpc: GrpcStatus.UNAVAILABLE, dapr: 'ERR_DIRECT_INVOKE', summary: 'no instance of the target app is known', invoke: true },
  WEFT_PEER_UNAVAILABLE: { http: 500, grpc: GrpcStatus.UNAVAILABLE, dapr: 'ERR_DIRECT_INVOKE', summary: 'the target app\'s node could not be reached', retryable: true, invoke: true },
  WEFT_NOT_SERVING: { http: 500, grpc: GrpcStatus.UNAVAILABLE, dapr: 'ERR_DIRECT_INVOKE', summary: 'the node reached does not serve the target app', retryable: true, invoke: true },
  WEFT_APP_UNAVAILABLE: { http: 500, grpc: GrpcStatus.UNAVAILABLE, dapr: 'ERR_DIRECT_INVOKE', summary: 'the target node could not reach its app', invoke: true },
  WEFT_APP_ABORTED: { http: 502, grpc: GrpcStatus.INTERNAL, dapr: 'ERR_DIRECT_INVOKE', summary: 'the target app closed its connection before its answer was complete (it may have run the call)', invoke: true },
  /** The connection to the app was refused: not a byte was sent, so another instance may run it. */
  WEFT_APP_REFUSED: { http: 500, grpc: GrpcStatus.UNAVAILABLE, dapr: 'ERR_DIRECT_INVOKE', summary: 'the target node\'s app refused the connection (nothing was sent to it)', retryable: true, invoke: true },
  /** The app failed its health checks (`enableAppHealthCheck`): the node did not call it. */
  WEFT_APP_UNHEALTHY: { http: 500, grpc: GrpcStatus.UNAVAILABLE, dapr: 'ERR_DIRECT_INVOKE', summary: 'the target app failed its health checks; its node did not call it', retryable: true, invoke: true },
  /** The answer's head has gone to the caller, so nothing can be retried: the app ran the call. */
  WEFT_PEER_ANSWER_CUT: { http: 502, grpc: GrpcStatus.INTERNAL, dapr: 'ERR_DIRECT_INVOKE', summary: 'the target node answered, but the rest of its answer (a large or streamed body, fetched with FetchBody) could not be fetched from it: it stopped, failed, or lost the answer', invoke: true },
  WEFT_PEER_FAILED: { http: 500, grpc: GrpcStatus.INTERNAL, dapr: 'ERR_DIRECT_INVOKE', summary: 'the call to the target node failed after it was sent', invoke: true },
  WEFT_DEADLINE_EXCEEDED: { http: 504, grpc: GrpcStatus.DEADLINE_EXCEEDED, dapr: 'ERR_DIRECT_INVOKE', summary: 'the call did not finish before its deadline', invoke: true },
  WEFT_CANCELLED: { http: 499, grpc: GrpcStatus.CANCELLED, dapr: 'ERR_DIRECT_INVOKE', summary: 'the caller went away before the call finished', invoke: true },
  WEFT_PEER_UNAUTHENTICATED: { http: 401, grpc: GrpcStatus.UNAUTHENTICATED, dapr: 'ERR_DIRECT_INVOKE', summary: 'the target node could not establish who is calling (no verified workload certificate, or one from an untrusted trust domain)', invoke: true },
  WEFT_ACCESS_DENIED: { http: 403, grpc: GrpcStatus.PERMISSION_DENIED, dapr: 'ERR_DIRECT_INVOKE', summary: 'the target\'s access policy denies this call', invoke: true },
  WEFT_OVERLOADED: { http: 503, grpc: GrpcStatus.RESOURCE_EXHAUSTED, dapr: 'ERR_DIRECT_INVOKE', summary: 'the node refused the call before running it: too many calls queued, or too many connections open (http.maxConnections)', retryable: true, invoke: true },
  WEFT_SHUTTING_DOWN: { http: 503, grpc: GrpcStatus.UNAVAILABLE, dapr: 'ERR_DIRECT_INVOKE', summary: 'the node is shutting down', retryable: true, invoke: true },
  WEFT_CIRCUIT_OPEN: { http: 500, grpc: GrpcStatus.UNAVAILABLE, dapr: 'ERR_DIRECT_INVOKE', summary: 'the circuit breaker for the target is open', invoke: true },
  WEFT_HEALTH_NOT_READY: { http: 500, grpc: GrpcStatus.UNAVAILABLE, dapr: 'ERR_HEALTH_NOT_READY', summary: 'the node is not ready' },
  WEFT_HEALTH_APPID_MISMATCH: { http: 500, grpc: GrpcStatus.NOT_FOUND, dapr: 'ERR_HEALTH_APPID_NOT_MATCH', summary: 'the app id asked for is not served by this node' },
  /** The actor method failed: the app answered non-2xx (its answer passes through unchanged, as Dapr does). */
  WEFT_ACTOR_INVOKE_METHOD: { http: 500, grpc: GrpcStatus.INTERNAL, dapr: 'ERR_ACTOR_INVOKE_METHOD', summary: 'the actor method failed' },
  /** No app in the cluster hosts this actor type (or the actor id is empty). */
  WEFT_ACTOR_INSTANCE_MISSING: { http: 400, grpc: GrpcStatus.INVALID_ARGUMENT, dapr: 'ERR_ACTOR_INSTANCE_MISSING', summary: 'no app hosts this actor type' },
  WEFT_ACTOR_REMINDER_NOT_FOUND: { http: 404, grpc: GrpcStatus.NOT_FOUND, dapr: 'ERR_ACTOR_REMINDER_NOT_FOUND', summary: 'no such reminder' },
  /** A reentrant call chain went deeper than `reentrancy.maxStackDepth`. */
  WEFT_ACTOR_STACK_DEPTH: { http: 500, grpc: GrpcStatus.FAILED_PRECONDITION, dapr: 'ERR_ACTOR_STACK_DEPTH', summary: 'the reentrant call stack is deeper than maxStackDepth' },
  /** The node reached does not own the actor (its table disagrees, a handoff is pending, or it drains it): never reached the app. */
  WEFT_ACTOR_MOVED: { http: 500, grpc: GrpcStatus.UNAVAILABLE, dapr: 'ERR_ACTOR_INSTANCE_MISSING', summary: 'the actor is owned by another node', retryable: true },
  /** A call waited for its turn, or ran in it, longer than the actor call timeout. */
  WEFT_ACTOR_TIMEOUT: { http: 504, grpc: GrpcStatus.DEADLINE_EXCEEDED, dapr: 'ERR_ACTOR_INVOKE_METHOD', summary: 'the actor call did not finish within the actor call timeout' },
  /** A timer could not be created: bad schedule, no callback, actor not active. */
  WEFT_ACTOR_TIMER_CREATE: { http: 500, grpc: GrpcStatus.INVALID_ARGUMENT, dapr: 'ERR_ACTOR_TIMER_CREATE', summary: 'the actor timer could not be created' },
  /** The actor API is not available on this node (no actor membership, or no actor state store configured). */
  WEFT_ACTOR_NOT_SUPPORTED: { http: 501, grpc: GrpcStatus.UNIMPLEMENTED, dapr: 'ERR_ACTOR_NOT_SUPPORTED', summary: 'this actor API is not available on this node' },
  /** Reading actor state failed (the store answered an error, or was unreachable until the deadline). */
  WEFT_ACTOR_STATE_GET: { http: 500, grpc: GrpcStatus.INTERNAL, dapr: 'ERR_ACTOR_STATE_GET', summary: 'the actor state could not be read' },
  /** An actor state transaction was not saved (nothing of it was applied). */
  WEFT_ACTOR_STATE_TRANSACTION_SAVE: { http: 500, grpc: GrpcStatus.INTERNAL, dapr: 'ERR_ACTOR_STATE_TRANSACTION_SAVE', summary: 'the actor state transaction was not saved' },
  /** The store refused a write from a node that is no longer the actor's owner (another node claimed it since). */
  WEFT_ACTOR_STATE_FENCED: { http: 409, grpc: GrpcStatus.ABORTED, dapr: 'ERR_ACTOR_STATE_TRANSACTION_SAVE', summary: 'the store refused a write from a former owner of the actor' },
  /** The node could not record itself as the actor's owner in the state store, so the actor was not activated (never reached the app). */
  WEFT_ACTOR_CLAIM: { http: 503, grpc: GrpcStatus.UNAVAILABLE, dapr: 'ERR_ACTOR_INVOKE_METHOD', summary: 'the actor could not be activated: the state store did not record its owner' },
  WEFT_ACTOR_REMINDER_CREATE: { http: 500, grpc: GrpcStatus.INTERNAL, dapr: 'ERR_ACTOR_REMINDER_CREATE', summary: 'the actor reminder could not be created' },
  WEFT_ACTOR_REMINDER_GET: { http: 500, grpc: GrpcStatus.INTERNAL, dapr: 'ERR_ACTOR_REMINDER_GET', summary: 'the actor reminder could not be read' },
  WEFT_ACTOR_REMINDER_DELETE: { http: 500, grpc: GrpcStatus.INTERNAL, dapr: 'ERR_ACTOR_REMINDER_DELETE', summary: 'the actor reminder could not be deleted' },
  /** A proxied gRPC call (by `dapr-app-id` metadata) to an app whose node calls it over HTTP. */
  WEFT_APP_NOT_GRPC: { http: 501, grpc: GrpcStatus.UNIMPLEMENTED, dapr: 'ERR_DIRECT_INVOKE', summary: 'the target app does not speak gRPC (app protocol grpc or grpcs is needed for proxied gRPC calls)', invoke: true },
  /** The CLI (`weft status`, `weft invoke`) found nothing listening at the node's address. */
  WEFT_NODE_UNREACHABLE: { http: 503, grpc: GrpcStatus.UNAVAILABLE, dapr: 'ERR_NODE_UNREACHABLE', summary: 'no weft node answers at the address the CLI was given' },
  /** The CLI reached a server at the node's address that does not answer as a weft node. */
  WEFT_NOT_A_NODE: { http: 502, grpc: GrpcStatus.UNAVAILABLE, dapr: 'ERR_NOT_A_NODE', summary: 'the server at the address the CLI was given is not a weft node' },
  WEFT_CONFIG: { http: 500, grpc: GrpcStatus.INVALID_ARGUMENT, dapr: 'ERR_CONFIG', summary: 'the configuration is not valid' },
  WEFT_INTERNAL: { http: 500, grpc: GrpcStatus.INTERNAL, dapr: 'ERR_INTERNAL', summary: 'an internal error' },
} as const satisfies Record<string, ErrorSpec>;

export type ErrorCode = keyof typeof Errors;

/** How an error crosses a thread or node boundary. */
export interface WireError {
  code: string;
  message: string;
  appId?: string;
}

export function isErrorCode(code: string): code is ErrorCode {
  return Object.hasOwn(Errors, code);
}

export function errorSpec(code: ErrorCode): ErrorSpec {
  return Errors[code];
}

export class WeftError extends Error {
  readonly code: ErrorCode;
  readonly appId: string | undefined;

  constructor(code: ErrorCode, message?: string, options?: { appId?: string | undefined; cause?: unknown }) {
    super(message ?? Errors[code].summary, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'WeftError';
    this.code = code;
    this.appId = options?.appId;
  }

  get spec(): ErrorSpec {
    return Errors[this.code];
  }

  get httpStatus(): number {
    return Errors[this.code].http;
  }

  get grpcStatus(): GrpcStatusCode {
    return Errors[this.code].grpc;
  }

  get retryable(): boolean {
    return (Errors[this.code] as ErrorSpec).retryable === true;
  }

  /** The message an app sees, in Dapr's words where Dapr has them. */
  get publicMessage(): string {
    const spec: ErrorSpec = Errors[this.code];
    return spec.invoke && this.appId !== undefined
      ? `failed to invoke, id: ${this.appId}, err: ${this.message}`
      : this.message;
  }

  /** Dapr's error body: `{"errorCode": "...", "message": "..."}`, plus weft's own stable code. */
  toJSON(): { errorCode: string; message: string; weftCode: ErrorCode } {
    return { errorCode: Errors[this.code].dapr, message: this.publicMessage, weftCode: this.code };
  }

  toWire(): WireError {
    return this.appId === undefined
      ? { code: this.code, message: this.message }
      : { code: this.code, message: this.message, appId: this.appId };
  }

  /** Rebuilds an error that crossed a boundary; anything unknown becomes WEFT_INTERNAL. */
  static from(value: unknown, appId?: string): WeftError {
    if (value instanceof WeftError) return value;
    if (typeof value === 'object' && value !== null && 'code' in value && typeof value.code === 'string' && isErrorCode(value.code)) {
      const wire = value as WireError;
      return new WeftError(wire.code as ErrorCode, wire.message, { appId: wire.appId ?? appId });
    }
    const message = value instanceof Error ? value.message : String(value);
    return new WeftError('WEFT_INTERNAL', message, { appId, cause: value });
  }
}
