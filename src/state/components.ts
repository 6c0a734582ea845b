/**
 * The actor state store, chosen the Dapr way: `Component` documents read from the resources
 * directories (`resourcesPath` in the config, `--resources-path` on the command line).
 *
 * - A component is used for actors when its `spec.type` is `state.sqlite` or
 *   `state.postgresql` and its metadata has `actorStateStore: "true"`; at most one may.
 * - Metadata: `connectionString` (SQLite: the database file; PostgreSQL: a URL or libpq
 *   `key=value` pairs), `tableName` (default `weft_actor_state`), `maxConns` (PostgreSQL pool).
 *   A value may come from `secretKeyRef: {name, key}`, read from the environment variable
 *   `name` (then `key`), as Dapr's local environment secret store does.
 * - No such component: with the local resolver, an embedded SQLite file beside the registry
 *   (`actor-state.sqlite`), shared by every node on the host; with resolvers that span hosts
 *   (static, consul), none (the state and reminder APIs answer WEFT_ACTOR_NOT_SUPPORTED).
 * - A host-local store (SQLite) with a resolver that spans hosts is refused: state would split.
 *
 * Every problem is a WEFT_CONFIG error naming the file and the field.
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { parseAllDocuments } from '../yaml.ts';
import { configError } from '../config.ts';
import { PostgresStateStore } from './postgresql.ts';
import { SqliteStateStore } from './sqlite.ts';
import { DEFAULT_TABLE, TABLE_NAME } from './sql.ts';
import type { StateStore } from './store.ts';

export const SUPPORTED_TYPES = ['state.sqlite', 'state.postgresql'] as const;
/** Resolvers whose nodes live on one host; any other spans hosts. */
const HOST_LOCAL_RESOLVERS = new Set(['local']);

export interface StoreChoiceInput {
  readonly resourcesPaths: readonly string[];
  readonly resolverType: string;
  /** The local resolver's registry file (the default store goes beside it). */
  readonly registryPath: string;
  readonly env?: NodeJS.ProcessEnv;
}

export interface StoreChoice {
  /** Undefined: no actor state store (the APIs answer WEFT_ACTOR_NOT_SUPPORTED with `why`). */
  readonly store: StateStore | undefined;
  /** Where it came from: `<file> (component <name>)`, `default`, or why there is none. */
  readonly source: string;
}

interface FoundComponent {
  readonly file: string;
  readonly name: string;
  readonly type: string;
  readonly metadata: ReadonlyMap<string, string>;
}

export function chooseActorStore(input: StoreChoiceInput): StoreChoice {
  const env = input.env ?? process.env;
  const found = actorStateComponents(input.resourcesPaths, env);
  if (found.length > 1) {
    throw configError(`${found[1]?.file}: metadata.actorStateStore`, `a second actor state store (component ${found[1]?.name}); ${found[0]?.file} (component ${found[0]?.name}) is one already, and Dapr allows only one`);
  }
  const spansHosts = !HOST_LOCAL_RESOLVERS.has(input.resolverType);
  const c = found[0];
  if (c === undefined) {
    if (spansHosts) return { store: undefined, source: `no actor state store: the ${input.resolverType} resolver spans hosts, so the host-local default is off; add a state.postgresql component with actorStateStore "true"` };
    return { store: new SqliteStateStore({ path: join(dirname(input.registryPath), 'actor-state.sqlite'), table: DEFAULT_TABLE }), source: 'default' };
  }
  const field = (name: string): string => `${c.file}: spec.metadata.${name}`;
  const table = c.metadata.get('tableName') ?? DEFAULT_TABLE;
  if (!TABLE_NAME.test(table)) throw configError(field('tableName'), `"${table}" is not a table name (letters, digits and _, optionally schema.table)`);
  const connection = c.metadata.get('connectionString');
  let store: StateStore;
  if (c.type === 'state.sqlite') {
    const path = sqlitePath(connection ?? join(dirname(input.registryPath), 'actor-state.sqlite'));
    store = new SqliteStateStore({ path, table });
  } else {
    if (connection === undefined || connection === '') throw configError(field('connectionString'), 'is required for state.postgresql');
    const maxRaw = c.metadata.get('maxConns');
    const max = maxRaw === undefined ? undefined : Number(maxRaw);
    if (max !== undefined && !(Number.isInteger(max) && max >= 1 && max <= 1000)) throw configError(field('maxConns'), `must be an integer from 1 to 1000 (got "${maxRaw}")`);
    store = new PostgresStateStore({ connectionString: connection, table, maxConnections: max });
  }
  if (store.hostLocal && spansHosts) {
    throw configError(`${c.file}: spec.type`, `${c.type} (component ${c.name}) is a host-local store, but the ${input.resolverType} resolver places actors on nodes of several hosts, which would split actor state; use state.postgresql`);
  }
  return { store, source: `${c.file} (component ${c.name})` };
}

