/**
 * The benchmark's modes (`--modes`): which paths a run measures, and how a mode name reads.
 * Pure, so unit tests can check it without starting anything.
 */
import type { PairTls } from './nginx.ts';

/**
 * What a mode name measures: the baseline, the nginx pair, the Node pair (bench/node-pair.ts), or a
 * weft path by API with the nodes' --workers.
 */
export type Mode = { api: 'baseline' } | { api: 'nginx'; tls: PairTls } | { api: 'node-pair'; tls: PairTls } | { api: 'http' | 'actors' | 'grpc' | 'grpc-app' | 'grpc-proxy' | 'tracing'; workers: number };

export const MODE_NAMES = 'baseline, workers, inline, workers=N, actors, actors=N, grpc, grpc=N, grpc-app, grpc-app=N, grpc-proxy, grpc-proxy=N, nginx, nginx-plain, nginx-mtls, node-pair, node-pair-plain, node-pair-mtls, tracing, tracing=N';

/** A pair of proxies weft is compared with (the nginx pair, the Node pair), as opposed to a baseline or weft. */
export function isPairMode(m: Mode | undefined): boolean {
  return m?.api === 'nginx' || m?.api === 'node-pair';
}

/** The tracing mode's three paths, in order: tracing off, 1% and 100% sampling. */
export const TRACING_STEPS = [{ suffix: 'off', ratio: null }, { suffix: '1%', ratio: 0.01 }, { suffix: '100%', ratio: 1 }] as const;

/** With --control: a second tracing-off pair (`off2`), measured like the others: what two identical paths differ by. */
export const TRACING_CONTROL = { suffix: 'off2', ratio: null } as const;

/** The tracing mode's steps, in the order they are measured. */
export function tracingSteps(control: boolean): ReadonlyArray<{ readonly suffix: string; readonly ratio: number | null }> {
  return control ? [TRACING_STEPS[0], TRACING_CONTROL, TRACING_STEPS[1], TRACING_STEPS[2]] : TRACING_STEPS;
}

/**
 * The modes a run measures, in order: `nginx` stands for both nginx pairs, `node-pair` for the
 * Node pair with the run's TLS (`mtls`: the default; false with --plaintext). A pair brings what
 * its ratios need, the baseline (measured first) and a weft path (`inline`, a node's default,
 * when none is listed). Unknown names fail.
 */
export function expandModes(asked: string[], mtls = true): string[] {
  const out: string[] = [];
  for (const m of asked) {
    if (m === 'nginx') out.push('nginx-plain', 'nginx-mtls');
    else if (m === 'node-pair') out.push(mtls ? 'node-pair-mtls' : 'node-pair-plain');
    else if (modeOf(m) === undefined) throw new Error(`--modes: unknown mode "${m}" (${MODE_NAMES})`);
    else out.push(m);
  }
  const unique = [...new Set(out)];
  if (unique.some((m) => isPairMode(modeOf(m)))) {
    if (!unique.includes('baseline')) unique.unshift('baseline');
    const weft = unique.some((m) => {
      const spec = modeOf(m);
      return spec?.api !== 'baseline' && !isPairMode(spec);
    });
    if (!weft) unique.push('inline');
  }
  return unique;
}

export function modeOf(mode: string): Mode | undefined {
  if (mode === 'baseline') return { api: 'baseline' };
  if (mode === 'nginx-plain') return { api: 'nginx', tls: 'plain' };
  if (mode === 'nginx-mtls') return { api: 'nginx', tls: 'mtls' };
  if (mode === 'node-pair-plain') return { api: 'node-pair', tls: 'plain' };
  if (mode === 'node-pair-mtls') return { api: 'node-pair', tls: 'mtls' };
  if (mode === 'tracing') return { api: 'tracing', workers: 0 };
  const t = /^tracing=(\d+)$/.exec(mode);
  if (t !== null) return { api: 'tracing', workers: Number(t[1]) };
  if (mode === 'workers') return { api: 'http', workers: 2 };
  if (mode === 'inline') return { api: 'http', workers: 0 };
  // actors and the gRPC paths run the nodes with the node's own default, inline.
  if (mode === 'actors' || mode === 'grpc' || mode === 'grpc-app' || mode === 'grpc-proxy') return { api: mode, workers: 0 };
  const m = /^(workers|actors|grpc|grpc-app|grpc-proxy)=(\d+)$/.exec(mode);
  if (m === null) return undefined;
  return { api: m[1] === 'workers' ? 'http' : (m[1] as 'actors' | 'grpc' | 'grpc-app' | 'grpc-proxy'), workers: Number(m[2]) };
}
