import { describe, expect, it } from 'vitest';
import { MAX_METHOD_LENGTH, normalizeMethod } from '../../src/method-path.ts';
import { WeftError } from '../../src/errors.ts';

function path(raw: string): string {
  const m = normalizeMethod(raw);
  if (m instanceof WeftError) throw m;
  return m.path;
}

function refused(raw: string): string {
  const m = normalizeMethod(raw);
  if (!(m instanceof WeftError)) throw new Error(`${JSON.stringify(raw)} was taken as ${m.path}`);
  expect(m.code).toBe('WEFT_BAD_PATH');
  return m.message;
}

describe('method path normalization', () => {
  it('leaves a plain path alone', () => {
    for (const p of ['', 'neworder', 'orders/42', 'orders/42/', 'a-b_c.d~e/f:g@h', "x!$&'()*+,=", 'v1.2/x']) expect(path(p)).toBe(p);
  });

  it('drops empty and . segments, resolves .., decodes unreserved escapes once', () => {
    expect(path('/orders')).toBe('orders');
    expect(path('a//b///c')).toBe('a/b/c');
    expect(path('a/./b/.')).toBe('a/b');
    expect(path('x/../orders/admin')).toBe('orders/admin');
    expect(path('x/%2e%2E/orders')).toBe('orders');
    expect(path('%61dmin/%7Euser')).toBe('admin/~user');
    expect(path('a/b/')).toBe('a/b/');
  });

  it('writes everything else in one encoding, so the app sees what the policy matched', () => {
    expect(path('caf%c3%a9')).toBe('caf%C3%A9');
    expect(path('café')).toBe('caf%C3%A9');
    expect(path('a b')).toBe('a%20b');
    expect(path('a%20b')).toBe('a%20b');
    expect(path('100%25')).toBe('100%25');
    expect(path('admin;jsessionid=1')).toBe('admin%3Bjsessionid=1');
    expect(path('q%3Fx%23y')).toBe('q%3Fx%23y');
  });

  it('is idempotent: a node normalizing again changes nothing', () => {
    for (const p of ['x/../a//b', 'café/%7e', 'a b;c', '100%25', 'a/b/', '%F0%9F%98%80']) {
      const once = path(p);
      expect(path(once)).toBe(once);
    }
  });

  it('refuses what servers could read differently', () => {
    expect(refused('a/%2F/b')).toContain('%2F');
    expect(refused('a%2fb')).toContain('%2F');
    refused('a%5Cb');
    refused('a\\b');
    refused('..\\admin');
    expect(refused('a%00b')).toContain('control');
    refused('a\u0000b');
    refused('a\tb');
    refused('a%0d%0aSet-Cookie:x');
    refused('a%7Fb');
    refused('a%C2%85b');
    expect(refused('%252F')).toContain('twice');
    refused('%252e%252e/admin');
    refused('%25%32%46');
    refused('a%');
    refused('a%G1');
    refused('a%2');
    expect(refused('%C3%28')).toContain('UTF-8');
    refused('%FF');
    refused('%ED%A0%80');
    refused('\ud800');
    expect(refused('..')).toContain('root');
    refused('../x');
    refused('a/../../x');
    refused('%2e%2e/admin');
    refused('x'.repeat(MAX_METHOD_LENGTH + 1));
  });

  it('never echoes raw control characters in its message', () => {
    const m = normalizeMethod('a%00\u0001\r\n') as WeftError;
    expect(m.message).not.toMatch(/[\u0000-\u001f]/);
  });

  it('takes a long hostile path in linear time (no regex backtracking)', () => {
    // A backtracking fast path would not finish; the call count is bounded, not timed.
    expect(normalizeMethod(`${'a'.repeat(5000)}\u0000`)).toBeInstanceOf(WeftError);
    expect(path(`${'ab/'.repeat(2000)}c`)).toBe(`${'ab/'.repeat(2000)}c`);
  });
});
