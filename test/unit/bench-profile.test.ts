import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { summarise, summariseNode } from '../../bench/profile-summary.ts';
import { toMarkdown, type Report } from '../../bench/results.ts';

/**
 * A profile in V8's .cpuprofile shape: root → writev (native, under the ingress handler) and
 * root → postMessage (native, under dispatch), plus idle; one sample every 1 ms from t = 1 s.
 */
function profile(samples: number[]): object {
  const frame = (functionName: string, url: string) => ({ functionName, url, lineNumber: 0, columnNumber: 0, scriptId: '0' });
  return {
    nodes: [
      { id: 1, callFrame: frame('(root)', ''), children: [2, 4, 6] },
      { id: 2, callFrame: frame('handle', 'file:///w/src/ingress/http.ts'), children: [3] },
      { id: 3, callFrame: frame('writev', ''), children: [] },
      { id: 4, callFrame: frame('run', 'file:///w/src/dispatch.ts'), children: [5] },
      { id: 5, callFrame: frame('postMessage', ''), children: [] },
      { id: 6, callFrame: frame('(idle)', ''), children: [] },
    ],
    startTime: 1_000_000,
    endTime: 1_000_000 + samples.length * 1000,
    samples,
    timeDeltas: samples.map(() => 1000),
  };
}

const H = { count: 1000, min: 10, max: 900, mean: 300, p50: 300, p90: 600, p99: 900, p999: 900, overflow: 0 };
const RUN = {
  mode: 'open', rate: 1000, connections: 16, durationS: 1, elapsedS: 1, sent: 1000, completed: 1000, ok: 1000, achievedRps: 1000,
  errors: { total: 0, status: {}, connection: 0, timeout: 0, dropped: 0, other: 0, codes: {} }, latencyUs: H, serviceUs: H, sendLagUs: H, generatorCpuMs: 100,
};

