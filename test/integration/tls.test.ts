/**
 * Real mutual TLS between grpc-js peers on loopback: who gets in, who is refused, and a server
 * certificate swapped under load without a failed call.
 */
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseAccessControl } from '../../src/security/acl.ts';
import { issueNodeCert, issueWorkloadCert, type CertificateAuthority, type IssuedCert } from '../../src/security/ca.ts';
import { channelCredentials, checkNodeIdentity, peerChannelOptions, rotatingServerCredentials, type RotatingServerCredentials } from '../../src/security/tls.ts';
import { EchoClient, call, failingCall, recordingCheck, startEchoServer, tempCa, type EchoClientT, type EchoServer } from '../fixtures/tls/echo-service.ts';

const TD = 'weft.test';
const HOUR = 3_600_000;

let ca: CertificateAuthority;
let otherCa: CertificateAuthority;
let nodeCert: IssuedCert;
let rotating: RotatingServerCredentials;
let echo: EchoServer;
const clients: EchoClientT[] = [];

function client(cert: Pick<IssuedCert, 'keyPem' | 'chainPem'> | undefined, o: { roots?: string; nodeId?: string; creds?: grpc.ChannelCredentials } = {}): EchoClientT {
  const creds = o.creds ?? (cert === undefined
    ? grpc.credentials.createSsl(Buffer.from(o.roots ?? ca.trustBundlePem), null, null, { checkServerIdentity: checkNodeIdentity({ expectedNodeId: 'node-a', trustDomain: TD }) })
    : channelCredentials({ rootsPem: o.roots ?? ca.trustBundlePem, keyPem: cert.keyPem, certPem: cert.chainPem, expectedNodeId: o.nodeId ?? 'node-a', trustDomain: TD }));
  const c = new EchoClient(`127.0.0.1:${echo.port}`, creds, peerChannelOptions({ expectedNodeId: o.nodeId ?? 'node-a', trustDomain: TD }));
  clients.push(c);
  return c;
}

const workload = (appId: string, extra: Partial<Parameters<typeof issueWorkloadCert>[1]> = {}): IssuedCert =>
  issueWorkloadCert(ca, { appId, namespace: 'default', ...extra });

beforeAll(async () => {
  ca = tempCa(TD);
  otherCa = tempCa(TD); // same trust domain, different keys: must not be trusted
  nodeCert = issueNodeCert(ca, { nodeId: 'node-a', ipAddresses: ['127.0.0.1'], dnsNames: ['localhost'] });
  rotating = rotatingServerCredentials({ keyPem: nodeCert.keyPem, certPem: nodeCert.chainPem, rootsPem: ca.trustBundlePem });
  const acl = parseAccessControl({
    defaultAction: 'deny',
    trustDomain: TD,
    policies: [
      { appId: 'frontend', namespace: 'default', trustDomain: TD, defaultAction: 'allow' },
      { appId: 'reporting', namespace: 'default', trustDomain: TD, defaultAction: 'deny', operations: [{ name: '/reports/**', httpVerb: ['*'], action: 'allow' }] },
    ],
  });
  echo = await startEchoServer(rotating.credentials, acl);
});

afterAll(async () => {
  for (const c of clients) c.close();
  await echo?.close();
});

/** After every refusal the server must still serve a good caller. */
async function stillServes(): Promise<void> {
  expect(await call(client(workload('frontend')))).toBe(`spiffe://${TD}/ns/default/frontend`);
}

