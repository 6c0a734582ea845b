/**
 * The app protocols besides plain HTTP and gRPC (see test/compat/dapr-sdk-grpc-app.test.ts for
 * those): h2c (HTTP/2 cleartext), https and grpcs (TLS to the app with a self-signed
 * certificate, accepted as Dapr accepts it), and a gRPC app that is down.
 */
import { createServer as createH2cServer } from 'node:http2';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { request } from 'undici';
import forge from 'node-forge';
import * as grpc from '@grpc/grpc-js';
import type { WeftNode } from '../../src/node.ts';
import { Cluster, url } from '../support/cluster.ts';
import { freePort } from '../support/ports.ts';
import { startGrpcApp, type GrpcTestApp } from '../support/grpc-app.ts';

/** A self-signed certificate for 127.0.0.1, made now (no CA anywhere trusts it). */
function selfSigned(): { key: string; cert: string } {
  const keys = forge.pki.rsa.generateKeyPair(2048);
  const cert = forge.pki.createCertificate();
  cert.publicKey = keys.publicKey;
  cert.serialNumber = '01';
  cert.validity.notBefore = new Date(Date.now() - 60_000);
  cert.validity.notAfter = new Date(Date.now() + 3_600_000);
  const attrs = [{ name: 'commonName', value: 'self-signed-app' }];
  cert.setSubject(attrs);
  cert.setIssuer(attrs);
  cert.setExtensions([{ name: 'subjectAltName', altNames: [{ type: 7, ip: '127.0.0.1' }] }]);
  cert.sign(keys.privateKey, forge.md.sha256.create());
  return { key: forge.pki.privateKeyToPem(keys.privateKey), cert: forge.pki.certificateToPem(cert) };
}

describe('app protocols h2c, https, grpcs', () => {
  const cluster = new Cluster();
  const closers: Array<() => Promise<void>> = [];
  let a: WeftNode;
  let grpcs: GrpcTestApp;
  let downPort: number;

  beforeAll(async () => {
    const tls = selfSigned();
    const h2c = createH2cServer((req, res) => {
      res.writeHead(200, { 'content-type': 'text/plain', 'x-http-version': req.httpVersion });
      req.pipe(res);
    });
    await new Promise<void>((resolve) => h2c.listen(0, '127.0.0.1', resolve));
    closers.push(() => new Promise((resolve) => h2c.close(() => resolve())));
    const https = createHttpsServer({ key: tls.key, cert: tls.cert }, (req, res) => {
      res.writeHead(200, { 'content-type': 'text/plain', 'x-tls': String((req.socket as { encrypted?: boolean }).encrypted === true) });
      req.pipe(res);
    });
    await new Promise<void>((resolve) => https.listen(0, '127.0.0.1', resolve));
    closers.push(() => new Promise((resolve) => {
      https.closeAllConnections();
      https.close(() => resolve());
    }));
    grpcs = await startGrpcApp(grpc.ServerCredentials.createSsl(null, [{ private_key: Buffer.from(tls.key), cert_chain: Buffer.from(tls.cert) }], false));
    closers.push(() => grpcs.close());
    downPort = await freePort();

    a = await cluster.node({ apps: [{ appId: 'front' }] });
    await cluster.node({
      apps: [
        { appId: 'h2c-app', appPort: (h2c.address() as AddressInfo).port, appProtocol: 'h2c' },
        { appId: 'https-app', appPort: (https.address() as AddressInfo).port, appProtocol: 'https' },
        { appId: 'grpcs-app', appPort: grpcs.port, appProtocol: 'grpcs' },
        { appId: 'down-grpc', appPort: downPort, appProtocol: 'grpc' },
      ],
    });
  });

  afterAll(async () => {
    await cluster.close();
    for (const close of closers) await close();
  });

  it('h2c: the app is called over HTTP/2 cleartext', async () => {
    const res = await request(url(a, '/v1.0/invoke/h2c-app/method/echo?x=1'), { method: 'POST', body: 'over h2c' });
    expect(res.statusCode).toBe(200);
    expect(res.headers['x-http-version']).toBe('2.0');
    expect(await res.body.text()).toBe('over h2c');
  });

  it('https: TLS to the app, its self-signed certificate accepted', async () => {
    const res = await request(url(a, '/v1.0/invoke/https-app/method/echo'), { method: 'POST', body: 'over tls' });
    expect(res.statusCode).toBe(200);
    expect(res.headers['x-tls']).toBe('true');
    expect(await res.body.text()).toBe('over tls');
  });

  it('grpcs: OnInvoke over TLS, the self-signed certificate accepted', async () => {
    const res = await request(url(a, '/v1.0/invoke/grpcs-app/method/echo'), { method: 'POST', headers: { 'content-type': 'text/plain' }, body: 'over grpcs' });
    expect(res.statusCode).toBe(200);
    expect(await res.body.text()).toBe('over grpcs');
    expect(grpcs.received.at(-1)?.request.method).toBe('echo');
  });

  it('a gRPC app that is down: 500 ERR_DIRECT_INVOKE with WEFT_APP_UNAVAILABLE', async () => {
    const res = await request(url(a, '/v1.0/invoke/down-grpc/method/echo'), { method: 'POST', body: 'x' });
    expect(res.statusCode).toBe(500);
    expect(await res.body.json()).toMatchObject({ errorCode: 'ERR_DIRECT_INVOKE', weftCode: 'WEFT_APP_UNAVAILABLE' });
  });
});
