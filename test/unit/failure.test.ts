import * as grpc from '@grpc/grpc-js';
import { describe, expect, it } from 'vitest';
import { Errors } from '../../src/errors.ts';
import { ERROR_CODE_KEY } from '../../src/peer/codec.ts';
import { failure } from '../../workers/failure.ts';
import { fromServiceError } from '../../workers/outbound.ts';

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
