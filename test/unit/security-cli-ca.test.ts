import { X509Certificate } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { caCommand } from '../../src/cli/ca.ts';

const root = mkdtempSync(join(tmpdir(), 'weft-cli-ca-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

async function run(...argv: string[]): Promise<{ code: number; text: string }> {
  let text = '';
  const code = await caCommand(argv, { json: false, write: (s) => (text += s) });
  return { code, text };
}

describe('weft ca', () => {
  const dir = join(root, 'ca');

  it('init, then refuses a second init without --force', async () => {
    const r = await run('init', '--dir', dir, '--trust-domain', 'acme.io');
    expect(r.code).toBe(0);
    expect(r.text).toContain('Created a CA for trust domain acme.io');
    const again = await run('init', '--dir', dir, '--json');
    expect(again.code).toBe(1);
    expect(JSON.parse(again.text)).toMatchObject({ error: { code: 'WEFT_CONFIG', reason: 'CA_EXISTS' } });
  });

  it('issue a node certificate (human output)', async () => {
    const r = await run('issue', '--dir', dir, '--node-id', 'n1', '--dns', 'n1.local', '--ip', '10.1.2.3', '--ip', '127.0.0.1', '--out', join(root, 'n1'));
    expect(r.code).toBe(0);
    expect(r.text).toContain('Issued spiffe://acme.io/node/n1');
    const x = new X509Certificate(readFileSync(join(root, 'n1.crt')));
    expect(x.subjectAltName).toContain('DNS:n1.local');
    expect(x.subjectAltName).toContain('IP Address:10.1.2.3');
    expect(statSync(join(root, 'n1.key')).mode & 0o777).toBe(0o600);
  });

  it('issue an app certificate with a TTL (JSON output), and refuse to overwrite it', async () => {
    const r = await run('issue', '--dir', dir, '--app-id', 'orders', '--namespace', 'shop', '--ttl', '2h', '--out', join(root, 'orders'), '--json');
    expect(r.code).toBe(0);
    const doc = JSON.parse(r.text);
    expect(doc.certificate.spiffeId).toBe('spiffe://acme.io/ns/shop/orders');
    const life = Date.parse(doc.certificate.notAfter) - Date.now();
    expect(life).toBeGreaterThan(2 * 3_600_000 - 5000);
    expect(life).toBeLessThanOrEqual(2 * 3_600_000);
    const again = await run('issue', '--dir', dir, '--app-id', 'orders', '--out', join(root, 'orders'));
    expect(again.code).toBe(1);
    expect(again.text).toContain('already exists; pass --force');
    expect((await run('issue', '--dir', dir, '--app-id', 'orders', '--out', join(root, 'orders'), '--force')).code).toBe(0);
  });

  it('inspect prints every certificate of a chain', async () => {
    const r = await run('inspect', join(root, 'orders.crt'));
    expect(r.code).toBe(0);
    expect(r.text).toContain('certificate 1 of 2');
    expect(r.text).toContain('SPIFFE id:    spiffe://acme.io/ns/default/orders');
    const j = await run('inspect', join(root, 'orders.crt'), '--json');
    const doc = JSON.parse(j.text);
    expect(doc.certificates).toHaveLength(2);
    expect(doc.certificates[1].isCa).toBe(true);
  });

  it('usage errors exit 2 and show the usage', async () => {
    for (const argv of [
      ['issue', '--dir', dir, '--out', 'x'],
      ['issue', '--dir', dir, '--out', 'x', '--app-id', 'a', '--node-id', 'b'],
      ['issue', '--dir', dir, '--out', 'x', '--app-id', 'a', '--ip', '1.2.3.4'],
      ['issue', '--dir', dir, '--out', 'x', '--app-id', 'a', '--ttl', 'soon'],
      ['init'],
      ['init', '--dir', dir, '--bogus'],
      ['inspect'],
      ['frobnicate'],
    ]) {
      const r = await run(...argv);
      expect(r.code, argv.join(' ')).toBe(2);
      expect(r.text).toContain('Usage: weft ca');
    }
  });

  it('operation errors exit 1 and name the file', async () => {
    const r = await run('issue', '--dir', join(root, 'nope'), '--app-id', 'a', '--out', join(root, 'a'));
    expect(r.code).toBe(1);
    expect(r.text).toContain(join(root, 'nope', 'issuer.crt'));
    const bad = await run('inspect', join(root, 'missing.pem'), '--json');
    expect(bad.code).toBe(1);
    expect(JSON.parse(bad.text).error.reason).toBe('CA_UNREADABLE');
  });

  it('--help for each command', async () => {
    for (const argv of [['--help'], ['init', '--help'], ['issue', '-h'], ['inspect', '--help'], []]) {
      const r = await run(...argv);
      expect(r.code).toBe(0);
      expect(r.text).toMatch(/^Usage: weft ca/);
    }
  });
});
