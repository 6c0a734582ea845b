/**
 * Durations as Dapr writes them: Go style (`300ms`, `1.5s`, `1m30s`, `2h`) or ISO 8601
 * (`PT2S`, `P1DT2H`), or a bare number of milliseconds. Returns milliseconds, or undefined
 * for text that is neither (callers turn that into an error naming their field).
 */
const GO_UNITS: Record<string, number> = { ns: 1e-6, us: 1e-3, µs: 1e-3, ms: 1, s: 1000, m: 60_000, h: 3_600_000 };
const GO_PART = /(\d+(?:\.\d+)?|\.\d+)(ns|us|µs|ms|s|m|h)/y;
const ISO = /^P(?:(\d+(?:\.\d+)?)D)?(?:T(?:(\d+(?:\.\d+)?)H)?(?:(\d+(?:\.\d+)?)M)?(?:(\d+(?:\.\d+)?)S)?)?$/;

export function parseDuration(value: unknown): number | undefined {
  if (typeof value === 'number') return Number.isFinite(value) && value >= 0 ? value : undefined;
  if (typeof value !== 'string') return undefined;
  const text = value.trim();
  if (text === '') return undefined;
  if (/^\d+(\.\d+)?$/.test(text)) return Number(text);
  if (text === '0') return 0;
  if (text.startsWith('P')) return parseIso(text);
  return parseGo(text);
}

function parseGo(text: string): number | undefined {
  GO_PART.lastIndex = 0;
  let total = 0;
  let matched = 0;
  while (GO_PART.lastIndex < text.length) {
    const m = GO_PART.exec(text);
    if (m === null) return undefined;
    total += Number(m[1]) * (GO_UNITS[m[2] as string] as number);
    matched++;
  }
  return matched > 0 ? total : undefined;
}

function parseIso(text: string): number | undefined {
  const m = ISO.exec(text);
  if (m === null || text === 'P' || text.endsWith('T')) return undefined;
  const [, d, h, min, s] = m;
  return (Number(d ?? 0) * 24 * 3600 + Number(h ?? 0) * 3600 + Number(min ?? 0) * 60 + Number(s ?? 0)) * 1000;
}

/** Sizes: a number of bytes, or `4Mi`, `512Ki`, `1Gi`, `4MB`, `100KB`. */
const SIZE_UNITS: Record<string, number> = { '': 1, b: 1, k: 1e3, kb: 1e3, ki: 1024, kib: 1024, m: 1e6, mb: 1e6, mi: 1 << 20, mib: 1 << 20, g: 1e9, gb: 1e9, gi: 1 << 30, gib: 1 << 30 };

export function parseSize(value: unknown): number | undefined {
  if (typeof value === 'number') return Number.isInteger(value) && value >= 0 ? value : undefined;
  if (typeof value !== 'string') return undefined;
  const m = /^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$/.exec(value);
  if (m === null) return undefined;
  const unit = SIZE_UNITS[(m[2] ?? '').toLowerCase()];
  return unit === undefined ? undefined : Math.floor(Number(m[1]) * unit);
}
