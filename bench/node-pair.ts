/**
 * The benchmark's Node floor: two minimal Node proxies (bench/node-proxy.ts) in the same two-hop
 * shape as two weft nodes and the nginx pair (generator → proxy A → proxy B → the same echo app),
 * over the transports weft uses: node:http in, node:http2 between A and B (mTLS, or h2c for a
 * plaintext run), undici to the app. No weft code runs in them, so weft ÷ this pair is what weft's
 * own code (and grpc-js) costs, and this pair ÷ nginx is what the runtime costs.
 *
 * Each proxy is a process of its own, started with the Node the harness runs and V8's young
 * generation as weft's nodes get it (bin/weft-cli.js); from the compiled build
 * (dist/bench/node-proxy.js, which `npm run build` makes with weft's own) when it is current,
 * else from the TypeScript source by type stripping. Certificates come from weft's CA code
 * (bench/nginx.ts `writePairCerts`), as the nginx pair's do.
 */
import { existsSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { writePairCerts, type PairTls } from './nginx.ts';
import type { Processes, Started } from './procs.ts';

const ROOT = resolve(import.meta.dirname, '..');

/** The young generation weft's serving nodes run with (bin/weft-cli.js, SEMI_SPACE_MB), unless chosen otherwise. */
const SEMI_SPACE_FLAG = '--max-semi-space-size=4';

/**
 * The proxy's entry: compiled when dist/ holds it from a build at least as new as the source.
 * The build's stamp (dist/.built, written by every `npm run build`) is compared, as
 * bin/weft-cli.js does for weft's own tree: an incremental build does not rewrite an output
 * whose source changed only in time (a rebase, a checkout), so the output's own time says less.
 */
export function nodeProxyEntry(root: string = ROOT): { file: string; compiled: boolean } {
  const source = join(root, 'bench/node-proxy.ts');
  const built = join(root, 'dist/bench/node-proxy.js');
  const stamp = join(root, 'dist/.built');
  if (existsSync(built) && existsSync(stamp) && statSync(stamp).mtimeMs >= statSync(source).mtimeMs) return { file: built, compiled: true };
  return { file: source, compiled: false };
}

export interface NodePair {
  a: Started;
  b: Started;
  /** The port the generator calls (proxy A). */
  port: number;
  /** B's port (for tests that call it directly). */
  bPort: number;
  /** Whether the proxies run the compiled build (else type-stripped TypeScript). */
  compiled: boolean;
}

/** Starts B (towards the app), then A (towards B); for mTLS first writes the certificates into `dir`. */
export async function startNodePair(
  procs: Processes,
  o: { dir: string; name: string; appPort: number; tls: PairTls; rewrite?: { from: string; to: string }; nodeArgs?: string[]; root?: string },
): Promise<NodePair> {
  const certs = o.tls === 'mtls' ? writePairCerts(join(o.dir, 'certs'), 'node-pair') : null;
  const entry = nodeProxyEntry(o.root);
  const flags = o.nodeArgs ?? [];
  const v8 = flags.some((f) => /^--max[-_]semi[-_]space[-_]size\b/.test(f)) ? flags : [SEMI_SPACE_FLAG, ...flags];
  const start = async (role: 'a' | 'b', upstreamPort: number, args: string[]): Promise<{ proc: Started; port: number }> => {
    const proc = procs.startNode(`${o.name}-${role.toUpperCase()}`, [...v8, entry.file, '--role', role, '--port', '0', '--upstream-port', String(upstreamPort), ...args]);
    const port = await proc.waitFor((line) => {
      const m = /^listening on (\d+)/.exec(line);
      return m ? Number(m[1]) : undefined;
    }, 15_000);
    return { proc, port };
  };
  const b = await start('b', o.appPort, certs ? ['--cert', certs.server.certFile, '--key', certs.server.keyFile, '--ca', certs.server.clientCaFile] : []);
  try {
    const a = await start('a', b.port, [
      ...(certs ? ['--cert', certs.client.certFile, '--key', certs.client.keyFile, '--ca', certs.client.trustedFile, '--server-name', certs.serverName] : []),
      ...(o.rewrite ? ['--rewrite-from', o.rewrite.from, '--rewrite-to', o.rewrite.to] : []),
    ]);
    return { a: a.proc, b: b.proc, port: a.port, bPort: b.port, compiled: entry.compiled };
  } catch (err) {
    await procs.stop(b.proc);
    throw err;
  }
}
