/**
 * The `weft` CLI as a user runs it: real processes, stopped by the test.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createServer as createHttpServer } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { request } from 'undici';
import { freePort } from '../support/ports.ts';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const WEFT = join(ROOT, 'bin', 'weft.js');
const dir = mkdtempSync(join(tmpdir(), 'weft-cli-'));
const registry = join(dir, 'registry.sqlite');
const running: ChildProcess[] = [];

interface Ready { event: string; nodeId: string; http: number; grpc: number; peer: number; metrics: number; build: string }

/** `npm run build` compiled src/ after its last change (npm test builds first): bin/weft.js then runs dist/. */
function compiledIsCurrent(): boolean {
  const newest = (d: string): number => Math.max(0, ...readdirSync(d, { withFileTypes: true }).map((e) => (e.isDirectory() ? newest(join(d, e.name)) : e.name.endsWith('.ts') ? statSync(join(d, e.name)).mtimeMs : 0)));
  try {
    return statSync(join(ROOT, 'dist', '.built')).mtimeMs >= Math.max(newest(join(ROOT, 'src')), newest(join(ROOT, 'workers')));
  } catch {
    return false;
  }
}

function weft(args: string[], env: Record<string, string> = {}): ChildProcess {
  const child = spawn(process.execPath, [WEFT, ...args], { cwd: ROOT, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  running.push(child);
  return child;
}

/** Runs a command to its end: exit code, stdout, stderr. */
function run(args: string[], env: Record<string, string> = {}): Promise<{ code: number | null; out: string; err: string }> {
  const child = weft(args, env);
  let out = '';
  let err = '';
  child.stdout?.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr?.on('data', (d: Buffer) => (err += d.toString()));
  return new Promise((resolve) => child.on('exit', (code) => resolve({ code, out, err })));
}

function ready(child: ChildProcess): Promise<Ready> {
  return new Promise((resolve, reject) => {
    let buf = '';
    child.stdout?.on('data', (d: Buffer) => {
      buf += d.toString();
      for (const line of buf.split('\n')) {
        if (line.startsWith('{') && line.includes('"event":"ready"')) resolve(JSON.parse(line) as Ready);
      }
    });
    child.on('exit', (code) => reject(new Error(`weft exited with ${code} before it was ready`)));
  });
}

function exited(child: ChildProcess): Promise<number | null> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve(child.exitCode);
  return new Promise((resolve) => child.once('exit', (code) => resolve(code)));
}


async function portOpen(port: number): Promise<boolean> {
  const net = await import('node:net');
  return new Promise((resolve) => {
    const sock = net.connect(port, '127.0.0.1');
    sock.once('connect', () => {
      sock.destroy();
      resolve(true);
    });
    sock.once('error', () => resolve(false));
  });
}

afterEach(async () => {
  for (const c of running.splice(0)) {
    if (c.exitCode === null && c.signalCode === null) {
      c.kill('SIGKILL');
      await exited(c);
    }
  }
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const ports = ['--http-port', '0', '--grpc-port', '0', '--peer-port', '0', '--metrics-port', '0'];

describe('weft run', () => {
  it('starts the app with its ports, serves calls between two nodes, and SIGTERM stops node and app', async () => {
    const appPort = await freePort();
    const b = weft(['run', '--app-id', 'echo', '--app-port', String(appPort), ...ports, '--registry', registry, '--json', '--', process.execPath, 'examples/echo-app.ts']);
    const a = weft(['run', '--app-id', 'front', ...ports, '--registry', registry, '--workers', '1', '--json']);
    const [rb, ra] = await Promise.all([ready(b), ready(a)]);
    expect(rb).toMatchObject({ event: 'ready', http: expect.any(Number), peer: expect.any(Number) });
    // Both run the compiled tree when it is current (the worker pool's entry found in dist/ too).
    expect([rb.build, ra.build]).toEqual(compiledIsCurrent() ? ['compiled', 'compiled'] : ['source', 'source']);
    // the app started by weft comes up on APP_PORT
    for (let i = 0; i < 50 && !(await portOpen(appPort)); i++) await new Promise((r) => setTimeout(r, 100));
    const res = await request(`http://127.0.0.1:${ra.http}/v1.0/invoke/echo/method/echo/cli?z=9`, { method: 'POST', body: 'via cli' });
    expect(res.statusCode).toBe(200);
    expect(await res.body.text()).toBe('via cli');
    expect(res.headers['x-echo-caller']).toBe('front');
    expect(res.headers['x-echo-query']).toBe('z=9');

    b.kill('SIGTERM');
    b.kill('SIGTERM'); // a second signal (as from a process group) must not cut the stop short
    expect(await exited(b)).toBe(0);
    expect(await portOpen(appPort)).toBe(false);
    a.kill('SIGTERM');
    expect(await exited(a)).toBe(0);
  });

  // Reads /proc (Linux only) to see the flags the node runs with.
  it.skipIf(process.platform !== 'linux')('runs the TypeScript sources when asked (WEFT_FROM_SOURCE=1), and such a node calls a compiled one; a serving node gets a small young generation unless NODE_OPTIONS chose one', async () => {
    const appPort = await freePort();
    const b = weft(['run', '--app-id', 'echo2', '--app-port', String(appPort), ...ports, '--registry', registry, '--json', '--', process.execPath, 'examples/echo-app.ts']);
    const a = weft(['run', '--app-id', 'front2', ...ports, '--registry', registry, '--workers', '1', '--json'], { WEFT_FROM_SOURCE: '1', NODE_OPTIONS: '--max-semi-space-size=8' });
    const [rb, ra] = await Promise.all([ready(b), ready(a)]);
    expect(ra.build).toBe('source');
    // A serving node runs with weft's young generation (the same process, restarted with the
    // flag), unless the user chose one.
    const cmdline = (pid: number | undefined): string[] => readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
    expect(cmdline(b.pid)).toContain('--max-semi-space-size=4');
    expect(cmdline(a.pid)).not.toContain('--max-semi-space-size=4');
    expect(rb.build).toBe(compiledIsCurrent() ? 'compiled' : 'source');
    for (let i = 0; i < 50 && !(await portOpen(appPort)); i++) await new Promise((r) => setTimeout(r, 100));
    const res = await request(`http://127.0.0.1:${ra.http}/v1.0/invoke/echo2/method/echo/x`, { method: 'POST', body: 'mixed' });
    expect(res.statusCode).toBe(200);
    expect(await res.body.text()).toBe('mixed');
    a.kill('SIGTERM');
    b.kill('SIGTERM');
    expect(await exited(a)).toBe(0);
    expect(await exited(b)).toBe(0);
  });

  it('stops when the app command exits, with its exit code', async () => {
    const node = weft(['run', '--app-id', 'short', ...ports, '--registry', registry, '--json', '--', process.execPath, '-e', 'setTimeout(() => process.exit(3), 300)']);
    await ready(node);
    expect(await exited(node)).toBe(3);
  });

  it('hands DAPR_HTTP_PORT, DAPR_GRPC_PORT (the bound ports), APP_ID and APP_PROTOCOL to the app command', async () => {
    const out = join(dir, 'env.json');
    const script = `require('fs').writeFileSync(${JSON.stringify(out)}, JSON.stringify({p: process.env.DAPR_HTTP_PORT, id: process.env.APP_ID, g: process.env.DAPR_GRPC_PORT, proto: process.env.APP_PROTOCOL}))`;
    const node = weft(['run', '--app-id', 'envapp', '--app-protocol', 'grpc', ...ports, '--registry', registry, '--json', '--', process.execPath, '-e', script]);
    const r = await ready(node);
    expect(await exited(node)).toBe(0);
    const { readFileSync } = await import('node:fs');
    const env = JSON.parse(readFileSync(out, 'utf8')) as { p: string; id: string; g: string; proto: string };
    expect(r.grpc).toBeGreaterThan(0);
    expect(env).toEqual({ p: String(r.http), id: 'envapp', g: String(r.grpc), proto: 'grpc' });
  });

  it('refuses an app protocol that is not Dapr\'s with exit code 2, naming the field', async () => {
    const badProtocol = await run(['run', '--app-id', 'x', '--app-port', '3000', '--app-protocol', 'spdy']);
    expect(badProtocol.code).toBe(2);
    expect(badProtocol.err).toContain('apps[0].appProtocol: must be one of http, https, h2c, grpc, grpcs (got "spdy")');
  });

  it('refuses bad usage with exit code 2 and says why', async () => {
    const noId = await run(['run', '--http-port', '0']);
    expect(noId.code).toBe(2);
    expect(noId.err).toContain('--app-id: is required');
    const badPort = await run(['run', '--app-id', 'x', '--http-port', 'abc']);
    expect(badPort.code).toBe(2);
    expect(badPort.err).toContain('--http-port: must be a port number');
    const unknown = await run(['run', '--app-id', 'x', '--bogus']);
    expect(unknown.code).toBe(2);
    expect(unknown.err).toMatch(/Unknown option '--bogus'/);
    const json = await run(['run', '--json']);
    expect(json.code).toBe(2);
    expect(JSON.parse(json.out)).toEqual({ error: { code: 'WEFT_CONFIG', message: '--app-id: is required (see weft run --help)' } });
  });
});

describe('weft run: app health check flags', () => {
  it('takes Dapr\'s flags, shows them in the metadata with the app\'s health, and names a bad one', async () => {
    const { createServer } = await import('node:http');
    const app = createServer((req, res) => res.writeHead(req.url === '/ready' ? 204 : 404).end());
    await new Promise<void>((r) => app.listen(0, '127.0.0.1', r));
    try {
      const appPort = String((app.address() as { port: number }).port);
      const bad = await run(['run', '--app-id', 'h', '--app-port', appPort, '--app-health-threshold', '0', ...ports]);
      expect(bad.code).toBe(2);
      expect(bad.err).toContain('apps[0].appHealthThreshold: must be an integer from 1 to 1000 (got "0")');
      const node = weft(['run', '--app-id', 'h', '--app-port', appPort, '--registry', registry, ...ports, '--json',
        '--enable-app-health-check', '--app-health-check-path', '/ready', '--app-health-probe-interval', '3', '--app-health-probe-timeout', '2500', '--app-health-threshold', '4']);
      const r = await ready(node);
      const meta = (await (await request(`http://127.0.0.1:${r.http}/v1.0/metadata`)).body.json()) as { appConnectionProperties: { health: unknown }; extended: { appHealth: Record<string, { state: string }> } };
      expect(meta.appConnectionProperties.health).toEqual({ healthCheckPath: '/ready', healthProbeInterval: '3s', healthProbeTimeout: '2500ms', healthThreshold: 4 });
      expect(meta.extended.appHealth['h']?.state).toBe('healthy');
      node.kill('SIGTERM');
      expect(await exited(node)).toBe(0);
    } finally {
      app.close();
    }
  });
});

describe('weft run --config', () => {
  it('keeps every field of the file the flags do not override', async () => {
    const file = join(dir, 'run-bad.yaml');
    writeFileSync(file, 'retryBudget: { ratio: 99 }\n');
    const bad = await run(['run', '--app-id', 'x', '--config', file, ...ports]);
    expect(bad.code).toBe(2);
    expect(bad.err).toContain('retryBudget.ratio: must be a number from 0 to 10');
    const good = join(dir, 'run-good.yaml');
    writeFileSync(good, `namespace: shop\nlogLevel: warn\napps:\n  - appId: cfg\n    appHost: 127.0.0.1\nresolver:\n  type: local\n  local: { path: ${JSON.stringify(registry)} }\n`);
    const node = weft(['run', '--app-id', 'cfg', '--config', good, ...ports, '--json']);
    const r = await ready(node);
    const meta = (await (await request(`http://127.0.0.1:${r.http}/v1.0/metadata`)).body.json()) as { extended: { namespace: string } };
    expect(meta.extended.namespace).toBe('shop');
    node.kill('SIGTERM');
    expect(await exited(node)).toBe(0);
  });
});

describe('weft start', () => {
  it('names the bad field of a config file and exits 2', async () => {
    const file = join(dir, 'bad.yaml');
    writeFileSync(file, 'apps:\n  - appId: orders\n    appPort: 99999\n');
    const r = await run(['start', '--config', file]);
    expect(r.code).toBe(2);
    expect(r.err).toContain('config error: apps[0].appPort: must be an integer from 1 to 65535 (got 99999)');
  });

  it('serves the apps of a valid config until SIGTERM', async () => {
    const file = join(dir, 'good.yaml');
    writeFileSync(file, `http: { port: 0 }\ngrpc: { port: 0 }\npeer: { port: 0 }\nmetrics: { port: 0 }\nlogLevel: warn\napps:\n  - appId: cfgapp\nresolver:\n  type: local\n  local: { path: ${JSON.stringify(registry)} }\n`);
    const node = weft(['start', '--config', file, '--json']);
    const r = await ready(node);
    const meta = await request(`http://127.0.0.1:${r.http}/v1.0/metadata`);
    expect(((await meta.body.json()) as { id: string }).id).toBe('cfgapp');
    node.kill('SIGTERM');
    expect(await exited(node)).toBe(0);
  });
});

describe('weft help', () => {
  it.each([[['--help']], [['run', '--help']], [['start', '--help']], [['invoke', '--help']], [['status', '--help']], [['ca', '--help']]])('%j prints usage and exits 0', async (args) => {
    const r = await run(args);
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/Usage: weft/);
  });
});

describe('two nodes on one host, as the README shows them', () => {
  it('both come up with every port left to its default, started at once, and call each other', async () => {
    // Regression: both nodes probed the same free default port, then both bound it: EADDRINUSE.
    // The default ports are only preferences here (taken ones are left for any free port), and
    // the registry is the default one under a HOME of the test's own.
    const home = mkdtempSync(join(tmpdir(), 'weft-home-'));
    try {
      const env = { HOME: home, WEFT_REGISTRY: '', WEFT_CA_DIR: '', DAPR_HTTP_PORT: '', DAPR_API_TOKEN: '' };
      const appPort = await freePort();
      const b = weft(['run', '--app-id', 'echo', '--app-port', String(appPort), '--log-level', 'warn', '--json', '--', process.execPath, 'examples/echo-app.ts'], env);
      const a = weft(['run', '--app-id', 'front', '--log-level', 'warn', '--json'], env);
      const [rb, ra] = await Promise.all([ready(b), ready(a)]);
      for (const key of ['http', 'grpc', 'peer', 'metrics'] as const) expect(ra[key]).not.toBe(rb[key]);
      for (let i = 0; i < 50 && !(await portOpen(appPort)); i++) await new Promise((r) => setTimeout(r, 100));
      let status = 0;
      for (let i = 0; i < 50 && status !== 200; i++) {
        const res = await request(`http://127.0.0.1:${ra.http}/v1.0/invoke/echo/method/echo/x`, { method: 'POST', body: 'hi' });
        status = res.statusCode;
        if (status === 200) expect(await res.body.text()).toBe('hi');
        else await res.body.dump();
        if (status !== 200) await new Promise((r) => setTimeout(r, 100));
      }
      expect(status).toBe(200);
      // the default registry is this user's own: under HOME, in a directory only they can enter
      expect(existsSync(join(home, '.weft', 'registry.sqlite'))).toBe(true);
      expect(statSync(join(home, '.weft')).mode & 0o777).toBe(0o700);
      a.kill('SIGTERM');
      b.kill('SIGTERM');
      expect(await exited(a)).toBe(0);
      expect(await exited(b)).toBe(0);
    } finally {
      rmSync(home, { recursive: true, force: true });
    }
  }, 60_000);
});

describe('weft on a Node too old for it', () => {
  // The machine's own Node (v20 here) is older than weft needs; without one, there is nothing to check.
  const oldNode = ['/usr/bin/node', '/usr/local/bin/node'].find((p) => {
    if (!existsSync(p)) return false;
    const r = spawnSync(p, ['-p', 'process.versions.node'], { encoding: 'utf8' });
    const [major = 0, minor = 0] = r.stdout.trim().split('.').map(Number);
    return r.status === 0 && (major < 22 || (major === 22 && minor < 13));
  });
  // Skipped when no Node older than 22.13 is installed at /usr/bin or /usr/local/bin (nothing to run the check with).
  it.skipIf(oldNode === undefined)('says which Node it needs and how to get it, and exits 1', () => {
    const r = spawnSync(oldNode as string, [WEFT, 'status'], { cwd: ROOT, encoding: 'utf8' });
    expect(r.status).toBe(1);
    expect(r.stderr).toContain('needs Node.js 22.13 or later');
    expect(r.stderr).toContain(`source ${join(ROOT, 'scripts', 'use-node24.sh')}`);
    expect(r.stderr).not.toContain('bad option');
  });
});

describe('weft status', () => {
  it('with an API token: asks for it, refuses a wrong one, and reads the flag or DAPR_API_TOKEN', async () => {
    const node = weft(['run', '--app-id', 'guarded', ...ports, '--registry', registry, '--log-level', 'warn', '--json'], { DAPR_API_TOKEN: 's3cret' });
    const r = await ready(node);
    const port = String(r.http);
    const noToken = { DAPR_API_TOKEN: '' };
    const [none, noneJson, wrong, flag, fromEnv] = await Promise.all([
      run(['status', '--http-port', port], noToken),
      run(['status', '--http-port', port, '--json'], noToken),
      run(['status', '--http-port', port, '--api-token', 'nope'], noToken),
      run(['status', '--http-port', port, '--api-token', 's3cret'], noToken),
      run(['status', '--http-port', port, '--json'], { DAPR_API_TOKEN: 's3cret' }),
    ]);
    expect(none.code).toBe(1);
    expect(none.err).toContain('wants an API token: pass --api-token TOKEN or set DAPR_API_TOKEN');
    expect(none.err).toContain('[WEFT_UNAUTHORIZED]');
    expect(none.out).not.toContain('undefined');
    expect(noneJson.code).toBe(1);
    expect((JSON.parse(noneJson.out) as { error: { code: string } }).error.code).toBe('WEFT_UNAUTHORIZED');
    expect(wrong.code).toBe(1);
    expect(wrong.err).toContain('refused the API token given (--api-token)');
    expect(flag.code).toBe(0);
    expect(flag.out).toContain(`node      ${r.nodeId}`);
    expect(fromEnv.code).toBe(0);
    expect((JSON.parse(fromEnv.out) as { extended: { nodeId: string } }).extended.nodeId).toBe(r.nodeId);
  }, 60_000);

  it('against a port that is not weft, or where nothing listens: a clear error and exit 1', async () => {
    const other = createHttpServer((req, res) => {
      res.writeHead(req.url === '/v1.0/metadata' ? 200 : 404, { 'content-type': 'application/json' }).end('{"id":"someone else"}');
    });
    await new Promise<void>((resolve) => other.listen(0, '127.0.0.1', resolve));
    try {
      const port = String((other.address() as { port: number }).port);
      const [human, json] = await Promise.all([
        run(['status', '--http-port', port], { DAPR_API_TOKEN: '' }),
        run(['status', '--http-port', port, '--json'], { DAPR_API_TOKEN: '' }),
      ]);
      expect(human.code).toBe(1);
      expect(human.err).toContain('is not a weft node');
      expect(human.err).toContain('[WEFT_NOT_A_NODE]');
      expect(human.out).toBe('');
      expect(json.code).toBe(1);
      expect((JSON.parse(json.out) as { error: { code: string } }).error.code).toBe('WEFT_NOT_A_NODE');
    } finally {
      await new Promise((r) => other.close(r));
    }
    const closed = String(await freePort());
    const [gone, goneJson] = await Promise.all([
      run(['status', '--http-port', closed], { DAPR_API_TOKEN: '' }),
      run(['status', '--http-port', closed, '--json'], { DAPR_API_TOKEN: '' }),
    ]);
    expect(gone.code).toBe(1);
    expect(gone.err).toContain('[WEFT_NODE_UNREACHABLE]');
    expect(goneJson.code).toBe(1);
    expect((JSON.parse(goneJson.out) as { error: { code: string } }).error.code).toBe('WEFT_NODE_UNREACHABLE');
  }, 60_000);
});
