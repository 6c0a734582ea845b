/**
 * Summarises a V8 .cpuprofile (from `--cpu-prof`): self time by function and by source file,
 * over the busiest window of the profile (the load), as a share of the non-idle samples.
 *
 *   node bench/profile-summary.ts FILE.cpuprofile [--top N] [--window S]
 *
 * `npm run bench -- --profile` profiles every node and puts these summaries, over each path's
 * measured phase, into the report.
 */
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';

interface Node {
  id: number;
  parent?: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}
interface Profile {
  nodes: Node[];
  startTime: number;
  endTime: number;
  samples: number[];
  timeDeltas: number[];
}

export interface Summary {
  windowS: number;
  busyMs: number;
  idleMs: number;
  byFunction: Array<{ name: string; ms: number; share: number }>;
  byFile: Array<{ name: string; ms: number; share: number }>;
  /** Self time charged to the innermost frame that names a stage (see STAGES), else to the leaf's kind. */
  byStage: Array<{ name: string; ms: number; share: number }>;
}

/**
 * Stages of a call by source: the first frame from the leaf up that matches one names the stage,
 * so native work (writev, postMessage) is charged to the code that asked for it. Node's generic
 * internals (streams, events, timers) are passed over on the way up.
 */
const STAGES: Array<[RegExp, string]> = [
  [/src\/observability\/tracing[a-z-]*\.[jt]s|node_modules\/@opentelemetry|node_modules\/protobufjs/, 'tracing (spans, OTLP encoding, export)'],
  [/node_modules\/piscina|src\/dispatch\.[jt]s|workers\/peer-worker\.[jt]s|^postMessage$|per_context\/messageport/, 'hop to the workers (piscina, postMessage, dispatch)'],
  [/workers\/mux\.[jt]s|workers\/outbound\.[jt]s|src\/peer\/codec\.[jt]s|src\/resiliency\/|node_modules\/@grpc|node:internal\/http2|workers\/port-stream\.[jt]s/, 'peer link (Mux, gRPC, HTTP/2, resiliency; both ends)'],
  [/src\/observability\/[a-z-]*metrics\.[jt]s|node_modules\/prom-client|node:internal\/histogram/, 'metrics'],
  [/src\/invoker\.[jt]s/, 'invoker (Exchange, routing wait, abort wiring)'],
  [/src\/routing\//, 'routing'],
  // not node:net: a socket write is charged to whoever wrote (the ingress's answer on node A, undici's request to the app on node B)
  [/src\/ingress\/|node:_http_|src\/appid\.[jt]s|src\/method-path\.[jt]s/, 'HTTP ingress (parse, handler, answer)'],
  [/src\/peer\/server\.[jt]s|src\/appchannel\/|node_modules\/undici|src\/security\//, 'peer server and app channel'],
];

/**
 * Self time per function, file and stage over a window: `{fromUs, toUs}` on the monotonic clock
 * (`process.hrtime`, which V8's profile times share on Linux), or the `windowS` seconds before
 * the profile's last busy second (a profile of a node's whole life, read by hand).
 */
export function summarise(profile: Profile, window: number | { readonly fromUs: number; readonly toUs: number }): Summary {
  const windowS = typeof window === 'number' ? window : (window.toUs - window.fromUs) / 1e6;
  const byId = new Map<number, Node>();
  for (const n of profile.nodes) byId.set(n.id, n);
  for (const n of profile.nodes) for (const c of n.children ?? []) (byId.get(c) as Node).parent = n.id;
  // sample times
  const times: number[] = [];
  let t = profile.startTime;
  for (const d of profile.timeDeltas) times.push((t += d));
  const special = (n: Node): boolean => n.callFrame.functionName === '(idle)' || n.callFrame.functionName === '(program)' || n.callFrame.functionName === '(garbage collector)';
  let lastBusy = profile.startTime;
  for (let i = 0; i < profile.samples.length; i++) {
    const n = byId.get(profile.samples[i] as number) as Node;
    if (n.callFrame.functionName !== '(idle)') lastBusy = times[i] as number;
  }
  // the load ends some time before the process does; find the last second with many busy samples
  const perSecond = new Map<number, number>();
  for (let i = 0; i < profile.samples.length; i++) {
    const n = byId.get(profile.samples[i] as number) as Node;
    if (!special(n)) {
      const s = Math.floor(((times[i] as number) - profile.startTime) / 1e6);
      perSecond.set(s, (perSecond.get(s) ?? 0) + 1);
    }
  }
  const peak = Math.max(0, ...perSecond.values());
  let end = Math.floor((lastBusy - profile.startTime) / 1e6);
  while (end > 0 && (perSecond.get(end) ?? 0) < peak / 3) end--;
  const to = typeof window === 'number' ? profile.startTime + end * 1e6 : window.toUs;
  const from = typeof window === 'number' ? to - windowS * 1e6 : window.fromUs;
  const stageOf = new Map<number, string>();
  const stage = (n: Node): string => {
    const known = stageOf.get(n.id);
    if (known !== undefined) return known;
    let found = '';
    for (let at: Node | undefined = n; at !== undefined && found === ''; at = at.parent === undefined ? undefined : byId.get(at.parent)) {
      const key = at.callFrame.url === '' ? at.callFrame.functionName : at.callFrame.url;
      for (const [re, name] of STAGES) if (re.test(key)) { found = name; break; }
    }
    if (found === '') found = n.callFrame.url === '' ? `other: ${n.callFrame.functionName}` : 'other (Node internals, timers, microtasks)';
    stageOf.set(n.id, found);
    return found;
  };
  const st = new Map<string, number>();
  const fn = new Map<string, number>();
  const file = new Map<string, number>();
  let busy = 0;
  let idle = 0;
  for (let i = 0; i < profile.samples.length; i++) {
    const at = times[i] as number;
    if (at < from || at >= to) continue;
    const dt = (profile.timeDeltas[i + 1] ?? 0) / 1000;
    const n = byId.get(profile.samples[i] as number) as Node;
    const cf = n.callFrame;
    if (cf.functionName === '(idle)') {
      idle += dt;
      continue;
    }
    busy += dt;
    const where = cf.url === '' ? '' : cf.url.replace(/^file:\/\/.*?\/(node_modules|src|workers)\//, '$1/').replace(/^node:/, 'node:');
    const key = `${cf.functionName || '(anonymous)'} ${where}:${cf.lineNumber + 1}`;
    fn.set(key, (fn.get(key) ?? 0) + dt);
    const sname = stage(n);
    st.set(sname, (st.get(sname) ?? 0) + dt);
    const fkey = where === '' ? cf.functionName : where.replace(/^node_modules\/(@[^/]+\/[^/]+|[^/]+)\/.*/, 'node_modules/$1');
    file.set(fkey, (file.get(fkey) ?? 0) + dt);
  }
  const list = (m: Map<string, number>): Summary['byFunction'] => [...m].sort((a, b) => b[1] - a[1]).map(([name, ms]) => ({ name, ms, share: ms / busy }));
  return { windowS, busyMs: busy, idleMs: idle, byFunction: list(fn), byFile: list(file), byStage: list(st) };
}

/**
 * The main thread's and the worker threads' stages for one node, from the profiles `--cpu-prof`
 * wrote into `dir` (one file per thread: `CPU.<date>.<time>.<pid>.<thread>.<seq>.cpuprofile`,
 * thread 0 being the main thread).
 */
export function summariseNode(dir: string, window: { readonly fromUs: number; readonly toUs: number }): { mainBusyMs: number; main: Array<{ stage: string; share: number }>; workersBusyMs: number; workers: Array<{ stage: string; share: number }> } | null {
  let files: string[];
  try {
    files = readdirSync(dir).filter((f) => f.endsWith('.cpuprofile'));
  } catch {
    return null;
  }
  const mainFile = files.find((f) => f.split('.')[4] === '0');
  if (mainFile === undefined) return null;
  const main = summarise(JSON.parse(readFileSync(join(dir, mainFile), 'utf8')) as Profile, window);
  const stages = new Map<string, number>();
  let workersBusy = 0;
  for (const f of files) {
    if (f === mainFile) continue;
    const w = summarise(JSON.parse(readFileSync(join(dir, f), 'utf8')) as Profile, window);
    workersBusy += w.busyMs;
    for (const st of w.byStage) stages.set(st.name, (stages.get(st.name) ?? 0) + st.ms);
  }
  return {
    mainBusyMs: main.busyMs,
    main: main.byStage.map((x) => ({ stage: x.name, share: x.share })),
    workersBusyMs: workersBusy,
    workers: [...stages].sort((a, b) => b[1] - a[1]).map(([stage, ms]) => ({ stage, share: workersBusy > 0 ? ms / workersBusy : 0 })),
  };
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const { values, positionals } = parseArgs({ allowPositionals: true, options: { top: { type: 'string', default: '40' }, window: { type: 'string', default: '8' } } });
  // A file read by hand: the busiest `--window` seconds at the end of the node's life.
  const top = Number(values.top);
  for (const path of positionals) {
    const s = summarise(JSON.parse(readFileSync(path, 'utf8')) as Profile, Number(values.window));
    process.stdout.write(`\n# ${path}: busy ${s.busyMs.toFixed(0)} ms, idle ${s.idleMs.toFixed(0)} ms over ${s.windowS} s\n## by file\n`);
    for (const r of s.byFile.slice(0, top)) process.stdout.write(`${(r.share * 100).toFixed(1).padStart(5)}% ${r.ms.toFixed(0).padStart(6)} ms  ${r.name}\n`);
    process.stdout.write('## by stage\n');
    for (const r of s.byStage.slice(0, top)) process.stdout.write(`${(r.share * 100).toFixed(1).padStart(5)}% ${r.ms.toFixed(0).padStart(6)} ms  ${r.name}\n`);
    process.stdout.write('## by function\n');
    for (const r of s.byFunction.slice(0, top)) process.stdout.write(`${(r.share * 100).toFixed(1).padStart(5)}% ${r.ms.toFixed(0).padStart(6)} ms  ${r.name}\n`);
  }
}
