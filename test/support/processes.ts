/**
 * Nodes as real processes (`weft run`), for tests that kill them. Every process started here
 * is killed by `ProcessGroup.close()`.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = fileURLToPath(new URL('../..', import.meta.url));
export const WEFT = join(ROOT, 'bin', 'weft.js');

export interface Ready {
  event: string;
  nodeId: string;
  http: number;
  peer: number;
  metrics: number;
}

export interface NodeProcess {
  readonly child: ChildProcess;
  readonly ready: Ready;
  readonly stderr: () => string;
}

export function exited(child: ChildProcess): Promise<number | null> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve(child.exitCode);
  return new Promise((resolve) => child.once('exit', (code) => resolve(code)));
}

export class ProcessGroup {
  readonly children: ChildProcess[] = [];

  spawn(args: string[], env: Record<string, string> = {}): ChildProcess {
    const child = spawn(process.execPath, [WEFT, ...args], { cwd: ROOT, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    this.children.push(child);
    return child;
  }

  /** `weft run ... --json`, resolved when the node prints its ready line. */
  async node(args: string[], env: Record<string, string> = {}): Promise<NodeProcess> {
    const child = this.spawn([...args, '--json'], env);
    let err = '';
    child.stderr?.on('data', (d: Buffer) => (err += d.toString()));
    const ready = await new Promise<Ready>((resolve, reject) => {
      let buf = '';
      child.stdout?.on('data', (d: Buffer) => {
        buf += d.toString();
        for (const line of buf.split('\n')) {
          if (line.startsWith('{') && line.includes('"event":"ready"')) resolve(JSON.parse(line) as Ready);
        }
      });
      child.once('exit', (code) => reject(new Error(`weft exited with ${code} before it was ready: ${err}`)));
    });
    return { child, ready, stderr: () => err };
  }

  async close(): Promise<void> {
    await Promise.all(this.children.splice(0).map(async (c) => {
      if (c.exitCode === null && c.signalCode === null) {
        c.kill('SIGKILL');
        await exited(c);
      }
    }));
  }
}

/** `weft run` of app `bank` beside a test actor app (test/support/actor-app.ts), every port free, logs at error. */
export function actorNodeArgs(configFile: string, appPort: number, registry: string): string[] {
  return ['run', '--config', configFile, '--app-id', 'bank', '--app-port', String(appPort),
    '--http-port', '0', '--grpc-port', '0', '--peer-port', '0', '--metrics-port', '0', '--registry', registry, '--log-level', 'error'];
}

/** Resolves once every node's actor placement table is settled (its metrics say so); throws after `ms`. */
export async function placementSettled(list: readonly NodeProcess[], ms: number): Promise<void> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    const ok = await Promise.all(list.map(async (p) => /weft_actor_placement_settled\{[^}]*\} 1/.test(await (await fetch(`http://127.0.0.1:${p.ready.metrics}/metrics`)).text())));
    if (ok.every(Boolean)) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error('placement did not settle');
}
