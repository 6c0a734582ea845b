/** The configs shipped in deploy/ stay valid as the config grows (they are what users copy). */
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
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

  // Needs a consul binary (CONSUL_BIN, or consul on PATH); a fresh machine has none, so it skips.
  const consul = process.env['CONSUL_BIN'] || (spawnSync('consul', ['version']).status === 0 ? 'consul' : undefined);
  it.skipIf(consul === undefined)('consul/agent.hcl passes `consul validate deploy/consul/` (skipped without a consul binary: set CONSUL_BIN)', () => {
    const r = spawnSync(consul as string, ['validate', fileURLToPath(new URL('../../deploy/consul/', import.meta.url))], { encoding: 'utf8' });
    expect(`${r.stdout}${r.stderr}`).toContain('Configuration is valid');
    expect(r.status).toBe(0);
  });
});
