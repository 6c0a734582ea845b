import * as grpc from '@grpc/grpc-js';
import { describe, expect, it } from 'vitest';
import { Errors } from '../../src/errors.ts';
import { ERROR_CODE_KEY } from '../../src/peer/codec.ts';
import { failure } from '../../workers/failure.ts';
import { answerCut, fromServiceError } from '../../workers/outbound.ts';

describe('which failed calls are retried (never reached the app)', () => {
  it('exactly the invocation codes src/errors.ts marks retryable', () => {
    for (const [code, spec] of Object.entries(Errors)) {
      const expected = 'retryable' in spec && spec.retryable === true && 'invoke' in spec && spec.invoke === true;
      expect({ code, retryable: failure(code, 'x').retryable }).toEqual({ code, retryable: expected });
    }
  });

  it('a node that refused the call as overloaded before calling its app: retried, as docs/resiliency.md says', () => {
    expect(failure('WEFT_OVERLOADED', 'too many calls queued').retryable).toBe(true);
    // as it arrives from a peer: the code in the trailers
    const metadata = new grpc.Metadata();
    metadata.set(ERROR_CODE_KEY, 'WEFT_OVERLOADED');
    const err = Object.assign(new Error('8 RESOURCE_EXHAUSTED'), { code: grpc.status.RESOURCE_EXHAUSTED, details: 'too many calls queued', metadata }) as grpc.ServiceError;
    const f = fromServiceError(err, { nodeId: 'n', address: '127.0.0.1', port: 1 });
    expect(f.wire.code).toBe('WEFT_OVERLOADED');
    expect(f.retryable).toBe(true);
  });

  it('what may have reached the app is not retried', () => {
    for (const code of ['WEFT_APP_UNAVAILABLE', 'WEFT_APP_ABORTED', 'WEFT_PEER_FAILED', 'WEFT_DEADLINE_EXCEEDED', 'WEFT_CANCELLED', 'WEFT_INTERNAL']) {
      expect(failure(code, 'x').retryable).toBe(false);
    }
  });
});

describe('the rest of an answer that cannot be fetched (FetchBody): its head has gone, so never retried', () => {
  const peer = { nodeId: 'node-b', address: '127.0.0.1', port: 4242 };
  const serviceError = (code: grpc.status, details: string, weftCode?: string): grpc.ServiceError => {
    const metadata = new grpc.Metadata();
    if (weftCode !== undefined) metadata.set(ERROR_CODE_KEY, weftCode);
    return Object.assign(new Error(`${code} ${details}`), { code, details, metadata }) as grpc.ServiceError;
  };

  it('a node that stopped (UNAVAILABLE, which alone would read as retryable) is WEFT_PEER_ANSWER_CUT, naming the app, the node and why', () => {
    const wire = answerCut(serviceError(grpc.status.UNAVAILABLE, 'No connection established. Last error: connect ECONNREFUSED'), peer, 'reports');
    expect(wire.code).toBe('WEFT_PEER_ANSWER_CUT');
    expect(wire.message).toContain('app reports');
    expect(wire.message).toContain('node node-b at 127.0.0.1:4242');
    expect(wire.message).toContain('ECONNREFUSED');
    expect(failure(wire.code, wire.message).retryable).toBe(false);
  });

  it('so is a refusal from the node itself (shutting down, an unknown or expired ticket)', () => {
    expect(answerCut(serviceError(grpc.status.UNAVAILABLE, 'the node is shutting down', 'WEFT_SHUTTING_DOWN'), peer, 'reports').code).toBe('WEFT_PEER_ANSWER_CUT');
    expect(answerCut(serviceError(grpc.status.INVALID_ARGUMENT, 'unknown or expired body ticket', 'WEFT_BAD_REQUEST'), peer, 'reports').code).toBe('WEFT_PEER_ANSWER_CUT');
  });

  it('the caller going away, the deadline and the app closing its connection keep their own codes', () => {
    expect(answerCut(serviceError(grpc.status.CANCELLED, 'Cancelled on client'), peer, 'reports').code).toBe('WEFT_CANCELLED');
    expect(answerCut(serviceError(grpc.status.DEADLINE_EXCEEDED, 'Deadline exceeded'), peer, 'reports').code).toBe('WEFT_DEADLINE_EXCEEDED');
    expect(answerCut(serviceError(grpc.status.INTERNAL, 'app closed', 'WEFT_APP_ABORTED'), peer, 'reports').code).toBe('WEFT_APP_ABORTED');
  });
});
