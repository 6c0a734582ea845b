// The rest of the `weft` command, loaded by weft.js once the Node version is known to be new
// enough. weft is TypeScript run directly by Node (type stripping, on by default from Node 22.18
// and 24). On a Node that has the feature only behind a flag, re-run with the flag.
import { spawn } from 'node:child_process';

if (!process.features.typescript) {
  const child = spawn(process.execPath, ['--experimental-strip-types', '--disable-warning=ExperimentalWarning', ...process.argv.slice(1)], { stdio: 'inherit' });
  for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => child.kill(sig));
  child.on('exit', (code, signal) => process.exit(code ?? (signal ? 1 : 0)));
} else {
  // node:sqlite still prints an ExperimentalWarning on Node 24; it is expected, so keep stderr clean.
  const emit = process.emitWarning;
  process.emitWarning = function (warning, ...rest) {
    const text = typeof warning === 'string' ? warning : warning?.message ?? '';
    if (/SQLite|Type Stripping/i.test(text)) return;
    return emit.call(process, warning, ...rest);
  };
  const { main } = await import('../src/cli/main.ts');
  process.exitCode = await main(process.argv.slice(2));
  // Let pino flush, then leave even if a stray handle stays open.
  setTimeout(() => process.exit(), 200).unref();
}
