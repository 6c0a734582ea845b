/**
 * Tracing settings, the Dapr way and the OTel way (docs/tracing.md):
 *
 * - Dapr: a `Configuration` document's `spec.tracing` — `samplingRate` ("0" off … "1" every
 *   call; parent-based, as in Dapr), `otel.endpointAddress` (`host:port`, or a URL),
 *   `otel.protocol` (`http` or `grpc`), `otel.isSecure`. The node's `tracing` field names such
 *   a file, or holds the `tracing` mapping inline.
 * - OTel: the standard environment variables — `OTEL_EXPORTER_OTLP_(TRACES_)ENDPOINT`,
 *   `OTEL_EXPORTER_OTLP_(TRACES_)PROTOCOL` (`http/protobuf`, `grpc`), `OTEL_TRACES_SAMPLER`
 *   (+ `_ARG`), `OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES`, `OTEL_SDK_DISABLED`,
 *   `OTEL_TRACES_EXPORTER` (`otlp` or `none`).
 *
 * What the Configuration sets wins; the environment fills in the rest. Tracing is on once an
 * endpoint is known (or `OTEL_TRACES_EXPORTER=otlp`: the OTel default endpoint) and the
 * sampler is not always off.
 */
import { readFileSync } from 'node:fs';
import { parseYaml } from '../yaml.ts';
import { WeftError } from '../errors.ts';

export type OtlpProtocol = 'http/protobuf' | 'grpc';

export interface TracingConfig {
  readonly enabled: boolean;
  /** Share of new traces sampled (0..1). */
  readonly ratio: number;
  /** A parent's decision is followed (parentbased_*; Dapr's samplingRate always is). */
  readonly parentBased: boolean;
  readonly protocol: OtlpProtocol;
  /** The exporter's URL (http/protobuf: the full `/v1/traces` URL; grpc: `http(s)://host:port`). */
  readonly endpoint: string;
  /** `OTEL_SERVICE_NAME`; undefined: the node's first app id (as Dapr names its traces), else `weft`. */
  readonly serviceName: string | undefined;
  /** `OTEL_RESOURCE_ATTRIBUTES`, parsed. */
  readonly resourceAttributes: Readonly<Record<string, string>>;
  /** Spans held for export at most; past it spans are dropped and counted. */
  readonly maxQueueSize: number;
  readonly maxExportBatchSize: number;
  /** How often the queue is exported, ms. */
  readonly exportIntervalMs: number;
  /** One export's time limit, ms. */
  readonly exportTimeoutMs: number;
  /** Exports in flight at most (more wait in the queue). */
  readonly maxConcurrentExports: number;
}

export const TRACING_OFF: TracingConfig = Object.freeze({
  enabled: false, ratio: 0, parentBased: true, protocol: 'http/protobuf', endpoint: '', serviceName: undefined,
  resourceAttributes: Object.freeze({}), maxQueueSize: 2048, maxExportBatchSize: 512, exportIntervalMs: 1000, exportTimeoutMs: 10_000, maxConcurrentExports: 4,
});

type Obj = Record<string, unknown>;

