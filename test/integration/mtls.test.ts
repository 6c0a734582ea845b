/**
 * mTLS between real nodes: identities from certificates (never from the request head), peers
 * from another CA or trust domain refused, access policies end to end, certificates renewed
 * under load without a failed call, and plaintext only when asked for.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import * as grpc from '@grpc/grpc-js';
import { pino } from 'pino';
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { validateConfig } from '../../src/config.ts';
import type { WeftNode } from '../../src/node.ts';
import type { Logger } from '../../src/observability/log.ts';
import { ERROR_CODE_KEY, PeerMethods, decodeInvokeResponse, encodeInvokeRequest, type CallHead, type InvokeResponse } from '../../src/peer/codec.ts';
import { initCa, issueNodeCert, issueWorkloadCert, loadCa, type IssuedCert } from '../../src/security/ca.ts';
import { channelCredentials, peerChannelOptions } from '../../src/security/tls.ts';
import { startBurner } from '../support/burner.ts';
import { Cluster, echoHandler, url } from '../support/cluster.ts';

interface ErrorBody {
  status: number;
  errorCode: string;
  message: string;
  weftCode: string;
}

async function errorOf(res: Awaited<ReturnType<typeof request>>): Promise<ErrorBody> {
  const body = (await res.body.json()) as Omit<ErrorBody, 'status'>;
  return { status: res.statusCode, ...body };
}

/** A logger whose lines the test can read. */
function capture(): { logger: Logger; lines: Array<Record<string, unknown>> } {
  const lines: Array<Record<string, unknown>> = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const l of chunk.toString('utf8').split('\n')) if (l.trim() !== '') lines.push(JSON.parse(l) as Record<string, unknown>);
      done();
    },
  });
  return { logger: pino({ level: 'info' }, sink), lines };
}

async function metric(node: WeftNode, name: string, labels: Record<string, string>): Promise<number> {
  const text = await node.metrics.text();
  let total = 0;
  for (const line of text.split('\n')) {
    if (!line.startsWith(`${name}{`)) continue;
    if (Object.entries(labels).every(([k, v]) => line.includes(`${k}="${v}"`))) total += Number(line.slice(line.lastIndexOf(' ') + 1));
  }
  return total;
}

async function echoCall(from: WeftNode, path: string, options: { port?: number; method?: string; body?: string | Buffer } = {}): Promise<{ status: number; headers: Record<string, string | string[] | undefined>; text: string }> {
  const port = options.port ?? from.ports.http;
  const res = await request(`http://127.0.0.1:${port}${path}`, { method: (options.method ?? 'POST') as 'POST', body: options.body ?? null });
  return { status: res.statusCode, headers: res.headers, text: await res.body.text() };
}

/** A raw peer call to a node's Invoke, with a certificate and head of the test's choosing. */
function rawInvoke(node: WeftNode, cert: IssuedCert, rootsPem: string, head: Partial<CallHead>, trustDomain = 'public'): Promise<{ res?: InvokeResponse; err?: grpc.ServiceError }> {
  const expect_ = { expectedNodeId: node.nodeId, trustDomain };
  const client = new grpc.Client(`127.0.0.1:${node.ports.peer}`, channelCredentials({ ...expect_, keyPem: cert.keyPem, certPem: cert.chainPem, rootsPem }), peerChannelOptions(expect_));
  const full: CallHead = { appId: 'echo', namespace: 'default', method: 'echo/raw', verb: 'POST', query: '', headers: [], callerAppId: '', callerNamespace: '', ...head };
  return new Promise((resolve) => {
    client.makeUnaryRequest(PeerMethods.invoke, encodeInvokeRequest, decodeInvokeResponse, { head: full, body: Buffer.from('raw') }, new grpc.Metadata(), { deadline: Date.now() + 5000 }, (err, res) => {
      client.close();
      resolve(err === null ? { res } : { err });
    });
  });
}

function headerOf(headers: readonly string[], name: string): string | undefined {
  for (let i = 0; i + 1 < headers.length; i += 2) if (headers[i] === name) return headers[i + 1];
  return undefined;
}

