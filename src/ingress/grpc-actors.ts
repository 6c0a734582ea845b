/**
 * The actor RPCs of Dapr's gRPC API besides InvokeActor: state (`GetActorState`,
 * `ExecuteActorStateTransaction`), timers and reminders. The same calls as the HTTP routes
 * (src/ingress/actors-http.ts) over the same `ActorApi`; errors are the registry's gRPC
 * statuses with the `weft-code` trailer. `data` bytes are JSON when they parse as JSON, else
 * they are kept as a string (the app gets them back in its timer or reminder fire).
 */
import type * as grpc from '@grpc/grpc-js';
import { WeftError } from '../errors.ts';
import { ActorError } from '../actors/errors.ts';
import type { ActorApi } from './actors-http.ts';
import type { RawOperation } from '../actors/storage.ts';

interface ActorKey {
  actor_type?: string;
  actor_id?: string;
}
interface NamedRequest extends ActorKey {
  name?: string;
  due_time?: string;
  period?: string;
  ttl?: string;
  callback?: string;
  data?: Buffer;
}
interface GetStateRequest extends ActorKey {
  key?: string;
}
interface TransactionRequest extends ActorKey {
  operations?: Array<{ operationType?: string; key?: string; value?: { type_url?: string; value?: Buffer } | null; metadata?: Record<string, string> }>;
}

export interface GrpcActorContext {
  readonly actors: ActorApi | undefined;
  readonly invokeTimeoutMs: number;
  /** Throws a WeftError when the call lacks the API token. */
  authenticate(md: grpc.Metadata): void;
  /** A WeftError as a gRPC status. */
  status(err: WeftError): Partial<grpc.StatusObject>;
}

type Unary<Req, Res> = (call: grpc.ServerUnaryCall<Req, Res>, cb: grpc.sendUnaryData<Res>) => void;

export function actorStateHandlers(ctx: GrpcActorContext): Record<string, Unary<never, unknown>> {
  /** Runs one RPC: token, actor API, deadline; any failure becomes a status. */
  const rpc = <Req extends ActorKey, Res>(fn: (actors: ActorApi, req: Req, deadline: number, type: string, id: string) => Promise<Res>): Unary<Req, Res> => (call, cb) => {
    const run = async (): Promise<Res> => {
      ctx.authenticate(call.metadata);
      const actors = ctx.actors;
      if (actors === undefined) throw new ActorError('WEFT_ACTOR_NOT_SUPPORTED', 'this node serves no actors');
      const type = call.request.actor_type ?? '';
      const id = call.request.actor_id ?? '';
      if (type === '' || id === '') throw new WeftError('WEFT_BAD_REQUEST', 'actor_type and actor_id are required');
      let deadline = Date.now() + ctx.invokeTimeoutMs;
      const asked = call.getDeadline();
      const askedMs = asked instanceof Date ? asked.getTime() : asked;
      if (Number.isFinite(askedMs)) deadline = Math.min(deadline, askedMs);
      return fn(actors, call.request, deadline, type, id);
    };
    run().then((res) => cb(null, res), (err: unknown) => {
      try {
        cb(ctx.status(WeftError.from(err)));
      } catch {
        // the call is gone
      }
    });
  };
  const unwrap = <T>(r: { ok: true; value: T } | { ok: false; error: WeftError }): T => {
    if (!r.ok) throw r.error;
    return r.value;
  };
  const name = (req: NamedRequest): string => {
    if (req.name === undefined || req.name === '') throw new WeftError('WEFT_BAD_REQUEST', 'name is required');
    return req.name;
  };
  return {
    GetActorState: rpc<GetStateRequest, { data: Buffer }>(async (actors, req, deadline, type, id) => {
      if (req.key === undefined || req.key === '') throw new WeftError('WEFT_BAD_REQUEST', 'key is required');
      const value = unwrap(await actors.getState(type, id, req.key, deadline));
      return { data: value === undefined ? Buffer.alloc(0) : Buffer.from(value) };
    }),
    ExecuteActorStateTransaction: rpc<TransactionRequest, object>(async (actors, req, deadline, type, id) => {
      const ops: RawOperation[] = (req.operations ?? []).map((op) => ({
        operation: op.operationType, key: op.key, value: op.value?.value, metadata: op.metadata,
      }));
      unwrap(await actors.transactState(type, id, ops, deadline));
      return {};
    }),
    RegisterActorTimer: rpc<NamedRequest, object>(async (actors, req, _deadline, type, id) => {
      unwrap(actors.createTimer(type, id, name(req), { callback: req.callback, data: jsonOf(req.data), dueTime: req.due_time, period: req.period, ttl: req.ttl }));
      return {};
    }),
    UnregisterActorTimer: rpc<NamedRequest, object>(async (actors, req, _deadline, type, id) => {
      actors.deleteTimer(type, id, name(req));
      return {};
    }),
    RegisterActorReminder: rpc<NamedRequest, object>(async (actors, req, deadline, type, id) => {
      unwrap(await actors.registerReminder(type, id, name(req), { data: jsonOf(req.data), dueTime: req.due_time, period: req.period, ttl: req.ttl }, deadline));
      return {};
    }),
    UnregisterActorReminder: rpc<NamedRequest, object>(async (actors, req, deadline, type, id) => {
      unwrap(await actors.deleteReminder(type, id, name(req), deadline));
      return {};
    }),
  } as unknown as Record<string, Unary<never, unknown>>;
}

/** The JSON value of `data` bytes, or the text itself when it is not JSON; undefined when empty. */
function jsonOf(data: Buffer | undefined): unknown {
  if (data === undefined || data.length === 0) return undefined;
  const text = data.toString('utf8');
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return text;
  }
}