function isObj(v: unknown): v is Obj {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function err(field: string, problem: string): WeftError {
  return new WeftError('WEFT_CONFIG', `${field}: ${problem}`);
}

function known(obj: Obj, field: string, keys: readonly string[]): void {
  for (const k of Object.keys(obj)) if (!keys.includes(k)) throw err(`${field}.${k}`, `unknown field (known: ${keys.join(', ')})`);
}

/** The `tracing` mapping from the node's field: inline, or a Configuration file's `spec.tracing`. */
function tracingMapping(raw: unknown, field: string): { map: Obj; field: string } | undefined {
  if (raw === undefined || raw === null) return undefined;
  if (typeof raw === 'string' && raw !== '') {
    let doc: unknown;
    try {
      doc = parseYaml(readFileSync(raw, 'utf8'));
    } catch (e) {
      throw err(field, `cannot read the Configuration ${raw}: ${(e as Error).message}`);
    }
    if (!isObj(doc)) throw err(field, `${raw} is not a YAML mapping`);
    if (doc['kind'] !== undefined && doc['kind'] !== 'Configuration') throw err(`${raw}: kind`, `must be Configuration (got ${JSON.stringify(doc['kind'])})`);
    const spec = doc['spec'];
    const tracing = isObj(spec) ? spec['tracing'] : doc['tracing'];
    if (tracing === undefined || tracing === null) return { map: {}, field: `${raw}: spec.tracing` };
    if (!isObj(tracing)) throw err(`${raw}: spec.tracing`, 'must be a mapping');
    return { map: tracing, field: `${raw}: spec.tracing` };
  }
  if (!isObj(raw)) throw err(field, 'must be the path of a Dapr Configuration YAML file, or a tracing mapping (samplingRate, otel)');
  return { map: raw, field };
}

function ratioOf(v: unknown, field: string): number {
  const n = typeof v === 'string' && v.trim() !== '' ? Number(v) : v;
  if (typeof n !== 'number' || !Number.isFinite(n) || n < 0 || n > 1) throw err(field, `must be a number from 0 to 1 (got ${JSON.stringify(v)})`);
  return n;
}

function protocolOf(v: string, field: string): OtlpProtocol {
  switch (v) {
    case 'http': case 'http/protobuf': return 'http/protobuf';
    case 'grpc': return 'grpc';
    default: throw err(field, `must be http (http/protobuf) or grpc (got ${JSON.stringify(v)}; http/json is not supported)`);
  }
}

/** OTEL_TRACES_SAMPLER(+_ARG) as a ratio and parent-basedness; OTel's default is parentbased_always_on. */
function samplerFromEnv(env: NodeJS.ProcessEnv): { ratio: number; parentBased: boolean } {
  const name = (env['OTEL_TRACES_SAMPLER'] ?? '').trim().toLowerCase() || 'parentbased_always_on';
  const arg = env['OTEL_TRACES_SAMPLER_ARG'];
  const ratio = (): number => (arg === undefined || arg.trim() === '' ? 1 : ratioOf(arg, 'OTEL_TRACES_SAMPLER_ARG'));
  switch (name) {
    case 'always_on': return { ratio: 1, parentBased: false };
    case 'always_off': return { ratio: 0, parentBased: false };
    case 'traceidratio': return { ratio: ratio(), parentBased: false };
    case 'parentbased_always_on': return { ratio: 1, parentBased: true };
    case 'parentbased_always_off': return { ratio: 0, parentBased: true };
    case 'parentbased_traceidratio': return { ratio: ratio(), parentBased: true };
    default: throw err('OTEL_TRACES_SAMPLER', `"${name}" is not supported (always_on, always_off, traceidratio, parentbased_always_on, parentbased_always_off, parentbased_traceidratio)`);
  }
}

/** `key=value,key=value` with percent-encoded values (the OTel resource attribute format). */
export function parseResourceAttributes(text: string | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  if (text === undefined) return out;
  for (const pair of text.split(',')) {
    const eq = pair.indexOf('=');
    if (eq <= 0) continue;
    const key = pair.slice(0, eq).trim();
    let value = pair.slice(eq + 1).trim();
    try {
      value = decodeURIComponent(value);
    } catch {
      // kept as written
    }
    if (key !== '') out[key] = value;
  }
  return out;
}

function endpointUrl(address: string, protocol: OtlpProtocol, secure: boolean | undefined, appendPath: boolean): string {
  let url = /^[a-z][a-z0-9+.-]*:\/\//i.test(address) ? address : `${secure === true ? 'https' : 'http'}://${address}`;
  if (protocol === 'http/protobuf' && appendPath) url = `${url.replace(/\/+$/, '')}/v1/traces`;
  return url;
}

/**
 * The node's tracing settings from its `tracing` field (`raw`) and the environment. Throws a
 * WEFT_CONFIG error naming the field (or variable) that is wrong.
 */
export function tracingConfig(raw: unknown, env: NodeJS.ProcessEnv, field = 'tracing'): TracingConfig {
  const found = tracingMapping(raw, field);
  const map = found?.map ?? {};
  const where = found?.field ?? field;
  known(map, where, ['samplingRate', 'otel', 'zipkin', 'stdout', 'maxQueueSize', 'exportInterval', 'maxConcurrentExports']);
  const otel = map['otel'] ?? {};
  if (!isObj(otel)) throw err(`${where}.otel`, 'must be a mapping (endpointAddress, protocol, isSecure)');
  known(otel, `${where}.otel`, ['endpointAddress', 'protocol', 'isSecure']);
  if (map['zipkin'] !== undefined) throw err(`${where}.zipkin`, 'is not supported: weft exports OTLP (use otel)');

  const disabled = (env['OTEL_SDK_DISABLED'] ?? '').trim().toLowerCase() === 'true';
  const exporter = (env['OTEL_TRACES_EXPORTER'] ?? '').trim().toLowerCase();
  if (exporter !== '' && exporter !== 'otlp' && exporter !== 'none') throw err('OTEL_TRACES_EXPORTER', `"${exporter}" is not supported (otlp or none)`);

  let ratio: number;
  let parentBased: boolean;
  const daprRate = map['samplingRate'] !== undefined && map['samplingRate'] !== null;
  if (daprRate) {
    ratio = ratioOf(map['samplingRate'], `${where}.samplingRate`);
    parentBased = true;
  } else {
    ({ ratio, parentBased } = samplerFromEnv(env));
  }

  const protoRaw = otel['protocol'];
  if (protoRaw !== undefined && typeof protoRaw !== 'string') throw err(`${where}.otel.protocol`, 'must be http or grpc');
  const protocol = protoRaw !== undefined
    ? protocolOf(protoRaw, `${where}.otel.protocol`)
    : protocolOf(env['OTEL_EXPORTER_OTLP_TRACES_PROTOCOL'] || env['OTEL_EXPORTER_OTLP_PROTOCOL'] || 'http/protobuf', env['OTEL_EXPORTER_OTLP_TRACES_PROTOCOL'] ? 'OTEL_EXPORTER_OTLP_TRACES_PROTOCOL' : 'OTEL_EXPORTER_OTLP_PROTOCOL');
  const secureRaw = otel['isSecure'];
  if (secureRaw !== undefined && typeof secureRaw !== 'boolean') throw err(`${where}.otel.isSecure`, 'must be true or false');

  let endpoint = '';
  const address = otel['endpointAddress'];
  if (address !== undefined && address !== null) {
    if (typeof address !== 'string' || address === '') throw err(`${where}.otel.endpointAddress`, 'must be host:port or a URL');
    endpoint = endpointUrl(address, protocol, secureRaw, true);
  } else if (env['OTEL_EXPORTER_OTLP_TRACES_ENDPOINT']) {
    // the signal's own endpoint is used as it is
    endpoint = endpointUrl(env['OTEL_EXPORTER_OTLP_TRACES_ENDPOINT'], protocol, secureRaw, false);
  } else if (env['OTEL_EXPORTER_OTLP_ENDPOINT']) {
    endpoint = endpointUrl(env['OTEL_EXPORTER_OTLP_ENDPOINT'], protocol, secureRaw, true);
  } else if (exporter === 'otlp') {
    endpoint = protocol === 'grpc' ? 'http://localhost:4317' : 'http://localhost:4318/v1/traces';
  }

  const queue = map['maxQueueSize'] ?? 2048;
  if (typeof queue !== 'number' || !Number.isInteger(queue) || queue < 1 || queue > 1_000_000) throw err(`${where}.maxQueueSize`, 'must be an integer from 1 to 1000000');
  const intervalRaw = map['exportInterval'] ?? 1000;
  const interval = typeof intervalRaw === 'number' ? intervalRaw : Number.NaN;
  if (!Number.isInteger(interval) || interval < 10 || interval > 60_000) throw err(`${where}.exportInterval`, 'must be an integer number of ms from 10 to 60000');
  const concurrent = map['maxConcurrentExports'] ?? 4;
  if (typeof concurrent !== 'number' || !Number.isInteger(concurrent) || concurrent < 1 || concurrent > 16) throw err(`${where}.maxConcurrentExports`, 'must be an integer from 1 to 16');

  return Object.freeze({
    // Dapr's samplingRate "0" turns tracing off; OTel's parentbased_always_off still follows parents.
    enabled: !disabled && exporter !== 'none' && endpoint !== '' && (ratio > 0 || (parentBased && !daprRate)),
    ratio,
    parentBased,
    protocol,
    endpoint,
    serviceName: env['OTEL_SERVICE_NAME'] || undefined,
    resourceAttributes: Object.freeze(parseResourceAttributes(env['OTEL_RESOURCE_ATTRIBUTES'])),
    maxQueueSize: queue,
    maxExportBatchSize: Math.min(512, queue),
    exportIntervalMs: interval,
    exportTimeoutMs: 10_000,
    maxConcurrentExports: concurrent,
  });
}
