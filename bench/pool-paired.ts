/**
 * Pools paired tracing runs of one build (`npm run bench -- --modes tracing --paired`, each a
 * JSON report): their per-block deltas analysed as one run, with the median's order-statistics
 * interval over all the blocks. A run's interval narrows only as the square root of its blocks;
 * pooling runs of the same nodes is how a bound is settled without one run of an hour.
 *
 *   node bench/pool-paired.ts REPORT.json REPORT.json ... [--json]
 *
 * Runs pool only if they measured the same thing: the same weft commit (the nodes' code) and
 * the same mode, workers, rate and window. Which runs to pool is decided before they are taken
 * (e.g. "every run of the stop's last commit"), not after looking at them: the tool takes all
 * the reports it is given and says which blocks it left out (none: the runs already left out
 * blocks with mixed windows) and how many each run gave.
 */
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { intervalText, medianInterval, PAIRED_TARGET_US, verdict, type MedianInterval, type PairedNode, type PairedReport } from './paired.ts';

/** What pooling needs of a saved report: its commit and its paired section. */
export interface SavedRun {
  readonly source: string;
  readonly commit: string;
  readonly paired: PairedReport;
}

export interface PooledRole {
  readonly role: string;
  /** Blocks each run gave, in the order the runs were given. */
  readonly blocksPerRun: number[];
  readonly tracedCi: MedianInterval | null;
  readonly controlCi: MedianInterval | null;
}

export interface Pooled {
  readonly commit: string;
  readonly runs: number;
  readonly nodes: PooledRole[];
  readonly threads: PooledRole[];
}

/** The settings that make blocks of two runs alike. */
function shape(p: PairedReport): string {
  return `mode ${p.mode}, workers ${p.workers}, ${p.rate}/s, windows of ${p.settleS} + ${p.measureS} s`;
}

function poolRoles(runs: readonly SavedRun[], pick: (p: PairedReport) => readonly PairedNode[] | undefined, confidence: number): PooledRole[] {
  const roles: string[] = [];
  for (const run of runs) for (const n of pick(run.paired) ?? []) if (!roles.includes(n.role)) roles.push(n.role);
  return roles.map((role) => {
    const traced: number[] = [];
    const control: number[] = [];
    const blocksPerRun: number[] = [];
    for (const run of runs) {
      const n = (pick(run.paired) ?? []).find((x) => x.role === role);
      blocksPerRun.push(n?.traced.length ?? 0);
      if (n !== undefined) {
        traced.push(...n.traced);
        control.push(...n.control);
      }
    }
    return { role, blocksPerRun, tracedCi: medianInterval(traced, confidence), controlCi: medianInterval(control, confidence) };
  });
}

/** The runs' blocks as one run; throws (naming the runs) if they did not measure the same thing. */
export function poolPaired(runs: readonly SavedRun[]): Pooled {
  const first = runs[0];
  if (first === undefined) throw new Error('no runs to pool');
  for (const run of runs) {
    if (run.commit !== first.commit) throw new Error(`${run.source} ran weft ${run.commit}, ${first.source} ran ${first.commit}: only runs of one build pool`);
    if (shape(run.paired) !== shape(first.paired)) throw new Error(`${run.source} ran ${shape(run.paired)}, ${first.source} ran ${shape(first.paired)}: only runs of one method pool`);
  }
  const confidence = first.paired.confidence;
  return { commit: first.commit, runs: runs.length, nodes: poolRoles(runs, (p) => p.nodes, confidence), threads: poolRoles(runs, (p) => p.threads, confidence) };
}

/** A saved JSON report (bench/results.ts `Report`) as a run to pool: its commit and its one paired section. */
export function savedRun(source: string, report: unknown): SavedRun {
  const r = report as { commit?: { sha?: unknown; dirty?: unknown } | null; tracingPaired?: unknown };
  const paired = Array.isArray(r.tracingPaired) ? r.tracingPaired : [];
  if (paired.length !== 1) throw new Error(`${source}: not the report of one paired run (it has ${paired.length} paired sections)`);
  const sha = r.commit?.sha;
  if (typeof sha !== 'string' || sha === '') throw new Error(`${source}: the report names no weft commit`);
  // a run of uncommitted nodes cannot be told apart from a run of other uncommitted nodes
  if (r.commit?.dirty === true) throw new Error(`${source}: its nodes ran from a tree with uncommitted changes (on ${sha})`);
  return { source, commit: sha, paired: paired[0] as PairedReport };
}

export function pooledMarkdown(p: Pooled): string[] {
  const row = (n: PooledRole, verdictToo: boolean): string =>
    `| ${n.role} | ${intervalText(n.tracedCi)} | ${intervalText(n.controlCi)} | ${n.tracedCi === null ? '—' : `${(n.tracedCi.coverage * 100).toFixed(1)}%`} | ${n.blocksPerRun.join(' + ')} | ${verdictToo ? verdict(n.tracedCi, PAIRED_TARGET_US) : '—'} |`;
  return [
    `${p.runs} paired runs of weft ${p.commit}, their blocks pooled:`,
    '',
    `| node | Δ sampled − unsampled µs/call, median [interval] | A/A floor, median [interval] | coverage | blocks per run | verdict (≤ ${PAIRED_TARGET_US} µs) |`,
    '| --- | --- | --- | --- | --- | --- |',
    ...p.nodes.map((n) => row(n, n.role !== 'app')),
    ...p.threads.map((n) => row(n, false)),
  ];
}

if (import.meta.main) {
  const { values, positionals } = parseArgs({ allowPositionals: true, options: { json: { type: 'boolean', default: false } } });
  if (positionals.length === 0) {
    process.stderr.write('usage: node bench/pool-paired.ts REPORT.json [REPORT.json ...] [--json]\n');
    process.exit(2);
  }
  try {
    const pooled = poolPaired(positionals.map((file) => savedRun(file, JSON.parse(readFileSync(file, 'utf8')))));
    process.stdout.write(values.json ? `${JSON.stringify(pooled, null, 2)}\n` : `${pooledMarkdown(pooled).join('\n')}\n`);
  } catch (err) {
    process.stderr.write(`pool-paired: ${(err as Error).message}\n`);
    process.exit(1);
  }
}
