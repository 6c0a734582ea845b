import { X509Certificate } from 'node:crypto';
import { mkdtempSync, readFileSync, statSync, writeFileSync, rmSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  CA_DEFAULTS, CaError, initCa, inspectCert, issueNodeCert, issueWorkloadCert, loadCa,
  type CertificateAuthority, type InitCaResult,
} from '../../src/security/ca.ts';
import { formatWorkloadId, parseAnySpiffeId, parseSpiffeId, parseSubjectAltName, spiffeIdOf } from '../../src/security/spiffe.ts';

const dirs: string[] = [];
const tmp = (): string => {
  const d = mkdtempSync(join(tmpdir(), 'weft-ca-unit-'));
  dirs.push(d);
  return d;
};
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

let made: InitCaResult;
let ca: CertificateAuthority;
beforeAll(() => {
  made = initCa(join(tmp(), 'ca'), { trustDomain: 'example.org' });
  ca = loadCa(made.dir);
});

function caErrorOf(fn: () => unknown): CaError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(CaError);
    expect((err as CaError).code).toBe('WEFT_CONFIG');
    return err as CaError;
  }
  throw new Error('expected a CaError');
}

describe('initCa', () => {
  it('writes root, issuer and trust bundle; keys 0600', () => {
    for (const f of ['root.crt', 'root.key', 'issuer.crt', 'issuer.key', 'trust-bundle.pem']) expect(existsSync(join(made.dir, f))).toBe(true);
    expect(statSync(join(made.dir, 'root.key')).mode & 0o777).toBe(0o600);
    expect(statSync(join(made.dir, 'issuer.key')).mode & 0o777).toBe(0o600);
    expect(readFileSync(join(made.dir, 'trust-bundle.pem'), 'utf8')).toBe(made.rootCertPem);
  });

  it('makes a 10-year root and a 1-year issuer signed by it', () => {
    const root = new X509Certificate(made.rootCertPem);
    const issuer = new X509Certificate(made.issuerCertPem);
    expect(root.ca && issuer.ca).toBe(true);
    expect(issuer.checkIssued(root) && issuer.verify(root.publicKey)).toBe(true);
    const years = (x: X509Certificate) => (x.validToDate.getTime() - x.validFromDate.getTime()) / (365 * 86_400_000);
    expect(years(root)).toBeGreaterThan(9.99);
    expect(years(issuer)).toBeGreaterThan(0.99);
    expect(years(issuer)).toBeLessThan(1.01);
    expect(ca.trustDomain).toBe('example.org');
  });

  it('refuses to overwrite a CA unless forced', () => {
    const before = readFileSync(join(made.dir, 'root.crt'), 'utf8');
    expect(caErrorOf(() => initCa(made.dir, { trustDomain: 'example.org' })).reason).toBe('CA_EXISTS');
    expect(readFileSync(join(made.dir, 'root.crt'), 'utf8')).toBe(before);
    const dir = join(tmp(), 'forced');
    initCa(dir, { trustDomain: 'a.test' });
    const again = initCa(dir, { trustDomain: 'b.test', force: true });
    expect(loadCa(dir).trustDomain).toBe('b.test');
    expect(again.rootCertPem).not.toBe(before);
  });

  it('rejects a bad trust domain', () => {
    expect(() => initCa(join(tmp(), 'x'), { trustDomain: 'Not Valid' })).toThrow('trustDomain: "Not Valid" is not a valid trust domain');
  });
});

