/**
 * The Consul test server itself: blocking queries, TTL lapse, the reaper, ACL refusals and
 * re-registration, checked over plain HTTP as Consul documents them.
 */
import { request as httpRequest, type IncomingHttpHeaders } from 'node:http';
import { afterEach, describe, expect, it } from 'vitest';
import { FakeConsul } from '../support/consul-server.ts';

const servers: FakeConsul[] = [];
afterEach(async () => {
  await Promise.all(servers.splice(0).map((s) => s.stop()));
});

async function fake(opts: ConstructorParameters<typeof FakeConsul>[0] = {}): Promise<FakeConsul> {
  const s = new FakeConsul(opts);
  servers.push(s);
  await s.start();
  return s;
}

/** One request on a fresh connection (a pooled one may be a socket the server closed on restart). */
function call(s: FakeConsul, method: string, path: string, body?: unknown, headers: Record<string, string> = {}): Promise<{ status: number; headers: IncomingHttpHeaders; text: string; json: () => unknown }> {
  return new Promise((resolve, reject) => {
    const payload = body === undefined ? undefined : JSON.stringify(body);
    const req = httpRequest({ host: '127.0.0.1', port: s.port, method, path, agent: false, headers: { ...(payload !== undefined ? { 'content-type': 'application/json' } : {}), ...headers } }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        resolve({ status: res.statusCode ?? 0, headers: res.headers, text, json: () => JSON.parse(text) });
      });
    });
    req.on('error', reject);
    req.end(payload);
  });
}

const header = (h: IncomingHttpHeaders, name: string): string | undefined => {
  const v = h[name];
  return Array.isArray(v) ? v[0] : v;
};

const service = (id: string, extra: Record<string, unknown> = {}): Record<string, unknown> => ({
  Name: 'echo', ID: id, Address: '10.0.0.1', Port: 50002, Meta: { weft_namespace: 'default' },
  Check: { CheckID: `service:${id}`, TTL: '10s', Status: 'passing', DeregisterCriticalServiceAfter: '200ms' },
  ...extra,
});