describe('mTLS between nodes', () => {
  const cluster = new Cluster();
  let serving: WeftNode;
  let servingLog: ReturnType<typeof capture>;

  beforeAll(async () => {
    const echo = await cluster.app(echoHandler('b'));
    servingLog = capture();
    serving = await cluster.node({ apps: [{ appId: 'echo', appPort: echo.port }], logger: servingLog.logger });
  });
  afterAll(() => cluster.close());

  for (const workers of [0, 1]) {
    it(`calls go over mTLS and the callee sees the caller from its certificate (${workers === 0 ? 'inline' : 'workers'})`, async () => {
      const caller = await cluster.node({ workers, apps: [{ appId: `front${workers}` }] });
      const meta = (await (await request(url(caller, '/v1.0/metadata'))).body.json()) as { extended: Record<string, unknown> };
      expect(meta.extended['peerTls']).toBe('mtls');
      for (let i = 0; i < 5; i++) {
        const r = await echoCall(caller, `/v1.0/invoke/echo/method/echo/${i}`, { body: `hi${i}`, method: 'POST' });
        expect(r.status).toBe(200);
        expect(r.text).toBe(`hi${i}`);
        const seen = JSON.parse(r.headers['x-echo-headers'] as string) as Record<string, string>;
        expect(seen['dapr-caller-app-id']).toBe(`front${workers}`);
        expect(seen['dapr-caller-namespace']).toBe('default');
      }
      // a body over the Mux limit travels as its own gRPC call, and a large answer is fetched
      const big = Buffer.alloc(200_000, 1);
      const r = await echoCall(caller, '/v1.0/invoke/echo/method/echo/big', { body: big });
      expect(r.status).toBe(200);
      expect(r.text.length).toBe(200_000);
      const large = await echoCall(caller, '/v1.0/invoke/echo/method/bytes/600000', { method: 'GET' });
      expect(large.text.length).toBe(600_000);
      expect(await metric(serving, 'weft_access_control_total', { app_id: 'echo', src_app_id: `front${workers}`, action: 'allow' })).toBe(7);
    });
  }

  it('ignores the caller named in the request head: only the certificate counts', async () => {
    const ca = loadCa(cluster.caDir);
    const front = issueWorkloadCert(ca, { appId: 'front', namespace: 'default' });
    const { res, err } = await rawInvoke(serving, front, ca.trustBundlePem, { callerAppId: 'admin', callerNamespace: 'kube-system', headers: ['dapr-caller-app-id', 'root'] });
    expect(err).toBeUndefined();
    const seen = JSON.parse(headerOf(res?.headers ?? [], 'x-echo-headers') ?? '{}') as Record<string, string>;
    expect(seen['dapr-caller-app-id']).toBe('front');
    expect(seen['dapr-caller-namespace']).toBe('default');

    // A node's own certificate is not an app's: the callee cannot say which app calls.
    const nodeCert = issueNodeCert(ca, { nodeId: 'sneaky' });
    const r2 = await rawInvoke(serving, nodeCert, ca.trustBundlePem, { callerAppId: 'front', callerNamespace: 'default' });
    expect(r2.err?.code).toBe(grpc.status.UNAUTHENTICATED);
    expect(r2.err?.metadata.get(ERROR_CODE_KEY)[0]).toBe('WEFT_PEER_UNAUTHENTICATED');
    expect(r2.err?.details).toContain('is a node identity');

    // A certificate from the right CA for another trust domain is refused too.
    const foreignTd = issueWorkloadCert(ca, { appId: 'front', namespace: 'default', trustDomain: 'evil.example' });
    const r3 = await rawInvoke(serving, foreignTd, ca.trustBundlePem, {});
    expect(r3.err?.metadata.get(ERROR_CODE_KEY)[0]).toBe('WEFT_PEER_UNAUTHENTICATED');
    expect(r3.err?.details).toContain('trust domain evil.example is not trusted here');
    expect(await metric(serving, 'weft_access_control_total', { app_id: 'echo', src_app_id: 'unknown', action: 'deny' })).toBeGreaterThanOrEqual(1);
    expect(servingLog.lines.some((l) => l['msg'] === 'peer call refused' && String(l['reason']).includes('evil.example'))).toBe(true);
  });

  it('a node whose certificates come from another CA can neither call nor be called', async () => {
    const otherDir = mkdtempSync(join(tmpdir(), 'weft-other-ca-'));
    try {
      initCa(otherDir, { trustDomain: 'public' });
      const rogueApp = await cluster.app(echoHandler('rogue'));
      const rogueLog = capture();
      const rogue = await cluster.node({ apps: [{ appId: 'rogue', appPort: rogueApp.port }, { appId: 'rfront', httpPort: 0 }], security: { caDir: otherDir }, logger: rogueLog.logger });
      const caller = await cluster.node({ apps: [{ appId: 'front' }] });

      // rogue → echo: the serving node does not trust rogue's client certificate
      const out = await errorOf(await request(`http://127.0.0.1:${rogue.ports.apps['rfront']}/v1.0/invoke/echo/method/echo/x`, { method: 'POST', body: 'x' }));
      expect(out).toMatchObject({ status: 500, errorCode: 'ERR_DIRECT_INVOKE', weftCode: 'WEFT_PEER_UNAVAILABLE' });
      expect(out.message).toMatch(/^failed to invoke, id: echo, err: node \S+ at 127\.0\.0\.1:\d+ is unreachable/);
      // front → rogue: the caller does not trust rogue's server certificate
      const into = await errorOf(await request(url(caller, '/v1.0/invoke/rogue/method/echo/x'), { method: 'POST', body: 'x' }));
      expect(into).toMatchObject({ status: 500, weftCode: 'WEFT_PEER_UNAVAILABLE' });
      // (a node may call its own app at start, e.g. GET /dapr/config: only the invocation counts)
      expect(rogueApp.seen.filter((r) => r.url.startsWith('/echo/'))).toHaveLength(0);
      // both refusals were logged by the node that saw the handshake fail
      expect(servingLog.lines.some((l) => l['msg'] === 'TLS handshake from a peer failed (a certificate this node does not trust, or none)')).toBe(true);
      expect(rogueLog.lines.some((l) => l['msg'] === 'TLS handshake from a peer failed (a certificate this node does not trust, or none)')).toBe(true);
      // and the serving node still serves good callers
      expect((await echoCall(caller, '/v1.0/invoke/echo/method/echo/ok', { body: 'ok' })).status).toBe(200);
      await rogue.stop();
    } finally {
      rmSync(otherDir, { recursive: true, force: true });
    }
  });

  it('a node of another trust domain is refused, with a log line naming the certificate it showed', async () => {
    const app = await cluster.app(echoHandler('evil'));
    const evil = await cluster.node({ apps: [{ appId: 'evil', appPort: app.port }, { appId: 'efront', httpPort: 0 }], security: { trustDomain: 'evil.example' } });
    const callerLog = capture();
    const caller = await cluster.node({ apps: [{ appId: 'front' }], logger: callerLog.logger });
    // front → evil: the server's certificate names spiffe://evil.example/node/..., not public
    const into = await errorOf(await request(url(caller, '/v1.0/invoke/evil/method/echo/x'), { method: 'POST', body: 'x' }));
    expect(into.weftCode).toBe('WEFT_PEER_UNAVAILABLE');
    expect(into.message).toContain(`expected spiffe://public/node/${evil.nodeId}`);
    expect(callerLog.lines.some((l) => l['msg'] === 'refused a peer node\'s certificate' && String(l['err']).includes(`spiffe://evil.example/node/${evil.nodeId}`))).toBe(true);
    // evil → echo: evil expects spiffe://evil.example/node/<serving>, and would be refused anyway
    const out = await errorOf(await request(`http://127.0.0.1:${evil.ports.apps['efront']}/v1.0/invoke/echo/method/echo/x`, { method: 'POST', body: 'x' }));
    expect(out.weftCode).toBe('WEFT_PEER_UNAVAILABLE');
    expect(app.seen.filter((r) => r.url.startsWith('/echo/'))).toHaveLength(0);
    await evil.stop();
  });

  it('plaintext needs the explicit setting (config error otherwise) and is logged loudly; a plaintext node cannot call a TLS node', async () => {
    const instances = [{ appId: 'echo', address: '127.0.0.1', port: serving.ports.peer, nodeId: serving.nodeId }];
    const base = { http: { port: 0 }, grpc: { port: 0 }, peer: { port: 0 }, metrics: { enabled: false }, apps: [{ appId: 'front' }], resolver: { type: 'static', static: { instances } } };
    expect(() => validateConfig(base, {})).toThrow(/^security\.caDir: is required with the static resolver/);
    expect(() => validateConfig({ ...base, security: { plaintext: true, caDir: cluster.caDir } }, {})).toThrow(/^security\.plaintext: cannot be true while security\.caDir is set/);
    expect(validateConfig(base, { WEFT_CA_DIR: cluster.caDir }).security.caDir).toBe(cluster.caDir);

    const log = capture();
    const plain = await cluster.node({ apps: [{ appId: 'front' }], resolver: { type: 'static', static: { instances } }, plaintext: true, logger: log.logger });
    const warn = log.lines.find((l) => String(l['msg']).startsWith('PLAINTEXT BETWEEN NODES'));
    expect(warn?.['level']).toBe(40);
    const e = await errorOf(await request(url(plain, '/v1.0/invoke/echo/method/echo/x'), { method: 'POST', body: 'x' }));
    expect(e).toMatchObject({ status: 500, weftCode: 'WEFT_PEER_UNAVAILABLE' });
  });

  it('static resolver with the CA: nodes must be named as their certificates name them', async () => {
    const good = [{ appId: 'echo', address: '127.0.0.1', port: serving.ports.peer, nodeId: serving.nodeId }];
    const a = await cluster.node({ apps: [{ appId: 'front' }], resolver: { type: 'static', static: { instances: good } } });
    expect((await echoCall(a, '/v1.0/invoke/echo/method/echo/s', { body: 's' })).status).toBe(200);
    const wrong = [{ appId: 'echo', address: '127.0.0.1', port: serving.ports.peer, nodeId: 'someone-else' }];
    const b = await cluster.node({ apps: [{ appId: 'front' }], resolver: { type: 'static', static: { instances: wrong } } });
    const e = await errorOf(await request(url(b, '/v1.0/invoke/echo/method/echo/s'), { method: 'POST', body: 's' }));
    expect(e.message).toContain('expected spiffe://public/node/someone-else');
  });
});

