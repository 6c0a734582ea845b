import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { chooseActorStore } from '../../src/state/components.ts';
import { validateConfig } from '../../src/config.ts';
import { nextFire } from '../../src/actors/reminders.ts';
import type { ReminderRecord } from '../../src/state/store.ts';

const root = mkdtempSync(join(tmpdir(), 'weft-components-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));
let n = 0;

/** A resources directory holding the given YAML files. */
function resources(files: Record<string, string>): string {
  const dir = join(root, `r${n++}`);
  mkdirSync(dir);
  for (const [name, text] of Object.entries(files)) writeFileSync(join(dir, name), text);
  return dir;
}

function component(name: string, type: string, metadata: string): string {
  return `apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: ${name}\nspec:\n  type: ${type}\n  version: v1\n  metadata:\n${metadata}`;
}

const registryPath = join(root, 'registry.sqlite');
const ACTOR = '  - name: actorStateStore\n    value: "true"\n';

function choose(dir: string | undefined, resolverType = 'local', env: NodeJS.ProcessEnv = {}) {
  return chooseActorStore({ resourcesPaths: dir === undefined ? [] : [dir], resolverType, registryPath, env });
}

function configError(f: () => unknown): string {
  try {
    f();
  } catch (err) {
    expect((err as { code?: string }).code).toBe('WEFT_CONFIG');
    return (err as Error).message;
  }
  throw new Error('expected a WEFT_CONFIG error');
}

describe('the actor state store from Dapr components', () => {
  it('defaults to SQLite beside the registry with the local resolver, and to none with resolvers that span hosts', () => {
    const local = choose(undefined);
    expect(local.store?.kind).toBe('state.sqlite');
    expect(local.store?.describe).toContain(join(root, 'actor-state.sqlite'));
    const consul = choose(undefined, 'consul');
    expect(consul.store).toBeUndefined();
    expect(consul.source).toMatch(/consul resolver spans hosts.*state\.postgresql/);
  });

  it('reads a state.postgresql component with its connection string from a secretKeyRef (environment)', () => {
    const dir = resources({
      'other.yaml': component('pubsub', 'pubsub.redis', '  - name: redisHost\n    value: localhost:6379\n'),
      'plain-state.yaml': component('cache', 'state.redis', '  - name: redisHost\n    value: localhost:6379\n'),
      'store.yml': component('actorstore', 'state.postgresql', `  - name: connectionString\n    secretKeyRef:\n      name: PG_CONN\n      key: PG_CONN\n  - name: tableName\n    value: my_actors\n${ACTOR}`),
    });
    const chosen = choose(dir, 'consul', { PG_CONN: 'host=db.example port=6543 user=weft dbname=actors' });
    expect(chosen.store?.kind).toBe('state.postgresql');
    expect(chosen.store?.hostLocal).toBe(false);
    expect(chosen.store?.describe).toBe('postgresql db.example:6543/actors (table my_actors)');
    expect(chosen.source).toMatch(/store\.yml \(component actorstore\)/);
    expect(configError(() => choose(dir, 'consul', {}))).toMatch(/store\.yml: spec\.metadata\[0\]\.secretKeyRef: secret PG_CONN .*not set/);
  });

  it('refuses a host-local store for nodes that resolve across hosts, naming the field', () => {
    const dir = resources({ 'sqlite.yaml': component('local', 'state.sqlite', `  - name: connectionString\n    value: ${join(root, 'x.db')}\n${ACTOR}`) });
    expect(choose(dir, 'local').store?.kind).toBe('state.sqlite');
    expect(configError(() => choose(dir, 'static'))).toMatch(/sqlite\.yaml: spec\.type: state\.sqlite .*host-local.*static resolver.*state\.postgresql/);
    expect(configError(() => choose(dir, 'consul'))).toMatch(/spec\.type/);
  });

  it('refuses two actor state stores, a store weft does not have, a bad table name and a missing connection string', () => {
    const two = resources({
      'a.yaml': component('one', 'state.sqlite', ACTOR),
      'b.yaml': component('two', 'state.sqlite', ACTOR),
    });
    expect(configError(() => choose(two))).toMatch(/b\.yaml: metadata\.actorStateStore: a second actor state store \(component two\)/);
    expect(configError(() => choose(resources({ 'r.yaml': component('r', 'state.redis', ACTOR) })))).toMatch(/r\.yaml: spec\.type: state\.redis .*not a state store weft has/);
    expect(configError(() => choose(resources({ 't.yaml': component('t', 'state.sqlite', `  - name: tableName\n    value: "drop table"\n${ACTOR}`) })))).toMatch(/t\.yaml: spec\.metadata\.tableName/);
    expect(configError(() => choose(resources({ 'p.yaml': component('p', 'state.postgresql', ACTOR) }), 'consul'))).toMatch(/p\.yaml: spec\.metadata\.connectionString: is required/);
    expect(configError(() => choose(join(root, 'missing-dir')))).toMatch(/resourcesPath: cannot read/);
  });

  it('takes resourcesPath in the node config as one path or a list', () => {
    expect(validateConfig({ resourcesPath: '/etc/weft/components' }, {}).resourcesPaths).toEqual(['/etc/weft/components']);
    expect(validateConfig({ resourcesPath: ['a', 'b'] }, {}).resourcesPaths).toEqual(['a', 'b']);
    expect(validateConfig({}, {}).resourcesPaths).toEqual([]);
    expect(configError(() => validateConfig({ resourcesPath: [3] }, {}))).toMatch(/resourcesPath\[0\]/);
  });
});

describe('nextFire (a reminder after one fire)', () => {
  const base: ReminderRecord = { type: 'T', id: 'i', name: 'r', data: undefined, dueTime: '', period: '10s', ttl: '', dueAt: 100_000, periodMs: 10_000, remaining: undefined, expiresAt: undefined, rev: 1 };
  it('moves one period on, or past every period missed during downtime (one fire, not one per period)', () => {
    expect(nextFire(base, 100_050)).toEqual({ dueAt: 110_000, remaining: undefined });
    expect(nextFire(base, 155_000)).toEqual({ dueAt: 160_000, remaining: undefined });
    expect(nextFire(base, 160_000)).toEqual({ dueAt: 170_000, remaining: undefined });
  });
  it('counts repetitions down and ends at the last, at the ttl, and without a period', () => {
    expect(nextFire({ ...base, remaining: 3 }, 100_000)).toEqual({ dueAt: 110_000, remaining: 2 });
    expect(nextFire({ ...base, remaining: 1 }, 100_000)).toBeUndefined();
    expect(nextFire({ ...base, expiresAt: 110_000 }, 100_000)).toBeUndefined();
    expect(nextFire({ ...base, expiresAt: 110_001 }, 100_000)).toEqual({ dueAt: 110_000, remaining: undefined });
    expect(nextFire({ ...base, periodMs: undefined }, 100_000)).toBeUndefined();
  });
});