describe('mutual TLS on the peer port', () => {
  it('a good client gets in and the server sees its SPIFFE id', async () => {
    const c = client(workload('frontend'));
    expect(await call(c)).toBe(`spiffe://${TD}/ns/default/frontend`);
    expect(echo.seen).toContain(`spiffe://${TD}/ns/default/frontend`);
  });

  it('refuses a certificate from another CA', async () => {
    const foreign = issueWorkloadCert(otherCa, { appId: 'frontend', namespace: 'default' });
    const r = await failingCall(client(foreign));
    expect(r.code).toBe(grpc.status.UNAVAILABLE);
    await stillServes();
  });

  it('refuses an expired certificate', async () => {
    const expired = workload('frontend', { now: Date.now() - 48 * HOUR, ttlMs: HOUR });
    expect(expired.notAfter).toBeLessThan(Date.now());
    const r = await failingCall(client(expired));
    expect(r.code).toBe(grpc.status.UNAVAILABLE);
    await stillServes();
  });

  it('refuses a certificate that is not valid yet', async () => {
    const future = workload('frontend', { now: Date.now() + 2 * HOUR });
    expect(future.notBefore).toBeGreaterThan(Date.now());
    const r = await failingCall(client(future));
    expect(r.code).toBe(grpc.status.UNAVAILABLE);
    await stillServes();
  });

  it('denies a caller from another trust domain at the policy level', async () => {
    const stranger = workload('frontend', { trustDomain: 'evil.example' });
    const r = await failingCall(client(stranger));
    expect(r.code).toBe(grpc.status.PERMISSION_DENIED);
    expect(r.details).toContain('no policy for spiffe://evil.example/ns/default/frontend');
    await stillServes();
  });

  it('denies a different app id when the ACL restricts it', async () => {
    const r = await failingCall(client(workload('intruder')));
    expect(r.code).toBe(grpc.status.PERMISSION_DENIED);
    expect(r.details).toContain('global defaultAction is deny');
    await stillServes();
  });

  it('applies operation rules to an allowed app', async () => {
    const c = client(workload('reporting'));
    expect(await call(c, '/reports/q3/summary')).toBe(`spiffe://${TD}/ns/default/reporting`);
    const r = await failingCall(c, '/orders/1');
    expect(r.code).toBe(grpc.status.PERMISSION_DENIED);
    expect(r.details).toContain('policies[1].defaultAction');
  });

  it('refuses a client with no certificate', async () => {
    const r = await failingCall(client(undefined));
    expect(r.code).toBe(grpc.status.UNAVAILABLE);
    // OpenSSL's alert reaches the client only if it reads before the socket closes
    expect(r.details).toMatch(/certificate required|Failed to connect/);
    await stillServes();
  });

  it('refuses a plaintext client on the TLS port', async () => {
    const r = await failingCall(client(undefined, { creds: grpc.credentials.createInsecure() }));
    expect([grpc.status.UNAVAILABLE, grpc.status.INTERNAL]).toContain(r.code);
    await stillServes();
  });

  it('the client refuses a server whose certificate names another node', async () => {
    const r = await failingCall(client(workload('frontend'), { nodeId: 'node-b' }));
    expect(r.code).toBe(grpc.status.UNAVAILABLE);
    expect(r.details).toContain(`expected spiffe://${TD}/node/node-b`);
    await stillServes();
  });

  it('the client refuses a server presenting a certificate from another CA', async () => {
    const r = await failingCall(client(workload('frontend'), { roots: otherCa.trustBundlePem }));
    expect(r.code).toBe(grpc.status.UNAVAILABLE);
    await stillServes();
  });
});

describe('rotation without restart', () => {
  it('swaps the server certificate while 300 calls run, with zero failures', async () => {
    const frontend = workload('frontend');
    const fingerprints: string[] = [];
    const makeClient = (): EchoClientT => client(undefined, {
      creds: grpc.credentials.createSsl(Buffer.from(ca.trustBundlePem), Buffer.from(frontend.keyPem), Buffer.from(frontend.chainPem), {
        checkServerIdentity: recordingCheck({ expectedNodeId: 'node-a', trustDomain: TD }, fingerprints),
      }),
    });
    const next = issueNodeCert(ca, { nodeId: 'node-a', ipAddresses: ['127.0.0.1'] });
    const failures: unknown[] = [];
    let done = 0;
    // Four lanes of sequential calls; every 25 calls a lane opens a fresh channel, so handshakes
    // happen before, during and after the swap.
    const lane = async (): Promise<void> => {
      let c = makeClient();
      for (let i = 0; i < 75; i++) {
        if (i > 0 && i % 25 === 0) {
          c.close();
          c = makeClient();
        }
        try {
          await call(c);
        } catch (err) {
          failures.push(err);
        }
        done++;
        if (done === 120) rotating.update({ keyPem: next.keyPem, certPem: next.chainPem });
      }
      c.close();
    };
    await Promise.all([lane(), lane(), lane(), lane()]);
    expect(failures).toEqual([]);
    expect(done).toBe(300);
    const distinct = new Set(fingerprints);
    expect(distinct.size).toBe(2); // handshakes saw the old certificate, then the new one
  });

  it('keeps serving with the old certificate when handed a key that does not match', async () => {
    const a = issueNodeCert(ca, { nodeId: 'node-a' });
    const b = issueNodeCert(ca, { nodeId: 'node-a' });
    expect(() => rotating.update({ keyPem: a.keyPem, certPem: b.chainPem })).toThrow(/TLS identity is not usable/);
    await stillServes();
  });

  it('trusts a new root once the bundle holds old and new (CA rotation)', async () => {
    const newCa = tempCa(TD);
    const fromNewCa = issueWorkloadCert(newCa, { appId: 'frontend', namespace: 'default' });
    const both = ca.trustBundlePem + newCa.trustBundlePem;
    expect((await failingCall(client(fromNewCa, { roots: both }))).code).toBe(grpc.status.UNAVAILABLE);
    rotating.update({ rootsPem: both });
    expect(await call(client(fromNewCa, { roots: both }))).toBe(`spiffe://${TD}/ns/default/frontend`);
    await stillServes(); // old-CA clients still get in
  });
});
