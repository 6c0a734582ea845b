/**
 * The app's actor configuration: the answer to `GET /dapr/config`, as the Dapr SDKs write it
 * (`@dapr/dapr`: `{entities, ...ActorRuntimeOptions}`).
 *
 * Parsed once, leniently: the app owns this document and weft must still host its actors
 * when a field is odd, so a bad field falls back to Dapr's default and is reported in
 * `warnings` (the host logs them) instead of failing the app.
 */
import { parseDuration } from '../duration.ts';
import { DEFAULT_MAX_STACK_DEPTH } from './turns.ts';

/** The settings that can differ per actor type (`entitiesConfig`). */
export interface ActorTypeConfig {
  readonly idleTimeoutMs: number;
  readonly drainOngoingCallTimeoutMs: number;
  readonly drainRebalancedActors: boolean;
  readonly reentrancy: { readonly enabled: boolean; readonly maxStackDepth: number };
}

export interface ActorConfig {
  /** Actor types the app hosts, in its order, without duplicates. */
  readonly entities: readonly string[];
  readonly scanIntervalMs: number;
  /** The app-wide settings. */
  readonly defaults: ActorTypeConfig;
  /** Per-type overrides (already merged over `defaults`). */
  readonly types: ReadonlyMap<string, ActorTypeConfig>;
}

export const ACTOR_DEFAULTS: ActorTypeConfig = Object.freeze({
  idleTimeoutMs: 60 * 60_000,
  drainOngoingCallTimeoutMs: 60_000,
  drainRebalancedActors: true,
  reentrancy: Object.freeze({ enabled: false, maxStackDepth: DEFAULT_MAX_STACK_DEPTH }),
});

export const DEFAULT_SCAN_INTERVAL_MS = 30_000;

/** The config of an app that hosts no actors (it answered 404, or nothing usable). */
export const NO_ACTORS: ActorConfig = Object.freeze({
  entities: [],
  scanIntervalMs: DEFAULT_SCAN_INTERVAL_MS,
  defaults: ACTOR_DEFAULTS,
  types: new Map<string, ActorTypeConfig>(),
});

export function typeConfig(config: ActorConfig, type: string): ActorTypeConfig {
  return config.types.get(type) ?? config.defaults;
}

type Obj = Record<string, unknown>;

function isObj(v: unknown): v is Obj {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

export function parseActorConfig(doc: unknown): { config: ActorConfig; warnings: string[] } {
  const warnings: string[] = [];
  if (!isObj(doc)) return { config: NO_ACTORS, warnings: ['/dapr/config: not a JSON object; hosting no actors'] };
  const entities = names(doc['entities'], 'entities', warnings);
  const scanIntervalMs = duration(doc['actorScanInterval'], 'actorScanInterval', DEFAULT_SCAN_INTERVAL_MS, warnings, true);
  const defaults = settings(doc, '', ACTOR_DEFAULTS, warnings);
  const types = new Map<string, ActorTypeConfig>();
  const overrides = doc['entitiesConfig'];
  if (overrides !== undefined && overrides !== null) {
    if (!Array.isArray(overrides)) warnings.push('entitiesConfig: not a list; ignored');
    else {
      overrides.forEach((entry: unknown, i) => {
        const at = `entitiesConfig[${i}]`;
        if (!isObj(entry)) return void warnings.push(`${at}: not an object; ignored`);
        const merged = settings(entry, `${at}.`, defaults, warnings);
        for (const type of names(entry['entities'], `${at}.entities`, warnings)) {
          if (!entities.includes(type)) warnings.push(`${at}.entities: ${type} is not in entities; ignored`);
          else types.set(type, merged);
        }
      });
    }
  }
  return { config: Object.freeze({ entities, scanIntervalMs, defaults, types }), warnings };
}

function names(v: unknown, field: string, warnings: string[]): string[] {
  if (v === undefined || v === null) return [];
  if (!Array.isArray(v)) {
    warnings.push(`${field}: not a list; ignored`);
    return [];
  }
  const out: string[] = [];
  for (const x of v) {
    if (typeof x !== 'string' || x === '' || x.includes('/')) warnings.push(`${field}: ${JSON.stringify(x)} is not an actor type name; ignored`);
    else if (!out.includes(x)) out.push(x);
  }
  return out;
}

function settings(o: Obj, prefix: string, base: ActorTypeConfig, warnings: string[]): ActorTypeConfig {
  const re = o['reentrancy'];
  let reentrancy = base.reentrancy;
  if (re !== undefined && re !== null) {
    if (!isObj(re)) warnings.push(`${prefix}reentrancy: not an object; ignored`);
    else {
      const enabled = re['enabled'] === undefined ? base.reentrancy.enabled : re['enabled'] === true;
      let maxStackDepth = base.reentrancy.maxStackDepth;
      const depth = re['maxStackDepth'];
      if (depth !== undefined && depth !== null) {
        if (typeof depth === 'number' && Number.isInteger(depth) && depth >= 1) maxStackDepth = depth;
        else warnings.push(`${prefix}reentrancy.maxStackDepth: must be a positive integer (got ${JSON.stringify(depth)}); using ${maxStackDepth}`);
      }
      reentrancy = Object.freeze({ enabled, maxStackDepth });
    }
  }
  const drain = o['drainRebalancedActors'];
  if (drain !== undefined && drain !== null && typeof drain !== 'boolean') {
    warnings.push(`${prefix}drainRebalancedActors: must be true or false; using ${base.drainRebalancedActors}`);
  }
  return Object.freeze({
    idleTimeoutMs: duration(o['actorIdleTimeout'], `${prefix}actorIdleTimeout`, base.idleTimeoutMs, warnings, true),
    drainOngoingCallTimeoutMs: duration(o['drainOngoingCallTimeout'], `${prefix}drainOngoingCallTimeout`, base.drainOngoingCallTimeoutMs, warnings, false),
    drainRebalancedActors: typeof drain === 'boolean' ? drain : base.drainRebalancedActors,
    reentrancy,
  });
}

function duration(v: unknown, field: string, fallback: number, warnings: string[], positive: boolean): number {
  if (v === undefined || v === null || v === '') return fallback;
  // A bare number here is not milliseconds (Dapr reads Go durations only): refuse it.
  const ms = typeof v === 'string' && !/^\d+(\.\d+)?$/.test(v.trim()) ? parseDuration(v) : undefined;
  if (ms === undefined || (positive && ms <= 0)) {
    warnings.push(`${field}: ${JSON.stringify(v)} is not a duration like "1m30s"; using ${fallback} ms`);
    return fallback;
  }
  return ms;
}
