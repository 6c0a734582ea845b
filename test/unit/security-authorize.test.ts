import { X509Certificate } from 'node:crypto';
import type { PeerCertificate } from 'node:tls';
import type { ServerSurfaceCall } from '@grpc/grpc-js/build/src/server-call.js';
import { beforeAll, describe, expect, it } from 'vitest';
import { parseAccessControl } from '../../src/security/acl.ts';
import { authorizePeerCall } from '../../src/security/authorize.ts';
import { issueNodeCert, issueWorkloadCert, type CertificateAuthority } from '../../src/security/ca.ts';
import { peerIdentityFromCall, peerSpiffeIdFromCall, type CallWithAuthContext } from '../../src/security/tls.ts';
import { tempCa } from '../fixtures/tls/echo-service.ts';

/** A call as grpc-js shows it once the TLS socket is authorized. */
function callWith(pem: string | undefined, transport = 'ssl'): CallWithAuthContext {
  if (pem === undefined) return { getAuthContext: () => ({}) };
  const x = new X509Certificate(pem);
  const peer = { raw: x.raw, subjectaltname: x.subjectAltName } as unknown as PeerCertificate;
  return { getAuthContext: () => ({ transportSecurityType: transport, sslPeerCertificate: peer }) };
}

let ca: CertificateAuthority;
beforeAll(() => {
  ca = tempCa('weft.test');
});

describe('peerIdentityFromCall', () => {
  it('fits grpc-js server calls', () => {
    const accepts = (c: ServerSurfaceCall): CallWithAuthContext => c;
    expect(typeof accepts).toBe('function');
  });

  it('reads the workload id of a verified certificate', () => {
    const w = issueWorkloadCert(ca, { appId: 'orders', namespace: 'shop' });
    expect(peerIdentityFromCall(callWith(w.certPem))).toEqual({ trustDomain: 'weft.test', namespace: 'shop', appId: 'orders' });
  });

  it('refuses: no certificate, a node identity, a CA certificate, an untrusted trust domain', () => {
    expect(() => peerIdentityFromCall(callWith(undefined))).toThrow('no verified client certificate');
    const n = issueNodeCert(ca, { nodeId: 'node-b' });
    expect(peerSpiffeIdFromCall(callWith(n.certPem))).toEqual({ kind: 'node', trustDomain: 'weft.test', nodeId: 'node-b' });
    expect(() => peerIdentityFromCall(callWith(n.certPem))).toThrow('is a node identity');
    expect(() => peerIdentityFromCall(callWith(ca.issuerCertPem))).toThrow('is a CA certificate');
    const w = issueWorkloadCert(ca, { appId: 'a', trustDomain: 'other.test' });
    expect(() => peerIdentityFromCall(callWith(w.certPem), { trustDomains: ['weft.test'] })).toThrow('trust domain other.test is not trusted here');
    try {
      peerIdentityFromCall(callWith(undefined));
    } catch (err) {
      expect((err as { code: string }).code).toBe('WEFT_PEER_UNAUTHENTICATED');
    }
  });
});

describe('a call on a connection already closed', () => {
  it('is cancelled, not an unknown caller: grpc-js fails reading the certificate of a destroyed TLS socket', () => {
    // what grpc-js 1.14 does there: getPeerCertificate() answers null, then `.raw` is read
    const closed: CallWithAuthContext = { getAuthContext: () => (null as unknown as PeerCertificate).raw as never };
    expect(() => peerSpiffeIdFromCall(closed)).toThrow(expect.objectContaining({ code: 'WEFT_CANCELLED' }));
  });
});

describe('authorizePeerCall', () => {
  const acl = () => parseAccessControl({ defaultAction: 'deny', policies: [{ appId: 'frontend', namespace: 'default', trustDomain: 'weft.test', operations: [{ name: '/orders/*', httpVerb: ['GET'], action: 'allow' }] }] });

  it('allows what the policy allows and says why', () => {
    const w = issueWorkloadCert(ca, { appId: 'frontend' });
    const r = authorizePeerCall(callWith(w.certPem), acl(), { method: '/orders/1', verb: 'GET' }, 'orders');
    expect(r.caller.appId).toBe('frontend');
    expect(r.decision.where).toBe('policies[0].operations[0]');
  });

  it('throws WEFT_ACCESS_DENIED naming the target app', () => {
    const w = issueWorkloadCert(ca, { appId: 'frontend' });
    expect(() => authorizePeerCall(callWith(w.certPem), acl(), { method: '/orders/1', verb: 'DELETE' }, 'orders')).toThrow(expect.objectContaining({ code: 'WEFT_ACCESS_DENIED', appId: 'orders' }));
    // No verified certificate: nobody to ask the policy about (401, not 403).
    expect(() => authorizePeerCall(callWith(undefined), acl(), { method: '/orders/1', verb: 'GET' }, 'orders')).toThrow(expect.objectContaining({ code: 'WEFT_PEER_UNAUTHENTICATED', appId: 'orders' }));
  });
});