describe('access control end to end', () => {
  const cluster = new Cluster();
  let target: WeftNode;
  let caller: WeftNode;

  beforeAll(async () => {
    const file = join(cluster.dir, 'node-policy.yaml');
    // The node's policy (for apps without their own): everyone but ops.
    writeFileSync(file, [
      'apiVersion: dapr.io/v1alpha1',
      'kind: Configuration',
      'metadata: { name: node-policy }',
      'spec:',
      '  accessControl:',
      '    defaultAction: allow',
      '    policies:',
      '      - { appId: ops, namespace: default, defaultAction: deny }',
      '',
    ].join('\n'));
    const orders = await cluster.app(echoHandler('orders'));
    const echo = await cluster.app(echoHandler('echo'));
    target = await cluster.node({
      apps: [
        {
          appId: 'orders', appPort: orders.port,
          accessControl: {
            defaultAction: 'deny',
            trustDomain: 'public',
            policies: [
              {
                appId: 'front', namespace: 'default', defaultAction: 'deny',
                operations: [
                  { name: '/orders/*', httpVerb: ['GET'], action: 'allow' },
                  { name: '/orders/**', httpVerb: ['POST'], action: 'allow' },
                  { name: '/orders/*/admin', httpVerb: ['*'], action: 'deny' },
                ],
              },
              { appId: 'ops', namespace: 'default', defaultAction: 'allow' },
              { appId: 'stranger', namespace: 'default', defaultAction: 'allow' },
            ],
          },
        } as never,
        { appId: 'echo', appPort: echo.port },
      ],
      security: { accessControl: file },
    });
    caller = await cluster.node({
      workers: 1,
      apps: [{ appId: 'front' }, { appId: 'ops', httpPort: 0 }, { appId: 'stranger', namespace: 'other', httpPort: 0 }],
    });
  });
  afterAll(() => cluster.close());

  const cases: Array<{ from: string; verb: string; path: string; allowed: boolean; where?: string }> = [
    { from: 'front', verb: 'GET', path: 'orders/1', allowed: true },
    { from: 'front', verb: 'DELETE', path: 'orders/1', allowed: false, where: 'policies[0].defaultAction' },
    { from: 'front', verb: 'POST', path: 'orders/1/items/2', allowed: true },
    { from: 'front', verb: 'POST', path: 'orders', allowed: true },
    { from: 'front', verb: 'GET', path: 'orders/1/admin', allowed: false, where: 'policies[0].operations[2]' },
    // both /orders/** [POST] and /orders/*/admin match: the one without ** wins
    { from: 'front', verb: 'POST', path: 'orders/1/admin', allowed: false, where: 'policies[0].operations[2]' },
    { from: 'front', verb: 'GET', path: 'ORDERS/7', allowed: true },
    { from: 'front', verb: 'GET', path: 'orders/1/2', allowed: false, where: 'policies[0].defaultAction' },
    { from: 'ops', verb: 'PUT', path: 'anything/at/all', allowed: true },
    // the policy names stranger in namespace default; this stranger lives in namespace other
    { from: 'stranger', verb: 'GET', path: 'orders/1', allowed: false, where: 'no policy for spiffe://public/ns/other/stranger; global defaultAction is deny' },
  ];

  it('allows and denies by app, namespace, path pattern and verb; a denial is 403 naming the policy', async () => {
    const port = (app: string): number => (app === 'front' ? caller.ports.http : caller.ports.apps[app] as number);
    for (const c of cases) {
      const res = await request(`http://127.0.0.1:${port(c.from)}/v1.0/invoke/orders.default/method/${c.path}`, { method: c.verb as 'GET', body: c.verb === 'GET' ? null : 'b' });
      if (c.allowed) {
        expect(res.statusCode, `${c.from} ${c.verb} ${c.path}`).toBe(200);
        await res.body.dump();
        continue;
      }
      const e = await errorOf(res);
      expect(e, `${c.from} ${c.verb} ${c.path}`).toMatchObject({ status: 403, errorCode: 'ERR_DIRECT_INVOKE', weftCode: 'WEFT_ACCESS_DENIED' });
      expect(e.message).toContain('failed to invoke, id: orders, err: access control policy denied the call: ');
      expect(e.message).toContain(c.where as string);
    }
    const allow = (src: string): Promise<number> => metric(target, 'weft_access_control_total', { app_id: 'orders', src_app_id: src, action: 'allow' });
    const deny = (src: string): Promise<number> => metric(target, 'weft_access_control_total', { app_id: 'orders', src_app_id: src, action: 'deny' });
    expect(await allow('front')).toBe(4);
    expect(await deny('front')).toBe(4);
    expect(await allow('ops')).toBe(1);
    expect(await metric(target, 'weft_access_control_total', { app_id: 'orders', src_app_id: 'stranger', src_namespace: 'other', action: 'deny' })).toBe(1);
  });

  it('an app without a policy of its own gets the node\'s (from a Configuration file)', async () => {
    expect((await request(`http://127.0.0.1:${caller.ports.http}/v1.0/invoke/echo/method/x`, { method: 'POST', body: 'b' })).statusCode).toBe(200);
    const e = await errorOf(await request(`http://127.0.0.1:${caller.ports.apps['ops']}/v1.0/invoke/echo/method/x`, { method: 'POST', body: 'b' }));
    expect(e).toMatchObject({ status: 403, weftCode: 'WEFT_ACCESS_DENIED' });
    expect(e.message).toContain('policies[0].defaultAction is deny for spiffe://public/ns/default/ops');
  });
});

