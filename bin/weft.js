#!/usr/bin/env node
// The `weft` command. This file only checks that this Node can run weft, in plain JavaScript
// that old versions parse (no optional chaining, no top-level await), then loads weft-cli.js.
// weft is TypeScript run directly by Node (type stripping): Node >= 22.13, 24 LTS recommended.
var parts = process.versions.node.split('.').map(Number);
var major = parts[0];
var minor = parts[1];
if (major < 22 || (major === 22 && minor < 13)) {
  var script = decodeURIComponent(new URL('../scripts/use-node24.sh', import.meta.url).pathname);
  process.stderr.write(
    'weft: needs Node.js 22.13 or later (Node 24 LTS recommended); this is Node ' + process.version + ' at ' + process.execPath + '.\n' +
    'weft: to get Node 24 in this shell, run:  source ' + script + '\n' +
    'weft: (it installs Node 24 from the npm registry into ~/.cache and puts it first on PATH), or install Node 24 from https://nodejs.org\n');
  process.exit(1);
}
import('./weft-cli.js');
