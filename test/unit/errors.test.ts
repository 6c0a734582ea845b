import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { Errors, WeftError, type ErrorCode } from '../../src/errors.ts';

describe('error registry', () => {
  it('documents every code in the README', () => {
    const readme = readFileSync(new URL('../../README.md', import.meta.url), 'utf8');
    for (const code of Object.keys(Errors)) expect(readme, `README lacks ${code}`).toContain(`\`${code}\``);
  });

  it('renders Dapr\'s error body and the invoke message form', () => {
    const e = new WeftError('WEFT_PEER_UNAVAILABLE', 'node n1 is unreachable', { appId: 'orders' });
    expect(e.httpStatus).toBe(500);
    expect(e.retryable).toBe(true);
    expect(JSON.parse(JSON.stringify(e))).toEqual({ errorCode: 'ERR_DIRECT_INVOKE', message: 'failed to invoke, id: orders, err: node n1 is unreachable', weftCode: 'WEFT_PEER_UNAVAILABLE' });
  });

  it('crosses a boundary as {code, message} and comes back the same', () => {
    for (const code of Object.keys(Errors) as ErrorCode[]) {
      const e = WeftError.from(JSON.parse(JSON.stringify(new WeftError(code, 'why', { appId: 'x' }).toWire())));
      expect(e.code).toBe(code);
      expect(e.message).toBe('why');
      expect(e.appId).toBe('x');
    }
    expect(WeftError.from({ code: 'NOT_A_CODE', message: 'm' }).code).toBe('WEFT_INTERNAL');
    expect(WeftError.from(new TypeError('boom')).message).toBe('boom');
  });
});