describe('loadCa errors name the file and carry a stable reason', () => {
  const copy = (): string => {
    const d = tmp();
    for (const f of ['root.crt', 'root.key', 'issuer.crt', 'issuer.key', 'trust-bundle.pem']) writeFileSync(join(d, f), readFileSync(join(made.dir, f)));
    return d;
  };

  it('does not need root.key', () => {
    const d = copy();
    rmSync(join(d, 'root.key'));
    expect(loadCa(d).issuerCertPem).toBe(ca.issuerCertPem);
  });

  it('missing file', () => {
    const d = copy();
    rmSync(join(d, 'issuer.key'));
    const e = caErrorOf(() => loadCa(d));
    expect(e.reason).toBe('CA_MISSING_FILE');
    expect(e.message).toContain(join(d, 'issuer.key'));
  });

  it('not PEM', () => {
    const d = copy();
    writeFileSync(join(d, 'issuer.crt'), 'hello');
    expect(caErrorOf(() => loadCa(d))).toMatchObject({ reason: 'CA_BAD_PEM', message: `${join(d, 'issuer.crt')}: holds no PEM certificate` });
  });

  it('key of another certificate', () => {
    const d = copy();
    writeFileSync(join(d, 'issuer.key'), readFileSync(join(made.dir, 'root.key')));
    expect(caErrorOf(() => loadCa(d)).reason).toBe('CA_KEY_MISMATCH');
  });

  it('issuer not signed by any trusted root', () => {
    const d = copy();
    const other = initCa(join(tmp(), 'other'), { trustDomain: 'example.org' });
    writeFileSync(join(d, 'trust-bundle.pem'), other.rootCertPem);
    expect(caErrorOf(() => loadCa(d)).reason).toBe('CA_UNTRUSTED');
  });

  it('expired issuer, with its date and what to do', () => {
    const d = join(tmp(), 'old');
    initCa(d, { trustDomain: 'example.org', now: Date.now() - 400 * 86_400_000 });
    const e = caErrorOf(() => loadCa(d));
    expect(e.reason).toBe('CA_EXPIRED');
    expect(e.message).toMatch(/issuer\.crt: expired on \d{4}-/);
  });

  it('a leaf is not a CA', () => {
    const d = copy();
    const leaf = issueWorkloadCert(ca, { appId: 'x' });
    writeFileSync(join(d, 'issuer.crt'), leaf.certPem);
    writeFileSync(join(d, 'issuer.key'), leaf.keyPem);
    expect(caErrorOf(() => loadCa(d)).reason).toBe('CA_NOT_CA');
  });
});

describe('issuing', () => {
  it('a workload certificate: SPIFFE URI SAN, both usages, 24 h, backdated 15 min, chained to the root', () => {
    const before = Date.now();
    const w = issueWorkloadCert(ca, { appId: 'orders', namespace: 'prod' });
    expect(w.spiffeId).toBe('spiffe://example.org/ns/prod/orders');
    const x = new X509Certificate(w.certPem);
    expect(x.ca).toBe(false);
    expect(x.keyUsage).toEqual(expect.arrayContaining(['1.3.6.1.5.5.7.3.1', '1.3.6.1.5.5.7.3.2']));
    expect(spiffeIdOf(x)).toBe(w.spiffeId);
    expect(w.notAfter - before).toBeGreaterThan(CA_DEFAULTS.workloadTtlMs - 2000);
    expect(w.notAfter - before).toBeLessThanOrEqual(CA_DEFAULTS.workloadTtlMs);
    expect(before - w.notBefore).toBeGreaterThanOrEqual(CA_DEFAULTS.clockSkewMs - 1000);
    const chain = w.chainPem.match(/BEGIN CERTIFICATE/g);
    expect(chain).toHaveLength(2);
    const issuer = new X509Certificate(ca.issuerCertPem);
    expect(x.verify(issuer.publicKey)).toBe(true);
  });

  it('a node certificate: node SPIFFE id plus DNS and IP SANs', () => {
    const n = issueNodeCert(ca, { nodeId: 'host-1:50002', dnsNames: ['node1.local'], ipAddresses: ['10.0.0.7', '::1'], ttlMs: 3_600_000 });
    const info = inspectCert(n.certPem);
    expect(info.sans.uris).toEqual(['spiffe://example.org/node/host-1:50002']);
    expect(info.sans.dns).toEqual(['node1.local']);
    expect(info.sans.ips).toEqual(['10.0.0.7', '0:0:0:0:0:0:0:1']);
    expect(info.isCa).toBe(false);
  });

  it('never outlives the issuer', () => {
    const w = issueWorkloadCert(ca, { appId: 'a', ttlMs: 5 * 365 * 86_400_000 });
    expect(w.notAfter).toBe(new X509Certificate(ca.issuerCertPem).validToDate.getTime());
  });

  it('uses a key made beforehand', async () => {
    const { generateKeyPem } = await import('../../src/security/ca.ts');
    const keyPem = await generateKeyPem();
    expect(issueWorkloadCert(ca, { appId: 'a', keyPem }).keyPem).toBe(keyPem);
  });

  it('rejects bad requests naming the field', () => {
    expect(() => issueWorkloadCert(ca, { appId: 'a.b' })).toThrow('appId: "a.b" is not a valid app id');
    expect(() => issueWorkloadCert(ca, { appId: 'a', namespace: 'x/y' })).toThrow('namespace: "x/y" is not a valid namespace');
    expect(() => issueWorkloadCert(ca, { appId: 'a', ttlMs: 0 })).toThrow('ttl: must be a positive duration');
    expect(() => issueNodeCert(ca, { nodeId: 'n', ipAddresses: ['300.1.1.1'] })).toThrow('ip: "300.1.1.1" is not an IPv4 or IPv6 address');
    expect(() => issueNodeCert(ca, { nodeId: 'n', dnsNames: ['bad name'] })).toThrow('dns: "bad name" is not a DNS name');
    expect(() => issueNodeCert(ca, { nodeId: 'n/1' })).toThrow('nodeId: "n/1" is not a valid node id');
  });

  it('serial numbers are unique and positive', () => {
    const serials = new Set(Array.from({ length: 5 }, () => issueWorkloadCert(ca, { appId: 'a', keyPem: made.issuerKeyPem }).serialNumber));
    expect(serials.size).toBe(5);
    for (const s of serials) expect(parseInt(s.slice(0, 2), 16)).toBeLessThan(0x80);
  });
});

