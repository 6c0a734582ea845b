/**
 * Certificates that live two seconds, renewed by IdentityManager on its own timers and pushed into
 * live grpc-js credentials on both sides, while calls keep flowing: no call may fail (Dapr users
 * report failures right after renewal; this is the regression test for weft's version of it).
 */
import * as grpc from '@grpc/grpc-js';
import { afterAll, describe, expect, it } from 'vitest';
import { IdentityManager, type RotatedEvent } from '../../src/security/identity.ts';
import { TlsIdentityProvider, channelCredentials, peerChannelOptions, peerServerOptions, rotatingServerCredentials, type RotatingServerCredentials } from '../../src/security/tls.ts';
import { EchoClient, call, recordingCheck, startEchoServer, tempCa, type EchoServer } from '../fixtures/tls/echo-service.ts';

const TD = 'weft.test';
let server: IdentityManager | undefined;
let caller: IdentityManager | undefined;
let echo: EchoServer | undefined;
let aged: EchoServer | undefined;

afterAll(async () => {
  server?.close();
  caller?.close();
  await echo?.close();
  await aged?.close();
});

describe('rotation driven by IdentityManager', () => {
  it('renews server and client certificates under load with zero failed calls', async () => {
    const ca = tempCa(TD);
    // The serving node and the calling node, each with its own manager and 2 s certificates.
    server = new IdentityManager({ ca, nodeId: 'node-a', ipAddresses: ['127.0.0.1'], nodeTtlMs: 2000 });
    caller = new IdentityManager({ ca, nodeId: 'node-b', workloadTtlMs: 2000 });
    await server.start();
    await caller.start([{ namespace: 'default', appId: 'frontend' }]);

    const n = server.node();
    const creds: RotatingServerCredentials = rotatingServerCredentials({ keyPem: n.keyPem, certPem: n.certPem, rootsPem: n.rootsPem });
    server.on('rotated', (e: RotatedEvent) => {
      if (e.bundle.kind === 'node') creds.update(e.bundle);
    });
    echo = await startEchoServer(creds.credentials);

    const w = caller.workload('default', 'frontend');
    if (w === undefined) throw new Error('no workload identity');
    const provider = new TlsIdentityProvider({ keyPem: w.keyPem, certPem: w.certPem, rootsPem: w.rootsPem });
    caller.on('rotated', (e: RotatedEvent) => {
      if (e.bundle.key === 'default/frontend') provider.update(e.bundle);
    });

    const serverCerts: string[] = [];
    const expect_ = { expectedNodeId: 'node-a', trustDomain: TD };
    const newClient = () => new EchoClient(
      `127.0.0.1:${echo?.port}`,
      grpc.experimental.createCertificateProviderChannelCredentials(provider, provider, { checkServerIdentity: recordingCheck(expect_, serverCerts) }),
      peerChannelOptions(expect_),
    );

    const failures: unknown[] = [];
    let calls = 0;
    const until = Date.now() + 3500;
    const lane = async (): Promise<void> => {
      let c = newClient();
      let n = 0;
      while (Date.now() < until) {
        if (++n % 20 === 0) {
          c.close();
          c = newClient();
        }
        try {
          await call(c);
        } catch (err) {
          failures.push(err);
        }
        calls++;
      }
      c.close();
    };
    await Promise.all([lane(), lane(), lane()]);

    expect(failures).toEqual([]);
    expect(calls).toBeGreaterThan(100);
    // Both sides really rotated during the run: several server and client certificates were used.
    expect(new Set(serverCerts).size).toBeGreaterThanOrEqual(3);
    expect(echo.clientSerials.size).toBeGreaterThanOrEqual(3);
  });

  it('caps connection age so a handshake-time identity is re-checked, without failing calls', async () => {
    const ca = tempCa(TD);
    const m = new IdentityManager({ ca, nodeId: 'node-a', ipAddresses: ['127.0.0.1'] });
    await m.start([{ namespace: 'default', appId: 'frontend' }]);
    const n = m.node();
    aged = await startEchoServer(rotatingServerCredentials({ keyPem: n.keyPem, certPem: n.certPem, rootsPem: n.rootsPem }).credentials, undefined, peerServerOptions(4000));
    const w = m.workload('default', 'frontend');
    if (w === undefined) throw new Error('no workload identity');
    const handshakes: string[] = [];
    const expect_ = { expectedNodeId: 'node-a', trustDomain: TD };
    const creds = grpc.credentials.createSsl(Buffer.from(w.rootsPem), Buffer.from(w.keyPem), Buffer.from(w.certPem), { checkServerIdentity: recordingCheck(expect_, handshakes) });
    expect(() => channelCredentials({ ...expect_, keyPem: w.keyPem, certPem: w.certPem, rootsPem: w.rootsPem })).not.toThrow();
    const c = new EchoClient(`127.0.0.1:${aged.port}`, creds, peerChannelOptions(expect_));
    const failures: unknown[] = [];
    const until = Date.now() + 2600;
    while (Date.now() < until) {
      try {
        await call(c);
      } catch (err) {
        failures.push(err);
      }
    }
    c.close();
    m.close();
    expect(failures).toEqual([]);
    expect(handshakes.length).toBeGreaterThanOrEqual(2); // one channel, reconnected after max age
  });
});
