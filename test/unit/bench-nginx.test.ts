import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createPrivateKey, X509Certificate } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { expandModes, modeOf } from '../../bench/modes.ts';
import { findNginx, nginxConfig, nginxPairConfigs, PEER_NAME, writePairCerts } from '../../bench/nginx.ts';

const dir = mkdtempSync(join(tmpdir(), 'weft-bench-nginx-unit-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** The directives of one block, as `name args` strings, for a block that starts with `header {`. */
function block(conf: string, header: string): string[] {
  const start = conf.indexOf(`${header} {`);
  expect(start, `no "${header} {" in:\n${conf}`).toBeGreaterThanOrEqual(0);
  let depth = 0;
  let i = conf.indexOf('{', start);
  const from = i + 1;
  for (; i < conf.length; i++) {
    if (conf[i] === '{') depth++;
    if (conf[i] === '}' && --depth === 0) break;
  }
  return conf
    .slice(from, i)
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l.endsWith(';'))
    .map((l) => l.slice(0, -1));
}

describe('nginx pair config', () => {
  it('generates a plaintext proxy: one process, keepalive upstream, nothing outside its directory', () => {
    const conf = nginxConfig({ dir: '/tmp/run/a', listenPort: 4001, upstreamPort: 4002, keepalive: 64 });
    const top = conf.split('\n').filter((l) => /^[a-z_]+ .*;$/.test(l));
    expect(top).toEqual(
      expect.arrayContaining(['daemon off;', 'master_process off;', 'worker_processes 1;', 'pid "/tmp/run/a/nginx.pid";', 'error_log "/tmp/run/a/error.log" warn;']),
    );
    const upstream = block(conf, 'upstream next');
    expect(upstream).toContain('server 127.0.0.1:4002');
    expect(upstream).toContain('keepalive 64');
    expect(upstream.some((d) => d.startsWith('keepalive_requests '))).toBe(true);
    const server = block(conf, 'server');
    expect(server).toContain('listen 127.0.0.1:4001');
    expect(server).toContain('proxy_http_version 1.1');
    expect(server).toContain('proxy_set_header Connection ""');
    expect(conf).toContain('proxy_pass http://next;');
    expect(conf).not.toMatch(/ssl/);
    // Every path nginx writes is in the run's directory (none under /var).
    const paths = [...conf.matchAll(/"(\/[^"]*)"/g)].map((m) => m[1]);
    expect(paths.length).toBeGreaterThanOrEqual(7);
    for (const p of paths) expect(p!.startsWith('/tmp/run/a/')).toBe(true);
  });

  it('generates mTLS on both sides of the A → B hop, and the rewrite of the invoke URL', () => {
    const { a, b } = nginxPairConfigs({
      dir: '/tmp/run',
      aPort: 5001,
      bPort: 5002,
      appPort: 5003,
      keepalive: 16,
      rewrite: { from: '/v1.0/invoke/testapp/method/test', to: '/test' },
      tls: {
        client: { certFile: '/c/a.crt', keyFile: '/c/a.key', trustedFile: '/c/roots.pem' },
        server: { certFile: '/c/b.crt', keyFile: '/c/b.key', clientCaFile: '/c/roots.pem' },
        serverName: PEER_NAME,
      },
    });
    expect([a.listenPort, a.upstreamPort, b.listenPort, b.upstreamPort]).toEqual([5001, 5002, 5002, 5003]);
    expect(a.dir).not.toBe(b.dir);

    const confA = nginxConfig(a);
    const serverA = block(confA, 'server');
    expect(serverA).toContain('listen 127.0.0.1:5001'); // the generator's side stays plaintext
    expect(serverA).toEqual(
      expect.arrayContaining([
        'proxy_ssl_certificate "/c/a.crt"',
        'proxy_ssl_certificate_key "/c/a.key"',
        'proxy_ssl_trusted_certificate "/c/roots.pem"',
        'proxy_ssl_verify on',
        `proxy_ssl_name ${PEER_NAME}`,
        'proxy_ssl_protocols TLSv1.2 TLSv1.3',
      ]),
    );
    expect(block(confA, 'location = /v1.0/invoke/testapp/method/test')).toEqual(['proxy_pass https://next/test']);
    expect(block(confA, 'location /')).toEqual(['return 404']);

    const serverB = block(nginxConfig(b), 'server');
    expect(serverB).toEqual(
      expect.arrayContaining([
        'listen 127.0.0.1:5002 ssl',
        'ssl_certificate "/c/b.crt"',
        'ssl_client_certificate "/c/roots.pem"',
        'ssl_verify_client on',
        'ssl_protocols TLSv1.2 TLSv1.3',
      ]),
    );
    expect(nginxConfig(b)).toContain('proxy_pass http://next;'); // B → app: plaintext, like a node → its app
  });

  it('refuses what would make a broken or unsafe config', () => {
    const ok = { dir: '/tmp/x', listenPort: 1, upstreamPort: 2, keepalive: 1 };
    expect(() => nginxConfig({ ...ok, listenPort: 0 })).toThrow(/listenPort must be a TCP port/);
    expect(() => nginxConfig({ ...ok, upstreamPort: 70_000 })).toThrow(/upstreamPort/);
    expect(() => nginxConfig({ ...ok, keepalive: 0 })).toThrow(/keepalive/);
    expect(() => nginxConfig({ ...ok, dir: '/tmp/a"b' })).toThrow(/unsupported character/);
  });

  it('issues the pair certificates from weft CA code: B named for A to verify, both chained to one root', () => {
    const certs = writePairCerts(join(dir, 'certs'));
    const root = new X509Certificate(readFileSync(certs.client.trustedFile));
    const leaf = (file: string): X509Certificate => new X509Certificate(readFileSync(file, 'utf8').split(/(?<=-----END CERTIFICATE-----\n)/)[0]!);
    const issuer = (file: string): X509Certificate => new X509Certificate(readFileSync(file, 'utf8').split(/(?<=-----END CERTIFICATE-----\n)/)[1]!);
    const b = leaf(certs.server.certFile);
    expect(b.subjectAltName).toContain(`DNS:${PEER_NAME}`);
    expect(certs.serverName).toBe(PEER_NAME);
    for (const file of [certs.client.certFile, certs.server.certFile]) {
      expect(leaf(file).verify(issuer(file).publicKey)).toBe(true);
      expect(issuer(file).verify(root.publicKey)).toBe(true);
    }
    expect(leaf(certs.client.certFile).checkPrivateKey(createPrivateKey(readFileSync(certs.client.keyFile)))).toBe(true);
  });

  it('finds nginx by $NGINX_BIN, then on PATH', () => {
    const fake = join(dir, 'bin');
    rmSync(fake, { recursive: true, force: true });
    const bin = join(fake, 'nginx');
    mkdirSync(fake, { recursive: true });
    writeFileSync(bin, '#!/bin/sh\n');
    chmodSync(bin, 0o755);
    expect(findNginx({ PATH: `/nonexistent:${fake}` })).toBe(bin);
    expect(findNginx({ PATH: fake, NGINX_BIN: join(dir, 'missing') })).toBeNull(); // asked for, absent: no silent fallback
    expect(findNginx({ PATH: '/nonexistent', NGINX_BIN: bin })).toBe(bin);
  });
});

describe('bench modes', () => {
  it('reads each mode, and nginx as both pairs', () => {
    expect(modeOf('nginx-plain')).toEqual({ api: 'nginx', tls: 'plain' });
    expect(modeOf('nginx-mtls')).toEqual({ api: 'nginx', tls: 'mtls' });
    expect(modeOf('workers=3')).toEqual({ api: 'http', workers: 3 });
    expect(modeOf('grpc-app')).toEqual({ api: 'grpc-app', workers: 0 });
    expect(modeOf('grpc-proxy=2')).toEqual({ api: 'grpc-proxy', workers: 2 });
    expect(modeOf('nginx')).toBeUndefined(); // expanded before it is read
  });

  it('brings the baseline and a weft path along with the nginx pair', () => {
    expect(expandModes(['nginx'])).toEqual(['baseline', 'nginx-plain', 'nginx-mtls', 'inline']);
    expect(expandModes(['nginx-mtls', 'workers'])).toEqual(['baseline', 'nginx-mtls', 'workers']);
    expect(expandModes(['baseline', 'inline', 'nginx', 'nginx-mtls'])).toEqual(['baseline', 'inline', 'nginx-plain', 'nginx-mtls']);
    expect(expandModes(['baseline', 'workers', 'inline'])).toEqual(['baseline', 'workers', 'inline']);
    expect(() => expandModes(['nginx', 'nope'])).toThrow(/unknown mode "nope"/);
  });

  it('reads the Node pair by its TLS, `node-pair` as the run\'s, and brings the baseline and a weft path along', () => {
    expect(modeOf('node-pair-mtls')).toEqual({ api: 'node-pair', tls: 'mtls' });
    expect(modeOf('node-pair-plain')).toEqual({ api: 'node-pair', tls: 'plain' });
    expect(modeOf('node-pair')).toBeUndefined(); // expanded before it is read
    expect(expandModes(['node-pair'])).toEqual(['baseline', 'node-pair-mtls', 'inline']);
    expect(expandModes(['node-pair'], false)).toEqual(['baseline', 'node-pair-plain', 'inline']);
    expect(expandModes(['baseline', 'nginx-mtls', 'node-pair-mtls', 'inline'])).toEqual(['baseline', 'nginx-mtls', 'node-pair-mtls', 'inline']);
    expect(expandModes(['nginx-mtls', 'node-pair-mtls'])).toEqual(['baseline', 'nginx-mtls', 'node-pair-mtls', 'inline']);
  });
});
