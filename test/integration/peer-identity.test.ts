/**
 * The receiving node's reading of who calls, against a real grpc-js server with mTLS:
 * - the certificate is read once per connection, whatever the number of calls on it;
 * - a call whose connection closed before its identity was read (the connection torn down
 *   under a stream still queued: an HTTP/2 protection, a keepalive timeout, a peer that went
 *   away) fails as cancelled, that one call only: not as an unknown caller (grpc-js's
 *   getAuthContext() threw "Cannot read properties of null (reading 'raw')", which was
 *   reported and counted as a refused peer call), and nothing is remembered for it.
 */
import * as grpc from '@grpc/grpc-js';
import { TLSSocket } from 'node:tls';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { ALLOW_ALL } from '../../src/security/acl.ts';
import { PeerAuthorizer } from '../../src/security/authorize.ts';
import { issueNodeCert, issueWorkloadCert, type CertificateAuthority } from '../../src/security/ca.ts';
import { channelCredentials, peerChannelOptions, serverCredentials } from '../../src/security/tls.ts';
import { tempCa } from '../fixtures/tls/echo-service.ts';

const TD = 'weft.test';
const raw = (b: Buffer): Buffer => b;
const service = {
  Hold: { path: '/weft.test.Id/Hold', requestStream: true, responseStream: true, requestSerialize: raw, requestDeserialize: raw, responseSerialize: raw, responseDeserialize: raw },
} satisfies grpc.ServiceDefinition;
const Client = grpc.makeGenericClientConstructor(service, 'Id');
type Call = grpc.ServerDuplexStream<Buffer, Buffer>;

describe('the caller\'s identity on the receiving node', () => {
  let ca: CertificateAuthority;
  let server: grpc.Server;
  let port: number;
  const held: Call[] = [];
  const decisions: Array<{ allowed: boolean; reason: string }> = [];
  const authorizer = new PeerAuthorizer({
    trustDomain: TD,
    acl: () => ALLOW_ALL,
    onDecision: (_t, _c, allowed, reason) => void decisions.push({ allowed, reason }),
  });
  const authorize = (c: Call): string => {
    try {
      return authorizer.authorize(c, { namespace: 'default', appId: 'target' }, { method: '/weft.test.Id/Hold' }).caller.appId;
    } catch (err) {
      return (err as { code: string }).code;
    }
  };

  function client(): InstanceType<typeof Client> {
    const w = issueWorkloadCert(ca, { appId: 'front', namespace: 'default' });
    const expect_ = { expectedNodeId: 'node-b', trustDomain: TD };
    return new Client(`127.0.0.1:${port}`, channelCredentials({ rootsPem: ca.trustBundlePem, keyPem: w.keyPem, certPem: w.chainPem, ...expect_ }), peerChannelOptions(expect_));
  }

  function open(c: InstanceType<typeof Client>): grpc.ClientDuplexStream<Buffer, Buffer> {
    const s = (c as unknown as { Hold: () => grpc.ClientDuplexStream<Buffer, Buffer> }).Hold();
    s.on('error', () => {});
    return s;
  }

  async function until(check: () => boolean): Promise<void> {
    for (let i = 0; i < 400 && !check(); i++) await new Promise((r) => setTimeout(r, 25));
    expect(check()).toBe(true);
  }

  beforeAll(async () => {
    ca = tempCa(TD);
    const node = issueNodeCert(ca, { nodeId: 'node-b' });
    server = new grpc.Server();
    server.addService(service, { Hold: (call: Call) => void held.push(call) });
    port = await new Promise<number>((resolve, reject) => {
      server.bindAsync('127.0.0.1:0', serverCredentials({ rootsPem: ca.trustBundlePem, keyPem: node.keyPem, certPem: node.chainPem }), (e, p) => (e ? reject(e) : resolve(p)));
    });
  });

  afterEach(() => {
    vi.restoreAllMocks();
    held.length = 0;
  });

  afterAll(() => {
    server?.forceShutdown();
  });

  it('reads the certificate once per connection', async () => {
    const c = client();
    const streams = Array.from({ length: 30 }, () => open(c));
    await until(() => held.length === 30);
    const reads = vi.spyOn(TLSSocket.prototype, 'getPeerCertificate');
    expect(held.map(authorize)).toEqual(Array.from({ length: 30 }, () => 'front'));
    expect(reads.mock.calls.length).toBe(1);
    for (const s of streams) s.cancel();
    c.close();
  });

  it('a call whose connection closed before its identity was read fails as cancelled, and is no refusal', async () => {
    const c = client();
    open(c);
    await until(() => held.length === 1);
    const call = held[0] as Call;
    const cancelled = new Promise<void>((resolve) => call.on('cancelled', () => resolve()));
    // The connection goes away with the stream still waiting to be served.
    server.forceShutdown();
    await cancelled;
    decisions.length = 0;
    expect(authorize(call)).toBe('WEFT_CANCELLED');
    expect(decisions).toEqual([]);
    c.close();
  });
});
