import { describe, expect, it } from 'vitest';
import { parseTarget, shown } from '../../src/appid.ts';
import { WeftError } from '../../src/errors.ts';
import { validateConfig } from '../../src/config.ts';

function code(raw: string): string {
  const t = parseTarget(raw, 'default');
  return t instanceof WeftError ? t.code : 'ok';
}

describe('app id validation (every entry)', () => {
  it('takes appId and appId.namespace', () => {
    expect(parseTarget('orders', 'default')).toEqual({ appId: 'orders', namespace: 'default' });
    expect(parseTarget('orders.shop', 'default')).toEqual({ appId: 'orders', namespace: 'shop' });
    expect(parseTarget('Orders_v2-x', 'ns')).toEqual({ appId: 'Orders_v2-x', namespace: 'ns' });
    expect(code('a'.repeat(63))).toBe('ok');
    expect(code(`${'a'.repeat(63)}.${'n'.repeat(63)}`)).toBe('ok');
  });

  it('refuses what Dapr would not take: empty is WEFT_NO_APP_ID, the rest WEFT_BAD_APP_ID', () => {
    expect(code('')).toBe('WEFT_NO_APP_ID');
    for (const bad of [
      'a.b.c', '.a', 'a.', '-a', '_a', 'a'.repeat(64), `a.${'n'.repeat(64)}`, 'café', 'a\tb', 'a\u0001', 'a\u0000', 'a b',
      'a/b', 'a%2Fb', 'a\r\nb', 'é', '\u202e', 'a\u00a0', 'a:b', 'x'.repeat(10_000),
    ]) {
      expect(code(bad), JSON.stringify(bad)).toBe('WEFT_BAD_APP_ID');
    }
  });

  it('never echoes raw control characters or unbounded text in its message', () => {
    const e = parseTarget(`a\u0000\r\n\u007f${'x'.repeat(5000)}`, 'default') as WeftError;
    expect(e.message).not.toMatch(/[\u0000-\u001f\u007f]/);
    expect(e.message.length).toBeLessThan(400);
    expect(shown('a\u0085b')).toBe('"a\\u0085b"');
  });

  it('is the rule the config applies to the apps a node serves', () => {
    expect(() => validateConfig({ apps: [{ appId: 'a'.repeat(64) }] })).toThrow('apps[0].appId');
    expect(() => validateConfig({ apps: [{ appId: 'a'.repeat(63) }] })).not.toThrow();
  });
});
