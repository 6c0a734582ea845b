import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { describe, expect, it } from 'vitest';
import { AllocSampler, summariseAlloc } from '../../bench/alloc-profile.ts';
import { freePort } from '../support/ports.ts';
import { toMarkdown, type Report } from '../../bench/results.ts';

/**
 * A child with its inspector on a loopback port: on each "go N" line it makes N calls of
 * `makeCall`, each allocating one array of 1024 doubles (8 KiB of elements plus a header),
 * and says "done" when they are made.
 */
const CHILD = `
const kept = [];
function makeCall() { const a = new Array(1024).fill(0.5); kept[0] = a; return a.length; }
process.stdin.setEncoding('utf8');
let buf = '';
process.stdin.on('data', (d) => {
  buf += d;
  let i;
  while ((i = buf.indexOf('\\n')) !== -1) {
    const line = buf.slice(0, i); buf = buf.slice(i + 1);
    const n = Number(line.split(' ')[1]);
    for (let k = 0; k < n; k++) makeCall();
    process.stdout.write('done\\n');
  }
});
process.stdout.write('ready\\n');
`;

describe('allocation sampling (bench --alloc)', () => {
  it('estimates the bytes a call allocates, and names the code that allocates them', async () => {
    const port = await freePort();
    const child = spawn(process.execPath, [`--inspect=127.0.0.1:${port}`, '-e', CHILD], { stdio: ['pipe', 'pipe', 'ignore'] });
    try {
      let out = '';
      const said = (word: string) =>
        new Promise<void>((resolve) => {
          const check = (): void => {
            if (out.includes(word)) {
              out = out.replace(word, '');
              child.stdout.off('data', onData);
              resolve();
            }
          };
          const onData = (d: Buffer): void => {
            out += d.toString();
            check();
          };
          child.stdout.on('data', onData);
          check();
        });
      await said('ready');
      const sampler = await AllocSampler.connect(port);
      try {
        await sampler.start(1024);
        const calls = 20_000;
        child.stdin.write(`go ${calls}\n`);
        await said('done');
        const head = await sampler.stop();
        const s = summariseAlloc(head, calls);
        // 1024 elements of 8 bytes (unboxed doubles), plus the array's header: 8 KiB and a little.
        expect(s.bytesPerCall).toBeGreaterThan(6 * 1024);
        expect(s.bytesPerCall).toBeLessThan(12 * 1024);
        // The child's own code (makeCall, or its caller once the JIT has inlined it), not Node's.
        expect(s.top[0]?.fn).toMatch(/ \[eval\]:\d+$/);
        const ours = s.top.filter((t) => / \[eval\]:\d+$/.test(t.fn)).reduce((sum, t) => sum + t.bytesPerCall, 0);
        expect(ours).toBeGreaterThan(0.8 * s.bytesPerCall);
      } finally {
        sampler.close();
      }
    } finally {
      child.kill('SIGKILL');
      await once(child, 'close');
    }
  });

  it('finds no inspector where none listens, and says where it looked', async () => {
    const port = await freePort();
    await expect(AllocSampler.connect(port, 300)).rejects.toThrow(`no inspector on 127.0.0.1:${port}`);
  });

  it('sums a profile by function, per call, and the report prints it', () => {
    const frame = (functionName: string, url: string) => ({ functionName, url, lineNumber: 9 });
    const head = {
      callFrame: frame('(root)', ''), selfSize: 0,
      children: [
        { callFrame: frame('invoke', 'file:///w/dist/src/ingress/http.js'), selfSize: 3000, children: [
          { callFrame: frame('', 'file:///w/node_modules/undici/lib/x.js'), selfSize: 1000, children: [] },
        ] },
        { callFrame: frame('invoke', 'file:///w/dist/src/ingress/http.js'), selfSize: 1000, children: [] },
      ],
    };
    const s = summariseAlloc(head, 2);
    expect(s.bytesPerCall).toBe(2500);
    expect(s.top).toEqual([{ fn: 'invoke src/ingress/http.js:10', bytesPerCall: 2000 }, { fn: '(anonymous) undici/lib/x.js:10', bytesPerCall: 500 }]);
    const H = { count: 1, min: 1, max: 1, mean: 1, p50: 1, p90: 1, p99: 1, p999: 1, overflow: 0 };
    const report = {
      version: 1, startedAt: '', machine: { cpuModel: 'x', cores: 2, platform: 'linux', loadAvg: [0, 0, 0] }, node: 'v24', commit: { sha: 'abc', dirty: false },
      settings: {}, sharing: '', checks: [], failures: [],
      paths: [{ name: 'inline', workers: 0, url: 'http://x', run: { errors: { total: 0, dropped: 0 }, latencyUs: H }, latencyMs: { p50: 1, p90: 1, p99: 1, p999: 1, max: 1 }, addedMs: null, costs: [], max: null, search: null, otherVcpu: 0, stealVcpu: 0, alloc: [{ role: 'node A', ...s }] }],
    } as unknown as Report;
    const md = toMarkdown(report);
    expect(md).toContain('## What a call allocates');
    expect(md).toContain('| inline | node A | 2.4 | `invoke src/ingress/http.js:10` 1.95; `(anonymous) undici/lib/x.js:10` 0.49 |');
  });
});
