/** Which file the harness runs for a Node-pair proxy: the compiled build when it is current. */
import { mkdirSync, mkdtempSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { nodeProxyEntry } from '../../bench/node-pair.ts';

describe('nodeProxyEntry', () => {
  const root = mkdtempSync(join(tmpdir(), 'weft-node-proxy-entry-'));
  afterAll(() => rmSync(root, { recursive: true, force: true }));
  const at = (file: string, seconds: number): void => {
    mkdirSync(join(file, '..'), { recursive: true });
    writeFileSync(file, '');
    utimesSync(file, seconds, seconds);
  };

  it('runs the source until a build is stamped after it, then the compiled file', () => {
    const source = join(root, 'bench/node-proxy.ts');
    const built = join(root, 'dist/bench/node-proxy.js');
    at(source, 1000);
    expect(nodeProxyEntry(root)).toEqual({ file: source, compiled: false }); // nothing built
    at(built, 900);
    expect(nodeProxyEntry(root)).toEqual({ file: source, compiled: false }); // no build stamp
    // A build stamped after the source: compiled, even when the output itself is older (an
    // incremental build leaves an output alone when its source only changed in time).
    at(join(root, 'dist/.built'), 1100);
    expect(nodeProxyEntry(root)).toEqual({ file: built, compiled: true });
    // The source edited after the last build: the source again.
    utimesSync(source, 1200, 1200);
    expect(nodeProxyEntry(root)).toEqual({ file: source, compiled: false });
  });
});