describe('inspectCert', () => {
  it('describes a CA certificate', () => {
    const info = inspectCert(made.rootCertPem);
    expect(info).toMatchObject({ isCa: true, subject: 'CN=weft root CA, O=example.org', issuer: 'CN=weft root CA, O=example.org', spiffeId: 'spiffe://example.org', keyType: 'rsa' });
    expect(info.sha256).toMatch(/^([0-9A-F]{2}:){31}[0-9A-F]{2}$/);
    expect(new Date(info.notAfter).getTime()).toBeGreaterThan(new Date(info.notBefore).getTime());
    expect(JSON.parse(JSON.stringify(info))).toEqual(info);
  });
});

describe('SPIFFE ids', () => {
  it('parse and format workload ids', () => {
    expect(parseSpiffeId('spiffe://td/ns/default/orders')).toEqual({ trustDomain: 'td', namespace: 'default', appId: 'orders' });
    expect(formatWorkloadId({ trustDomain: 'td', namespace: 'default', appId: 'orders' })).toBe('spiffe://td/ns/default/orders');
    expect(parseAnySpiffeId('spiffe://td/node/n-1')).toEqual({ kind: 'node', trustDomain: 'td', nodeId: 'n-1' });
  });

  it('reject malformed ids', () => {
    for (const bad of ['http://td/ns/a/b', 'spiffe://TD/ns/a/b', 'spiffe://td/ns/a', 'spiffe://td/ns/a/b/c', 'spiffe://td/ns/a/b.c', 'spiffe:///ns/a/b', 'spiffe://td/x/a/b']) {
      expect(() => parseAnySpiffeId(bad), bad).toThrow(/SPIFFE id/);
    }
    expect(() => parseSpiffeId('spiffe://td/node/n1')).toThrow('is a node id, not a workload id');
  });

  it('reads Node subjectaltname text, quoted values included', () => {
    expect(parseSubjectAltName('URI:spiffe://a/ns/b/c, DNS:x.y, IP Address:1.2.3.4, DNS:"we,ird"')).toEqual({ uris: ['spiffe://a/ns/b/c'], dns: ['x.y', 'we,ird'], ips: ['1.2.3.4'] });
    expect(parseSubjectAltName(undefined)).toEqual({ uris: [], dns: [], ips: [] });
  });
});
