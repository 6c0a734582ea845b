// The rest of the `weft` command, loaded by weft.js once the Node version is known to be new
// enough. weft is TypeScript. `npm ci` (the `prepare` script) and `npm run build` compile it
// into dist/, and this runs the compiled tree when it is at least as new as every source file:
// a node then loads no TypeScript stripper (about 20 MB less resident memory per thread, and a
// quicker start). Otherwise it runs the sources directly (type stripping, on by default from
// Node 22.18 and 24); on a Node that has the feature only behind a flag, it re-runs with the flag.
import { spawn } from 'node:child_process';
import { readdirSync, statSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const root = new URL('../', import.meta.url);

/** The newest modification time of the .ts files under `dir`, recursively. */
function newestSource(dir) {
  let newest = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = `${dir}/${entry.name}`;
    if (entry.isDirectory()) newest = Math.max(newest, newestSource(path));
    else if (entry.name.endsWith('.ts')) newest = Math.max(newest, statSync(path).mtimeMs);
  }
  return newest;
}

/** dist/ holds a build at least as new as src/ and workers/ (the build writes dist/.built last). */
function compiledIsCurrent() {
  let built;
  try {
    built = statSync(new URL('dist/.built', root)).mtimeMs;
    statSync(new URL('dist/src/cli/main.js', root));
  } catch {
    return false;
  }
  // File paths, not URL paths: a checkout under a directory with a space or a '%' in its name.
  const sources = Math.max(newestSource(fileURLToPath(new URL('src', root))), newestSource(fileURLToPath(new URL('workers', root))));
  return built >= sources;
}

// node:sqlite still prints an ExperimentalWarning on Node 24; it is expected, so keep stderr clean.
function quietExpectedWarnings() {
  const emit = process.emitWarning;
  process.emitWarning = function (warning, ...rest) {
    const text = typeof warning === 'string' ? warning : warning?.message ?? '';
    if (/SQLite|Type Stripping/i.test(text)) return;
    return emit.call(process, warning, ...rest);
  };
}

async function run(entry) {
  quietExpectedWarnings();
  const { main } = await import(entry);
  process.exitCode = await main(process.argv.slice(2));
  // Let pino flush, then leave even if a stray handle stays open.
  setTimeout(() => process.exit(), 200).unref();
}

/**
 * The young generation a node runs with, in MB per semi-space. V8's default (16 MB on 64-bit)
 * keeps up to 32 MB of short-lived garbage resident; a node allocates ~25 KB per call that dies
 * young, so 4 MB means a scavenge every ~160 ms at 1000 calls/s (each well under a
 * millisecond) for ~25 MB less RSS under load. Measured: docs/benchmark.md.
 */
const SEMI_SPACE_MB = 4;

/**
 * `weft run` and `weft start` are long-lived nodes: give their V8 the young generation above,
 * unless the user chose one (in NODE_OPTIONS or Node's own flags). V8 reads it only at start,
 * so the process replaces itself (process.execve: same pid, same stdio, so systemd, shells and
 * supervisors see no difference) with the flag added. WEFT_NODE_TUNED marks the second start.
 */
function tuneNodeForServing() {
  const command = process.argv[2];
  if (command !== 'run' && command !== 'start') return;
  if (process.env.WEFT_NODE_TUNED === '1' || typeof process.execve !== 'function') return;
  const chosen = [...process.execArgv, ...(process.env.NODE_OPTIONS ?? '').split(/\s+/)];
  if (chosen.some((flag) => /^--max-semi-space-size\b|^--max_semi_space_size\b/.test(flag))) return;
  process.execve(process.execPath, [process.execPath, `--max-semi-space-size=${SEMI_SPACE_MB}`, ...process.execArgv, ...process.argv.slice(1)], { ...process.env, WEFT_NODE_TUNED: '1' });
}

tuneNodeForServing();

if (process.env.WEFT_FROM_SOURCE !== '1' && compiledIsCurrent()) {
  await run('../dist/src/cli/main.js');
} else if (!process.features.typescript) {
  const child = spawn(process.execPath, ['--experimental-strip-types', '--disable-warning=ExperimentalWarning', ...process.argv.slice(1)], { stdio: 'inherit' });
  for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => child.kill(sig));
  child.on('exit', (code, signal) => process.exit(code ?? (signal ? 1 : 0)));
} else {
  if (process.env.WEFT_FROM_SOURCE !== '1' && process.stderr.isTTY) {
    process.stderr.write('weft: running the TypeScript sources (dist/ is missing or older than src/; `npm run build` compiles it)\n');
  }
  await run('../src/cli/main.ts');
}
