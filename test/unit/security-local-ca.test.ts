/**
 * The host-local CA of the single-host mode: created on first use, and several nodes starting
 * at once (separate processes) end up with one CA, never a mix of files from two.
 */
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';
import { initOrLoadCa } from '../../src/security/ca.ts';
import { validateConfig } from '../../src/config.ts';

const run = promisify(execFile);
const dirs: string[] = [];
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

function temp(): string {
  const d = mkdtempSync(join(tmpdir(), 'weft-local-ca-'));
  dirs.push(d);
  return d;
}

describe('initOrLoadCa', () => {
  it('creates the CA once, then loads it', () => {
    const dir = join(temp(), 'ca');
    const first = initOrLoadCa(dir, { trustDomain: 'public' });
    expect(first.created).toBe(true);
    const again = initOrLoadCa(dir, { trustDomain: 'public' });
    expect(again.created).toBe(false);
    expect(again.issuerCertPem).toBe(first.issuerCertPem);
  });

  it('four processes starting at once agree on one CA and leave no temporary directory behind', async () => {
    const parent = temp();
    const dir = join(parent, 'ca');
    const script = `import(${JSON.stringify(new URL('../../src/security/ca.ts', import.meta.url).href)}).then((m) => { const ca = m.initOrLoadCa(${JSON.stringify(dir)}, { trustDomain: 'public' }); process.stdout.write(JSON.stringify({ created: ca.created, issuer: ca.issuerCertPem })); })`;
    const outs = await Promise.all([0, 1, 2, 3].map(() => run(process.execPath, ['--input-type=module', '-e', script])));
    const results = outs.map((o) => JSON.parse(o.stdout) as { created: boolean; issuer: string });
    expect(new Set(results.map((r) => r.issuer)).size).toBe(1);
    expect(results.filter((r) => r.created).length).toBe(1);
    expect(readdirSync(parent)).toEqual(['ca']);
  }, 30_000);
});

describe('security config', () => {
  it('defaults to the host-local CA beside the registry with the local resolver', () => {
    const c = validateConfig({ resolver: { type: 'local', local: { path: '/var/lib/weft/registry.sqlite' } } }, {});
    expect(c.security).toMatchObject({ caDir: '/var/lib/weft/ca', caDirDefaulted: true, plaintext: false, workloadTtl: 86_400_000 });
    expect(validateConfig({}, { WEFT_REGISTRY: '/srv/x/reg.sqlite' }).security.caDir).toBe('/srv/x/ca');
    expect(validateConfig({}, { WEFT_CA_DIR: '/etc/weft/ca' }).security).toMatchObject({ caDir: '/etc/weft/ca', caDirDefaulted: false });
  });

  it('names the field of a bad security setting', () => {
    expect(() => validateConfig({ security: { trustDomain: 'Not Valid' } }, {})).toThrow(/^security\.trustDomain: "Not Valid" is not a valid trust domain/);
    expect(() => validateConfig({ security: { workloadTtl: '1s' } }, {})).toThrow(/^security\.workloadTtl: must be at least 2s/);
    expect(() => validateConfig({ security: { accessControl: { defaultAction: 'maybe' } } }, {})).toThrow(/^security\.accessControl\.defaultAction: must be allow or deny/);
    expect(() => validateConfig({ security: { accessControl: '/nonexistent/acl.yaml' } }, {})).toThrow(/^security\.accessControl: cannot read \/nonexistent\/acl\.yaml/);
    expect(() => validateConfig({ apps: [{ appId: 'a', accessControl: { policies: [{ appId: 'b' }] } }] }, {})).toThrow(/^apps\[0\]\.accessControl\.policies\[0\]\.namespace: is required/);
    expect(() => validateConfig({ resolver: 'consul' }, {})).toThrow(/^security\.caDir: is required with the consul resolver/);
    expect(validateConfig({ resolver: 'consul', security: { plaintext: true } }, {}).security.plaintext).toBe(true);
    expect(existsSync('/nonexistent')).toBe(false);
  });
});
