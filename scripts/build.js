// `npm run build` (and `npm ci`'s prepare step): compiles src/ and workers/ into dist/ with the
// project's TypeScript, then stamps dist/.built, which bin/weft-cli.js compares with the
// sources' times to choose the compiled tree. An install without dev dependencies
// (`npm ci --omit=dev`) has no compiler: it says so and leaves weft to run its sources.
import { spawnSync } from 'node:child_process';
import { createRequire } from 'node:module';
import { mkdirSync, writeFileSync } from 'node:fs';

const root = new URL('../', import.meta.url);
let tsc;
try {
  tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc');
} catch {
  process.stderr.write('weft build: TypeScript is not installed (a production install); dist/ not built, weft runs its TypeScript sources. Build before pruning: npm ci && npm run build && npm prune --omit=dev\n');
  process.exit(0);
}
const result = spawnSync(process.execPath, [tsc, '-p', 'tsconfig.build.json'], { cwd: root, stdio: 'inherit' });
if (result.status !== 0) process.exit(result.status ?? 1);
mkdirSync(new URL('dist/', root), { recursive: true });
writeFileSync(new URL('dist/.built', root), `${new Date().toISOString()}\n`);