describe('fake consul', () => {
  it('registers, lists passing instances and answers with the query meta headers', async () => {
    const s = await fake();
    expect((await call(s, 'PUT', '/v1/agent/service/register', service('a'))).status).toBe(200);
    const res = await call(s, 'GET', '/v1/health/service/echo?passing=true');
    expect(res.status).toBe(200);
    expect(Number(header(res.headers, 'x-consul-index'))).toBeGreaterThanOrEqual(1);
    expect(header(res.headers, 'x-consul-knownleader')).toBe('true');
    expect(header(res.headers, 'x-consul-lastcontact')).toBe('0');
    const list = res.json() as Array<{ Service: { ID: string; Port: number }; Checks: Array<{ CheckID: string }> }>;
    expect(list.map((e) => e.Service.ID)).toEqual(['a']);
    expect(list[0]?.Checks.map((c) => c.CheckID)).toEqual(['serfHealth', 'service:a']);
    // wrong verb, unknown route
    expect((await call(s, 'GET', '/v1/agent/service/register')).status).toBe(405);
    expect((await call(s, 'GET', '/v1/nope')).status).toBe(404);
  });

  it('holds a blocking query until the index moves past the one asked, or the wait lapses', async () => {
    const s = await fake();
    await call(s, 'PUT', '/v1/agent/service/register', service('a'));
    const first = await call(s, 'GET', '/v1/health/service/echo');
    const index = Number(header(first.headers, 'x-consul-index'));

    // nothing changes: returns after the wait (plus at most wait/16), same index
    let t0 = Date.now();
    const lapsed = await call(s, 'GET', `/v1/health/service/echo?index=${index}&wait=300ms`);
    const waited = Date.now() - t0;
    expect(waited).toBeGreaterThanOrEqual(280);
    expect(waited).toBeLessThan(1500);
    expect(Number(header(lapsed.headers, 'x-consul-index'))).toBe(index);

    // a change to another service does not wake it; a change to this one does
    t0 = Date.now();
    const pending = call(s, 'GET', `/v1/health/service/echo?index=${index}&wait=5s`);
    await new Promise((r) => setTimeout(r, 100));
    await call(s, 'PUT', '/v1/agent/service/register', { Name: 'other', ID: 'o', Port: 1 });
    await new Promise((r) => setTimeout(r, 100));
    await call(s, 'PUT', '/v1/agent/service/register', service('b'));
    const woke = await pending;
    expect(Date.now() - t0).toBeLessThan(2000);
    expect(Number(header(woke.headers, 'x-consul-index'))).toBeGreaterThan(index);
    expect((woke.json() as unknown[]).length).toBe(2);

    // an index from the future (e.g. before an agent restart) blocks until the wait lapses
    t0 = Date.now();
    await call(s, 'GET', `/v1/health/service/echo?index=999999&wait=200ms`);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(180);
  });

  it('does not move the index when a TTL pass changes nothing; turns the check critical when the TTL lapses', async () => {
    const s = await fake();
    await call(s, 'PUT', '/v1/agent/service/register', service('a', { Check: { CheckID: 'service:a', TTL: '200ms', Status: 'passing' } }));
    const idx = header((await call(s, 'GET', '/v1/health/service/echo')).headers, 'x-consul-index');
    expect((await call(s, 'PUT', '/v1/agent/check/pass/service:a')).status).toBe(200);
    expect(header((await call(s, 'GET', '/v1/health/service/echo')).headers, 'x-consul-index')).toBe(idx);

    await new Promise((r) => setTimeout(r, 350));
    const [entry] = s.catalog();
    expect(entry?.Checks[0]?.Status).toBe('critical');
    expect(entry?.Checks[0]?.Output).toMatch(/TTL expired/);
    expect(await call(s, 'GET', '/v1/health/service/echo?passing=true').then((r) => r.json())).toEqual([]);
    expect((await call(s, 'GET', '/v1/health/service/echo').then((r) => r.json()) as unknown[]).length).toBe(1);

    // pass brings it back; warn/fail/update set what they say
    await call(s, 'PUT', '/v1/agent/check/pass/service:a?note=ok');
    expect(s.catalog()[0]?.Checks[0]).toMatchObject({ Status: 'passing', Output: 'ok' });
    await call(s, 'PUT', '/v1/agent/check/warn/service:a');
    expect(s.catalog()[0]?.Checks[0]?.Status).toBe('warning');
    await call(s, 'PUT', '/v1/agent/check/update/service:a', { Status: 'passing', Output: 'fine' });
    expect(s.catalog()[0]?.Checks[0]).toMatchObject({ Status: 'passing', Output: 'fine' });
    expect((await call(s, 'PUT', '/v1/agent/check/pass/service:nope')).status).toBe(404);
  });

  it('a TTL check registered without Status starts critical', async () => {
    const s = await fake();
    await call(s, 'PUT', '/v1/agent/service/register', service('a', { Check: { TTL: '10s' } }));
    expect(s.catalog()[0]?.Checks).toEqual([{ CheckID: 'service:a', Status: 'critical', Output: '' }]);
  });

  it('a re-registered check keeps its status: a lapsed one stays critical until it is passed (as a real agent)', async () => {
    const s = await fake();
    await call(s, 'PUT', '/v1/agent/service/register', service('a'));
    s.setCheckStatus('service:a', 'critical');
    // The same registration again, asking for passing: the agent keeps what the check had.
    await call(s, 'PUT', '/v1/agent/service/register', service('a'));
    expect(s.catalog()[0]?.Checks[0]?.Status).toBe('critical');
    expect(JSON.parse((await call(s, 'GET', '/v1/health/service/echo?passing=true')).text)).toEqual([]);
    await call(s, 'PUT', '/v1/agent/check/pass/service:a');
    expect(s.catalog()[0]?.Checks[0]?.Status).toBe('passing');
  });

  it('reaps a service critical for longer than DeregisterCriticalServiceAfter, never sooner than the floor', async () => {
    const s = await fake({ reapInterval: 50, deregisterMin: 400 });
    await call(s, 'PUT', '/v1/agent/service/register', service('a'));
    s.setCheckStatus('service:a', 'critical');
    await new Promise((r) => setTimeout(r, 250));
    expect(s.catalog().length).toBe(1); // 200ms asked, but the floor is 400ms
    await new Promise((r) => setTimeout(r, 400));
    expect(s.catalog().length).toBe(0);
  });

  it('re-registering the same ID replaces it; replace-existing-checks drops checks not given', async () => {
    const s = await fake();
    await call(s, 'PUT', '/v1/agent/service/register', service('a', { Checks: [{ CheckID: 'x', TTL: '10s', Status: 'passing' }, { CheckID: 'y', TTL: '10s', Status: 'passing' }], Check: undefined }));
    await call(s, 'PUT', '/v1/agent/service/register', service('a', { Port: 50003, Checks: [{ CheckID: 'x', TTL: '10s', Status: 'passing' }], Check: undefined }));
    expect(s.catalog().map((e) => [e.ID, e.Port, e.Checks.map((c) => c.CheckID)])).toEqual([['a', 50003, ['x', 'y']]]);
    await call(s, 'PUT', '/v1/agent/service/register?replace-existing-checks=true', service('a', { Checks: [{ CheckID: 'x', TTL: '10s', Status: 'passing' }], Check: undefined }));
    expect(s.catalog().map((e) => e.Checks.map((c) => c.CheckID))).toEqual([['x']]);
    expect((await call(s, 'PUT', '/v1/agent/service/deregister/a')).status).toBe(200);
    expect((await call(s, 'PUT', '/v1/agent/service/deregister/a')).status).toBe(404);
    expect(s.catalog()).toEqual([]);
  });

  it('filters with a subset of Consul\'s filter language', async () => {
    const s = await fake();
    await call(s, 'PUT', '/v1/agent/service/register', service('a'));
    await call(s, 'PUT', '/v1/agent/service/register', service('b', { Meta: { weft_namespace: 'prod' } }));
    const q = (f: string): Promise<string[]> => call(s, 'GET', `/v1/health/service/echo?filter=${encodeURIComponent(f)}`)
      .then((r) => (r.json() as Array<{ Service: { ID: string } }>).map((e) => e.Service.ID));
    expect(await q('Service.Meta.weft_namespace == "prod"')).toEqual(['b']);
    expect(await q('Service.Meta.weft_namespace != "prod"')).toEqual(['a']);
    expect(await q('Service.ID == "a" or (Service.Port == 50002 and not Service.Meta.weft_namespace == "default")')).toEqual(['a', 'b']);
    expect((await call(s, 'GET', `/v1/health/service/echo?filter=${encodeURIComponent('Bogus.X == "1"')}`)).status).toBe(400);
  });

  it('with ACLs: unknown token 403 "ACL not found"; anonymous refused writes and sees nothing; the token works in every form', async () => {
    const s = await fake({ token: 'secret' });
    const wrong = await call(s, 'PUT', '/v1/agent/service/register', service('a'), { 'X-Consul-Token': 'nope' });
    expect(wrong.status).toBe(403);
    expect(wrong.text).toBe('ACL not found');
    expect((await call(s, 'GET', '/v1/health/service/echo', undefined, { 'X-Consul-Token': 'nope' })).status).toBe(403);
    const anon = await call(s, 'PUT', '/v1/agent/service/register', service('a'));
    expect(anon.status).toBe(403);
    expect(anon.text).toMatch(/^Permission denied/);

    expect((await call(s, 'PUT', '/v1/agent/service/register', service('a'), { 'X-Consul-Token': 'secret' })).status).toBe(200);
    expect((await call(s, 'PUT', '/v1/agent/check/pass/service:a', undefined, { Authorization: 'Bearer secret' })).status).toBe(200);
    expect((await call(s, 'GET', '/v1/health/service/echo?token=secret').then((r) => r.json()) as unknown[]).length).toBe(1);
    const hidden = await call(s, 'GET', '/v1/health/service/echo');
    expect(hidden.status).toBe(200);
    expect(hidden.json()).toEqual([]);
    expect(header(hidden.headers, 'x-consul-results-filtered-by-acls')).toBe('true');
    expect((await call(s, 'GET', '/v1/status/leader')).status).toBe(200);
  });

  it('restarts on the same port; without keepState it forgets everything and the index starts over', async () => {
    const s = await fake();
    await call(s, 'PUT', '/v1/agent/service/register', service('a'));
    await call(s, 'PUT', '/v1/agent/service/register', service('b'));
    const port = s.port;
    const before = Number(header((await call(s, 'GET', '/v1/health/service/echo')).headers, 'x-consul-index'));
    await s.restart({ keepState: true });
    expect(s.port).toBe(port);
    expect(s.catalog().length).toBe(2);
    await s.restart();
    expect(s.port).toBe(port);
    expect(s.catalog()).toEqual([]);
    expect(Number(header((await call(s, 'GET', '/v1/health/service/echo')).headers, 'x-consul-index'))).toBeLessThan(before);
    expect((await call(s, 'PUT', '/v1/agent/check/pass/service:a')).status).toBe(404);
  });

  it('refuses namespaces unless it plays Consul Enterprise', async () => {
    const oss = await fake();
    expect((await call(oss, 'GET', '/v1/health/service/echo', undefined, { 'X-Consul-Namespace': 'team' })).status).toBe(400);
    const ent = await fake({ enterprise: true });
    await call(ent, 'PUT', '/v1/agent/service/register', service('a'), { 'X-Consul-Namespace': 'team' });
    expect((await call(ent, 'GET', '/v1/health/service/echo?ns=team').then((r) => r.json()) as unknown[]).length).toBe(1);
    expect(await call(ent, 'GET', '/v1/health/service/echo').then((r) => r.json())).toEqual([]);
  });
});