describe('CPU profile summary', () => {
  it('charges native time to the stage of the code that called it, within the window', () => {
    // 1 ms each: 3 writev, 1 postMessage, 2 idle inside [1.000 s, 1.007 s); 4 postMessage after it
    const p = profile([3, 3, 3, 5, 6, 6, 5, 5, 5, 5, 5]) as Parameters<typeof summarise>[0];
    const s = summarise(p, { fromUs: 1_000_000, toUs: 1_006_500 });
    const stage = Object.fromEntries(s.byStage.map((x) => [x.name, x.ms]));
    expect(stage['HTTP ingress (parse, handler, answer)']).toBe(3);
    expect(stage['hop to the workers (piscina, postMessage, dispatch)']).toBe(1);
    expect(s.idleMs).toBe(2);
    expect(s.busyMs).toBe(4);
  });

  it('charges the work of tracing (spans, the OTLP encoder, the OTel exporter) to a stage of its own, not to the code that ended the span', () => {
    const frame = (functionName: string, url: string) => ({ functionName, url, lineNumber: 0, columnNumber: 0, scriptId: '0' });
    const p = {
      nodes: [
        { id: 1, callFrame: frame('(root)', ''), children: [2] },
        { id: 2, callFrame: frame('handle', 'file:///w/dist/src/ingress/http.js'), children: [3, 5] },
        { id: 3, callFrame: frame('add', 'file:///w/dist/src/observability/tracing-otlp.js'), children: [4] },
        { id: 4, callFrame: frame('writeU_Int32LE', 'node:internal/buffer'), children: [] },
        { id: 5, callFrame: frame('send', 'file:///w/node_modules/@opentelemetry/otlp-exporter-base/dist/index.mjs'), children: [] },
      ],
      startTime: 0, endTime: 5000, samples: [4, 4, 5, 2, 2], timeDeltas: [1000, 1000, 1000, 1000, 1000],
    } as Parameters<typeof summarise>[0];
    const stage = Object.fromEntries(summarise(p, { fromUs: 0, toUs: 5000 }).byStage.map((x) => [x.name, x.ms]));
    expect(stage['tracing (spans, OTLP encoding, export)']).toBe(3);
    expect(stage['HTTP ingress (parse, handler, answer)']).toBe(1);
  });

  it('charges a socket write to the code that wrote: the ingress\'s answer, or undici\'s request to the app', () => {
    const frame = (functionName: string, url: string) => ({ functionName, url, lineNumber: 0, columnNumber: 0, scriptId: '0' });
    const p = {
      nodes: [
        { id: 1, callFrame: frame('(root)', ''), children: [2, 5] },
        { id: 2, callFrame: frame('end', 'node:_http_outgoing'), children: [3] },
        { id: 3, callFrame: frame('Socket._writev', 'node:net'), children: [4] },
        { id: 4, callFrame: frame('writev', ''), children: [] },
        { id: 5, callFrame: frame('writeH1', 'file:///w/node_modules/undici/lib/dispatcher/client-h1.js'), children: [6] },
        { id: 6, callFrame: frame('Socket._writeGeneric', 'node:net'), children: [7] },
        { id: 7, callFrame: frame('writev', ''), children: [] },
      ],
      // a sample lasts until the next one: the last closes the fifth
      startTime: 0, endTime: 6000, samples: [4, 7, 7, 7, 4, 4], timeDeltas: [1000, 1000, 1000, 1000, 1000, 1000],
    } as Parameters<typeof summarise>[0];
    const stage = Object.fromEntries(summarise(p, { fromUs: 0, toUs: 6000 }).byStage.map((x) => [x.name, x.ms]));
    expect(stage['HTTP ingress (parse, handler, answer)']).toBe(2);
    expect(stage['peer server and app channel']).toBe(3);
  });

  it('reads a node\'s profile directory: thread 0 is the main thread, the rest are workers', () => {
    const dir = mkdtempSync(join(tmpdir(), 'weft-prof-'));
    try {
      writeFileSync(join(dir, 'CPU.20261130.120000.42.0.001.cpuprofile'), JSON.stringify(profile([3, 3, 5, 6])));
      writeFileSync(join(dir, 'CPU.20261130.120000.42.1.002.cpuprofile'), JSON.stringify(profile([5, 5, 6, 6])));
      const n = summariseNode(dir, { fromUs: 0, toUs: 2_000_000 });
      expect(n?.mainBusyMs).toBe(3);
      expect(n?.main[0]).toEqual({ stage: 'HTTP ingress (parse, handler, answer)', share: 2 / 3 });
      expect(n?.workersBusyMs).toBe(2);
      expect(n?.workers).toEqual([{ stage: 'hop to the workers (piscina, postMessage, dispatch)', share: 1 }]);
      expect(summariseNode(join(dir, 'none'), { fromUs: 0, toUs: 1 })).toBeNull();

      const report = {
        version: 1, startedAt: '', machine: { cpuModel: 'x', cores: 2, platform: 'linux', loadAvg: [0, 0, 0] }, node: 'v24', commit: { sha: 'abc', dirty: false },
        settings: {}, sharing: '', checks: [], failures: [],
        paths: [{ name: 'workers', workers: 2, url: 'http://x', run: RUN, latencyMs: { p50: 1, p90: 1, p99: 1, p999: 1, max: 1 }, addedMs: null, costs: [], max: null, search: null, otherVcpu: 0, stealVcpu: 0, profiles: [{ role: 'node A', dir, ...n }] }],
      } as unknown as Report;
      const md = toMarkdown(report);
      expect(md).toContain('## Where the threads\' time went');
      expect(md).toContain('| workers | node A | main | 3 | HTTP ingress (parse, handler, answer) 67%; hop to the workers (piscina, postMessage, dispatch) 33% |');
      expect(md).toContain('| workers | node A | workers | 2 | hop to the workers (piscina, postMessage, dispatch) 100% |');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
