/**
 * A real Consul agent for the consul tests, when the machine has one: `CONSUL_HTTP_ADDR` (an
 * agent someone runs) or `CONSUL_BIN` (a binary: a dev agent is started on free loopback
 * ports for the test file and stopped after it). Without either, the tests use the test
 * server above; a fresh machine has no Consul, so nothing here may be required.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createServer } from 'node:net';
import { request } from 'node:http';

export interface RealConsul {
  /** `127.0.0.1:<port>`, as CONSUL_HTTP_ADDR takes it. */
  readonly address: string;
  /** How it was found, for skip reasons and logs. */
  readonly source: 'CONSUL_HTTP_ADDR' | 'CONSUL_BIN';
  stop(): Promise<void>;
}

async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as { port: number }).port;
  await new Promise((r) => s.close(r));
  return port;
}

function leader(port: number): Promise<string> {
  return new Promise((resolve) => {
    const req = request({ host: '127.0.0.1', port, path: '/v1/status/leader', agent: false, timeout: 1000 }, (res) => {
      let text = '';
      res.on('data', (c: Buffer) => (text += c.toString()));
      res.on('end', () => resolve(res.statusCode === 200 ? text.replace(/"/g, '') : ''));
    });
    req.on('error', () => resolve(''));
    req.on('timeout', () => req.destroy());
    req.end();
  });
}

/** The real agent to test against, or undefined (then the tests use the test server). */
export async function realConsul(env: NodeJS.ProcessEnv = process.env): Promise<RealConsul | undefined> {
  const addr = env['CONSUL_HTTP_ADDR'];
  if (addr) return { address: addr, source: 'CONSUL_HTTP_ADDR', stop: async () => {} };
  const bin = env['CONSUL_BIN'];
  if (!bin) return undefined;
  const [http, serfLan, serfWan, server] = [await freePort(), await freePort(), await freePort(), await freePort()];
  const child: ChildProcess = spawn(bin, [
    'agent', '-dev', '-bind', '127.0.0.1', '-client', '127.0.0.1', '-node', `weft-test-${process.pid}`,
    '-http-port', String(http), '-dns-port', '-1', '-grpc-port', '-1',
    '-serf-lan-port', String(serfLan), '-serf-wan-port', String(serfWan), '-server-port', String(server),
    '-log-level', 'warn',
  ], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr?.on('data', (d: Buffer) => (stderr = (stderr + d.toString()).slice(-4000)));
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  const stop = async (): Promise<void> => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
    await exited;
  };
  const t0 = Date.now();
  while ((await leader(http)) === '') {
    if (child.exitCode !== null || Date.now() - t0 > 30_000) {
      await stop();
      throw new Error(`CONSUL_BIN=${bin}: the dev agent did not elect itself leader: ${stderr}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  return { address: `127.0.0.1:${http}`, source: 'CONSUL_BIN', stop };
}