describe('certificate rotation under load', () => {
  const cluster = new Cluster();
  afterAll(() => cluster.close());

  // Certificates of 40 s renewed every 2 s (renewFraction 0.05): 38 s to spare at each renewal.
  // With 3 s ones renewed at half life (1.5 s to spare, less once X.509 drops the milliseconds)
  // this test failed on a loaded host: the process stalled past a certificate's end before its
  // successor was signed (seen at load 25 to 30: stalls of 5 s). Production certificates live
  // 24 h with 12 h to spare; what is tested here is that a renewal itself fails no call.
  it('renews node and app certificates twice while calls run beside a CPU burner: zero failures', async () => {
    const ttls = { workloadTtl: '40s', nodeTtl: '40s', renewFraction: 0.05 };
    // Registrations that outlive the burner's stalls: membership is not what is tested here.
    const resolver = { type: 'local', local: { path: cluster.registry, ttl: '30s', refresh: '100ms' } };
    const echo = await cluster.app(echoHandler('b'));
    const serving = await cluster.node({ apps: [{ appId: 'echo', appPort: echo.port }], security: ttls, resolver });
    const viaWorkers = await cluster.node({ workers: 1, apps: [{ appId: 'front' }], security: ttls, resolver });
    const inline = await cluster.node({ workers: 0, apps: [{ appId: 'front2' }], security: ttls, resolver });
    const renewals = async (): Promise<number[]> => [
      await metric(serving, 'weft_identity_certificates_total', { kind: 'node', result: 'renewed' }),
      await metric(viaWorkers, 'weft_identity_certificates_total', { kind: 'workload', result: 'renewed' }),
      await metric(inline, 'weft_identity_certificates_total', { kind: 'workload', result: 'renewed' }),
    ];
    const before = await renewals();
    let renewedTwice = false;
    const failures: string[] = [];
    let done = 0;
    const big = Buffer.alloc(100_000, 2);
    // Calls run until every node renewed twice during the run, bounded in count and time. 45 s: on a
    // loaded CI machine four lanes of 25 calls (a fifth of them 100–300 KB) took more than 20 s.
    const until = Date.now() + 45_000;
    const more = (i: number): boolean => i < 200 && Date.now() < until && (i < 25 || !renewedTwice);
    const lane = async (node: WeftNode, lane: number): Promise<void> => {
      for (let i = 0; more(i); i++) {
        const kind = i % 10;
        try {
          if (kind === 3) {
            const r = await echoCall(node, '/v1.0/invoke/echo/method/echo/big', { body: big });
            if (r.status !== 200 || r.text.length !== big.length) failures.push(`big ${r.status} ${r.text.slice(0, 200)}`);
          } else if (kind === 7) {
            const r = await echoCall(node, '/v1.0/invoke/echo/method/bytes/300000', { method: 'GET' });
            if (r.status !== 200 || r.text.length !== 300_000) failures.push(`large ${r.status} ${r.text.slice(0, 200)}`);
          } else {
            const r = await echoCall(node, `/v1.0/invoke/echo/method/echo/${lane}/${i}`, { body: `${lane}-${i}` });
            if (r.status !== 200 || r.text !== `${lane}-${i}`) failures.push(`small ${r.status} ${r.text.slice(0, 200)}`);
          }
        } catch (err) {
          failures.push(String(err));
        }
        done++;
        await new Promise((r) => setTimeout(r, 45));
      }
    };
    const watch = async (): Promise<void> => {
      while (!renewedTwice && Date.now() < until) {
        await new Promise((r) => setTimeout(r, 250));
        const now = await renewals();
        renewedTwice = now.every((n, i) => n - (before[i] ?? 0) >= 2);
      }
    };
    // Small enough for CI: one spinning process at most 10 s (the other test files run beside it).
    const burner = startBurner({ maxMs: 10_000 });
    try {
      await Promise.all([watch(), lane(viaWorkers, 0), lane(viaWorkers, 1), lane(inline, 2), lane(inline, 3)]);
    } finally {
      await burner.stop();
    }
    expect(failures).toEqual([]);
    expect(done).toBeGreaterThanOrEqual(100);
    expect(renewedTwice).toBe(true); // every node renewed twice while calls ran
    await new Promise((r) => setTimeout(r, 1200)); // worker counters arrive once a second
    for (const n of [viaWorkers, inline]) {
      // each renewal opened fresh channels presenting the new certificate
      expect(await metric(n, 'weft_peer_channels_opened_total', {})).toBeGreaterThanOrEqual(3);
    }
  }, 180_000);
});
