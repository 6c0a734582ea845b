import { describe, expect, it } from 'vitest';
import { writeFileSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DEFAULTS, loadConfigFile, validateConfig } from '../../src/config.ts';
import { WeftError } from '../../src/errors.ts';

function problem(raw: unknown): string {
  try {
    validateConfig(raw, {});
  } catch (err) {
    expect(err).toBeInstanceOf(WeftError);
    expect((err as WeftError).code).toBe('WEFT_CONFIG');
    return (err as Error).message;
  }
  throw new Error('config was accepted');
}

describe('node config', () => {
  it('fills every field with defaults and freezes the result', () => {
    const c = validateConfig({}, {});
    expect(c.http).toEqual({ host: '127.0.0.1', port: DEFAULTS.httpPort, maxConnections: DEFAULTS.httpMaxConnections });
    expect(c.peer.port).toBe(DEFAULTS.peerPort);
    expect(c.metrics).toEqual({ host: '127.0.0.1', port: 9090, enabled: true });
    expect(c.maxBodySize).toBe(4 * 1024 * 1024);
    expect(c.timeouts.invoke).toBe(60_000);
    expect(c.resolver).toEqual({ type: 'local', options: {} });
    expect(c.apps).toEqual([]);
    expect(Object.isFrozen(c)).toBe(true);
    expect(Object.isFrozen(c.http)).toBe(true);
  });

  it('app health checks: off by default with daprd\'s defaults; interval in seconds and timeout in ms as the flags take them', () => {
    const c = validateConfig({ apps: [{ appId: 'a', appPort: 1 }, { appId: 'b', appPort: 2, enableAppHealthCheck: true, appHealthCheckPath: '/ready', appHealthProbeInterval: '2', appHealthProbeTimeout: 250, appHealthThreshold: 5 }, { appId: 'c', appPort: 3, appHealthProbeInterval: '1m', appHealthProbeTimeout: '2s' }] }, {});
    expect(c.apps[0]?.health).toEqual({ enabled: false, path: '/healthz', intervalMs: 5000, timeoutMs: 500, threshold: 3 });
    expect(c.apps[1]?.health).toEqual({ enabled: true, path: '/ready', intervalMs: 2000, timeoutMs: 250, threshold: 5 });
    expect(c.apps[2]?.health).toMatchObject({ intervalMs: 60_000, timeoutMs: 2000 });
  });

  it('actors: the lock delay defaults to fenceTimeout + 1s (a fenced node cuts its turns at once)', () => {
    expect(validateConfig({}, {}).actors).toMatchObject({ fenceMs: 5000, lockDelayMs: 6000, callTimeoutMs: 60_000 });
  });

  it('reads apps, sizes, durations and the API token from the environment', () => {
    const c = validateConfig({
      apps: [{ appId: 'orders', appPort: 3000 }, { appId: 'front', namespace: 'shop' }],
      maxBodySize: '16Mi', timeouts: { invoke: '1m30s', shutdown: 'PT5S' }, resolver: 'static',
    }, { DAPR_API_TOKEN: 'tok', WEFT_CA_DIR: '/etc/weft/ca' }); // static needs a CA (or plaintext: true)
    expect(c.apps[0]).toMatchObject({ appId: 'orders', namespace: 'default', appPort: 3000, appHost: '127.0.0.1' });
    expect(c.apps[1]).toMatchObject({ appId: 'front', namespace: 'shop', appPort: undefined });
    expect(c.maxBodySize).toBe(16 * 1024 * 1024);
    expect(c.timeouts).toEqual({ invoke: 90_000, shutdown: 5_000, headers: 60_000 });
    expect(c.resolver.type).toBe('static');
    expect(c.apiToken).toBe('tok');
  });

  it('takes each of Dapr\'s app protocols, http by default', () => {
    for (const appProtocol of ['http', 'https', 'h2c', 'grpc', 'grpcs']) {
      expect(validateConfig({ apps: [{ appId: 'a', appPort: 3000, appProtocol }] }, {}).apps[0]?.appProtocol).toBe(appProtocol);
    }
    expect(validateConfig({ apps: [{ appId: 'a', appPort: 3000 }] }, {}).apps[0]?.appProtocol).toBe('http');
  });

  it.each([
    [{ http: { port: 70000 } }, 'http.port: must be an integer from 0 to 65535 (got 70000)'],
    [{ http: { prot: 1 } }, 'http.prot: unknown field (known: host, port, enabled, maxConnections)'],
    [{ apps: [{ appPort: 3000 }] }, 'apps[0].appId: is required'],
    [{ apps: [{ appId: 'a.b' }] }, 'apps[0].appId: "a.b" is not a valid app id (letters, digits, - and _, at most 63; no dots)'],
    [{ apps: [{ appId: 'a', appPort: 'x' }] }, 'apps[0].appPort: must be an integer from 1 to 65535 (got "x")'],
    [{ apps: [{ appId: 'a' }, { appId: 'a' }] }, 'apps[1].appId: "a" is listed twice in namespace default'],
    [{ apps: 'orders' }, 'apps: must be a list of apps'],
    [{ apps: [{ appId: 'a', appPort: 1, enableAppHealthCheck: 'yes' }] }, 'apps[0].enableAppHealthCheck: must be true or false'],
    [{ apps: [{ appId: 'a', enableAppHealthCheck: true }] }, 'apps[0].enableAppHealthCheck: needs appPort'],
    [{ apps: [{ appId: 'a', appPort: 1, appHealthCheckPath: 'healthz' }] }, 'apps[0].appHealthCheckPath: "healthz" must be a path starting with /'],
    [{ apps: [{ appId: 'a', appPort: 1, appHealthProbeInterval: 'often' }] }, 'apps[0].appHealthProbeInterval: "often" is not a number of seconds or a duration'],
    [{ apps: [{ appId: 'a', appPort: 1, appHealthProbeInterval: 0 }] }, 'apps[0].appHealthProbeInterval: must be from 1000 ms'],
    [{ apps: [{ appId: 'a', appPort: 1, appHealthProbeTimeout: -5 }] }, 'apps[0].appHealthProbeTimeout: must be from 1 ms to 600000 ms (got -5)'],
    [{ apps: [{ appId: 'a', appPort: 1, appHealthProbeInterval: 1, appHealthProbeTimeout: 1500 }] }, 'apps[0].appHealthProbeTimeout: must not exceed appHealthProbeInterval'],
    [{ apps: [{ appId: 'a', appPort: 1, appHealthThreshold: 0 }] }, 'apps[0].appHealthThreshold: must be an integer from 1 to 1000 (got 0)'],
    [{ actors: { fenceTimeout: '5s', lockDelay: '5500ms' } }, 'actors.lockDelay: must be at least fenceTimeout + 1s'],
    [{ apps: [{ appId: 'a', appPort: 3000, appProtocol: 'http3' }] }, 'apps[0].appProtocol: must be one of http, https, h2c, grpc, grpcs (got "http3")'],
    [{ workers: -1 }, 'workers: must be an integer from 0 to 64 (got -1)'],
    [{ maxBodySize: 'huge' }, 'maxBodySize: "huge" is not a size (e.g. 4Mi, 512Ki, 1048576)'],
    [{ timeouts: { invoke: 'soon' } }, 'timeouts.invoke: "soon" is not a duration (e.g. 500ms, 5s, 1m30s, PT5S)'],
    [{ logLevel: 'loud' }, 'logLevel: must be one of debug, info, warn, error, silent (got "loud")'],
    [{ namespace: 'a b' }, 'namespace: "a b" is not a valid namespace (letters, digits, - and _, at most 63)'],
    [{ colour: 'blue' }, 'colour: unknown field'],
    [{ security: { renewFraction: 1 } }, 'security.renewFraction: must be a number from 0.05 to 0.9 (got 1)'],
    [[1, 2], '(top level): must be a mapping'],
  ])('names the field: %j', (raw, message) => {
    expect(problem(raw)).toContain(message);
  });

  it('names the file when it cannot be read or parsed', () => {
    const dir = mkdtempSync(join(tmpdir(), 'weft-config-'));
    try {
      expect(() => loadConfigFile(join(dir, 'missing.yaml'), {})).toThrow(/--config: cannot read .*missing\.yaml/);
      const bad = join(dir, 'bad.yaml');
      writeFileSync(bad, 'apps: [\n');
      expect(() => loadConfigFile(bad, {})).toThrow(/--config: .*bad\.yaml is not valid YAML/);
      const wrong = join(dir, 'wrong.yaml');
      writeFileSync(wrong, 'apps:\n  - appId: orders\n    appPort: 0\n');
      expect(() => loadConfigFile(wrong, {})).toThrow('apps[0].appPort: must be an integer from 1 to 65535 (got 0)');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
