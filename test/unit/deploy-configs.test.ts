/** The configs shipped in deploy/ stay valid as the config grows (they are what users copy). */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { validateConfig } from '../../src/config.ts';

const read = (path: string): unknown => parse(readFileSync(new URL(`../../deploy/${path}`, import.meta.url), 'utf8'));

describe('deploy configs', () => {
  it('systemd: a consul node with its CA', () => {
    const c = validateConfig(read('systemd/weft.yaml'), {});
    expect(c.resolver.type).toBe('consul');
    expect(c.apps.map((a) => a.appId)).toEqual(['orders']);
  });

  it('compose and kubernetes: the shared node config, with the CA from WEFT_CA_DIR', () => {
    const c = validateConfig(read('compose/weft.yaml'), { WEFT_CA_DIR: '/etc/weft-ca' });
    expect(c.resolver.type).toBe('consul');
    expect(() => validateConfig(read('compose/weft.yaml'), {})).toThrow(/security\.caDir/);
  });
});