/** Every component of the resources paths that is meant as the actor state store. */
function actorStateComponents(paths: readonly string[], env: NodeJS.ProcessEnv): FoundComponent[] {
  const out: FoundComponent[] = [];
  for (const file of yamlFiles(paths)) {
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch (err) {
      throw configError(file, `cannot read: ${(err as Error).message}`);
    }
    const docs = parseAllDocuments(text);
    for (const doc of Array.isArray(docs) ? docs : [docs]) {
      if (doc.errors.length > 0) throw configError(file, `is not valid YAML: ${doc.errors[0]?.message ?? ''}`);
      const value: unknown = doc.toJS();
      if (!isObj(value) || value['kind'] !== 'Component') continue;
      const name = isObj(value['metadata']) && typeof value['metadata']['name'] === 'string' ? value['metadata']['name'] : '(unnamed)';
      const spec = value['spec'];
      if (!isObj(spec)) throw configError(`${file}: spec`, `component ${name} has no spec mapping`);
      const type = spec['type'];
      if (typeof type !== 'string' || !type.startsWith('state.')) continue;
      const metadata = componentMetadata(spec['metadata'], `${file}: spec.metadata`, env);
      if (metadata.get('actorStateStore')?.toLowerCase() !== 'true') continue;
      if (!(SUPPORTED_TYPES as readonly string[]).includes(type)) {
        throw configError(`${file}: spec.type`, `${type} (component ${name}) is not a state store weft has; use ${SUPPORTED_TYPES.join(' or ')}`);
      }
      out.push({ file, name, type, metadata });
    }
  }
  return out;
}

/** `[{name, value}]` or `[{name, secretKeyRef: {name, key}}]` (read from the environment). */
function componentMetadata(raw: unknown, field: string, env: NodeJS.ProcessEnv): Map<string, string> {
  const out = new Map<string, string>();
  if (raw === undefined || raw === null) return out;
  if (!Array.isArray(raw)) throw configError(field, 'must be a list of {name, value} entries');
  raw.forEach((entry: unknown, i) => {
    const at = `${field}[${i}]`;
    if (!isObj(entry) || typeof entry['name'] !== 'string') throw configError(at, 'must be a mapping with a name');
    const ref = entry['secretKeyRef'];
    if (ref !== undefined) {
      if (!isObj(ref) || typeof ref['name'] !== 'string') throw configError(`${at}.secretKeyRef`, 'must be {name, key}');
      const key = typeof ref['key'] === 'string' ? ref['key'] : ref['name'];
      const value = env[ref['name']] ?? env[key];
      if (value === undefined) throw configError(`${at}.secretKeyRef`, `secret ${ref['name']} (key ${key}) is not set: weft reads secrets from environment variables`);
      out.set(entry['name'], value);
      return;
    }
    const v = entry['value'];
    if (v === undefined || v === null) throw configError(`${at}.value`, `is missing for ${entry['name']}`);
    out.set(entry['name'], typeof v === 'string' ? v : String(v));
  });
  return out;
}

function yamlFiles(paths: readonly string[]): string[] {
  const files: string[] = [];
  for (const p of paths) {
    const path = p.startsWith('~/') ? join(homedir(), p.slice(2)) : p;
    let isDir: boolean;
    try {
      isDir = statSync(path).isDirectory();
    } catch (err) {
      throw configError('resourcesPath', `cannot read ${path}: ${(err as Error).message}`);
    }
    if (!isDir) {
      files.push(path);
      continue;
    }
    for (const name of readdirSync(path).sort()) if (/\.ya?ml$/i.test(name)) files.push(join(path, name));
  }
  return files;
}

/** Dapr's SQLite connection strings: a path, or `file:path?options` (options are ignored). */
function sqlitePath(connection: string): string {
  let p = connection.trim();
  if (p.startsWith('file:')) p = p.slice(5);
  const q = p.indexOf('?');
  if (q !== -1) p = p.slice(0, q);
  if (p.startsWith('~/')) p = join(homedir(), p.slice(2));
  return resolve(p);
}

function isObj(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}
