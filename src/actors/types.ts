/**
 * Shapes shared by the actor modules: how the host reaches its app, and the results the
 * host answers with (results inside, exceptions at the edge).
 */
import type { WeftError } from '../errors.ts';
import type { ActorError } from './errors.ts';

export interface AppCallRequest {
  readonly verb: string;
  /** Path on the app, with the leading slash; type, id and method segments URI-encoded. */
  readonly path: string;
  /** Flat list: name, value, name, value... (lower-case names). */
  readonly headers: readonly string[];
  readonly body: Uint8Array | null;
  readonly signal?: AbortSignal | undefined;
}

export interface AppCallResponse {
  readonly status: number;
  readonly headers: readonly string[];
  readonly body: Uint8Array;
}

/**
 * How the host reaches its app (the node implements it on the undici app channel).
 * Transport failures reject with a WeftError; any HTTP answer resolves, whatever its status.
 */
export interface AppCaller {
  call(req: AppCallRequest): Promise<AppCallResponse>;
}

export type HostError = ActorError | WeftError;
export type ActorResult<T> = { readonly ok: true; readonly value: T } | { readonly ok: false; readonly error: HostError };

export type LogFn = (level: 'debug' | 'info' | 'warn' | 'error', msg: string, fields?: Record<string, unknown>) => void;

/** The body of `POST /v1.0/actors/{type}/{id}/timers/{name}`, as the app sent it. */
export interface TimerRequest {
  readonly callback?: unknown;
  /** Any JSON value; sent back to the app as it was registered. */
  readonly data?: unknown;
  readonly dueTime?: unknown;
  readonly period?: unknown;
  readonly ttl?: unknown;
}
