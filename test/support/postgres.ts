/**
 * A throwaway PostgreSQL cluster for tests: `initdb` in a temp dir, `postgres` on a free port
 * of 127.0.0.1 with trust auth, stopped and removed by `stop()`. The server refuses to run as
 * root, so when the tests run as root it runs as the `postgres` user (runuser).
 *
 * `findPostgres()` says why there is none (binaries missing: Debian package `postgresql`), so
 * a test can skip with the reason beside the skip.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { chmodSync, chownSync, existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from './ports.ts';

export interface PostgresBinaries {
  readonly bin: string;
  /** Run as this user (root cannot run the server); undefined: as ourselves. */
  readonly runAs: { readonly user: string; readonly uid: number; readonly gid: number } | undefined;
}

/** The server's binaries, or a sentence saying why they are not usable here. */
export function findPostgres(): PostgresBinaries | string {
  const root = '/usr/lib/postgresql';
  let versions: string[] = [];
  try {
    versions = readdirSync(root).filter((v) => existsSync(join(root, v, 'bin', 'initdb'))).sort((a, b) => Number(b) - Number(a));
  } catch {
    // no postgresql directory
  }
  const v = versions[0];
  if (v === undefined) return 'PostgreSQL server binaries not found under /usr/lib/postgresql/*/bin (apt-get install postgresql)';
  const bin = join(root, v, 'bin');
  if (process.getuid?.() !== 0) return { bin, runAs: undefined };
  const id = spawnSync('id', ['-u', 'postgres'], { encoding: 'utf8' });
  const gid = spawnSync('id', ['-g', 'postgres'], { encoding: 'utf8' });
  if (id.status !== 0 || gid.status !== 0) return 'running as root and there is no postgres user to run the server as';
  return { bin, runAs: { user: 'postgres', uid: Number(id.stdout.trim()), gid: Number(gid.stdout.trim()) } };
}

export class PostgresServer {
  readonly port: number;
  readonly dir: string;
  private readonly b: PostgresBinaries;
  private running = false;

  private constructor(b: PostgresBinaries, dir: string, port: number) {
    this.b = b;
    this.dir = dir;
    this.port = port;
  }

  /** `postgres://postgres@127.0.0.1:<port>/postgres` */
  get url(): string {
    return `postgres://postgres@127.0.0.1:${this.port}/postgres`;
  }

  /** libpq key=value form of the same (Dapr's examples use it). */
  get keyValue(): string {
    return `host=127.0.0.1 port=${this.port} user=postgres dbname=postgres connect_timeout=5`;
  }

  static async start(b: PostgresBinaries): Promise<PostgresServer> {
    const dir = mkdtempSync(join(tmpdir(), 'weft-pg-'));
    chmodSync(dir, 0o755);
    if (b.runAs !== undefined) chownSync(dir, b.runAs.uid, b.runAs.gid);
    const server = new PostgresServer(b, dir, await freePort());
    server.run('initdb', ['-D', join(dir, 'data'), '-U', 'postgres', '--auth=trust', '--no-sync', '-E', 'UTF8']);
    await server.resume();
    return server;
  }

  private run(tool: string, args: string[]): void {
    const cmd = join(this.b.bin, tool);
    const [file, argv] = this.b.runAs === undefined ? [cmd, args] : ['runuser', ['-u', this.b.runAs.user, '--', cmd, ...args]];
    execFileSync(file, argv, { stdio: 'pipe', cwd: this.dir, timeout: 60_000 });
  }

  /** Starts (again) on the same port and data. */
  async resume(): Promise<void> {
    const opts = `-p ${this.port} -k ${this.dir} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200 -c shared_buffers=32MB`;
    this.run('pg_ctl', ['-D', join(this.dir, 'data'), '-o', opts, '-l', join(this.dir, 'log'), '-w', '-t', '60', 'start']);
    this.running = true;
  }

  /** Stops the server (fast: open connections are cut). */
  async halt(): Promise<void> {
    if (!this.running) return;
    this.run('pg_ctl', ['-D', join(this.dir, 'data'), '-m', 'immediate', '-w', 'stop']);
    this.running = false;
  }

  async stop(): Promise<void> {
    try {
      await this.halt();
    } finally {
      rmSync(this.dir, { recursive: true, force: true });
    }
  }
}
