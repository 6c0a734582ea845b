import { describe, expect, it } from 'vitest';
import { ACTOR_DEFAULTS, NO_ACTORS, parseActorConfig, typeConfig } from '../../src/actors/config.ts';
import { parseSchedule } from '../../src/actors/schedule.ts';

describe('parseActorConfig', () => {
  it('reads what @dapr/dapr sends, with per-type overrides merged over the app-wide settings', () => {
    const { config, warnings } = parseActorConfig({
      entities: ['counter', 'cart', 'counter'],
      actorIdleTimeout: '1h30m',
      actorScanInterval: '10s',
      drainOngoingCallTimeout: 'PT30S',
      drainRebalancedActors: false,
      reentrancy: { enabled: true, maxStackDepth: 8 },
      remindersStoragePartitions: 0,
      entitiesConfig: [{ entities: ['cart'], actorIdleTimeout: '5m', reentrancy: { enabled: false } }],
    });
    expect(warnings).toEqual([]);
    expect(config.entities).toEqual(['counter', 'cart']);
    expect(config.scanIntervalMs).toBe(10_000);
    expect(typeConfig(config, 'counter')).toEqual({
      idleTimeoutMs: 90 * 60_000, drainOngoingCallTimeoutMs: 30_000, drainRebalancedActors: false, reentrancy: { enabled: true, maxStackDepth: 8 },
    });
    expect(typeConfig(config, 'cart')).toEqual({
      idleTimeoutMs: 5 * 60_000, drainOngoingCallTimeoutMs: 30_000, drainRebalancedActors: false, reentrancy: { enabled: false, maxStackDepth: 8 },
    });
  });

  it('uses Dapr\'s defaults for missing fields', () => {
    const { config, warnings } = parseActorConfig({ entities: ['counter'] });
    expect(warnings).toEqual([]);
    expect(config.defaults).toEqual(ACTOR_DEFAULTS);
    expect(ACTOR_DEFAULTS).toEqual({ idleTimeoutMs: 3_600_000, drainOngoingCallTimeoutMs: 60_000, drainRebalancedActors: true, reentrancy: { enabled: false, maxStackDepth: 32 } });
    expect(config.scanIntervalMs).toBe(30_000);
  });

  it('falls back to defaults on bad fields and says which', () => {
    const { config, warnings } = parseActorConfig({
      entities: ['ok', 3, 'a/b'],
      actorIdleTimeout: 'soon',
      drainOngoingCallTimeout: '60',
      reentrancy: { enabled: true, maxStackDepth: -1 },
      entitiesConfig: [{ entities: ['unknown'] }, 'x'],
    });
    expect(config.entities).toEqual(['ok']);
    expect(config.defaults.idleTimeoutMs).toBe(3_600_000);
    expect(config.defaults.drainOngoingCallTimeoutMs).toBe(60_000);
    expect(config.defaults.reentrancy).toEqual({ enabled: true, maxStackDepth: 32 });
    expect(warnings.join('\n')).toMatch(/entities: 3/);
    expect(warnings.join('\n')).toMatch(/actorIdleTimeout/);
    expect(warnings.join('\n')).toMatch(/drainOngoingCallTimeout/);
    expect(warnings.join('\n')).toMatch(/maxStackDepth/);
    expect(warnings.join('\n')).toMatch(/entitiesConfig\[0\]\.entities: unknown/);
    expect(warnings.join('\n')).toMatch(/entitiesConfig\[1\]/);
  });

  it('hosts no actors for a document that is not an object', () => {
    expect(parseActorConfig('nope').config).toBe(NO_ACTORS);
    expect(parseActorConfig(null).config.entities).toEqual([]);
  });
});

describe('parseSchedule', () => {
  const now = Date.parse('2026-01-01T00:00:00Z');
  const ok = (spec: Parameters<typeof parseSchedule>[0]) => {
    const r = parseSchedule(spec, now);
    if (!r.ok) throw new Error(r.problem);
    return r.schedule;
  };

  it('reads Go and ISO 8601 durations and fires at once without a dueTime', () => {
    expect(ok({ dueTime: '1.5s', period: '1m30s' })).toEqual({ firstAt: now + 1500, periodMs: 90_000, repetitions: undefined, expiresAt: undefined });
    expect(ok({ dueTime: 'PT2S', period: 'PT0.5S' })).toMatchObject({ firstAt: now + 2000, periodMs: 500 });
    expect(ok({})).toEqual({ firstAt: now, periodMs: undefined, repetitions: 1, expiresAt: undefined });
    expect(ok({ dueTime: '0s', period: '0s' })).toMatchObject({ periodMs: undefined, repetitions: 1 });
  });

  it('reads ISO 8601 repetitions', () => {
    expect(ok({ period: 'R5/PT1S' })).toMatchObject({ periodMs: 1000, repetitions: 5 });
    expect(ok({ period: 'R/PT1S' })).toMatchObject({ periodMs: 1000, repetitions: undefined });
    expect(parseSchedule({ period: 'R0/PT1S' }, now).ok).toBe(false);
    expect(parseSchedule({ period: 'R3/PT0S' }, now).ok).toBe(false);
  });

  it('reads RFC 3339 times for dueTime and ttl', () => {
    expect(ok({ dueTime: '2026-01-01T00:00:10Z', ttl: '2026-01-01T00:01:00Z', period: '5s' }))
      .toEqual({ firstAt: now + 10_000, periodMs: 5000, repetitions: undefined, expiresAt: now + 60_000 });
    expect(ok({ dueTime: '2025-01-01T00:00:00Z' }).firstAt).toBe(now);
    expect(ok({ ttl: '10s', period: '1s' }).expiresAt).toBe(now + 10_000);
    // A ttl duration counts from the first fire (Dapr: dueTime + ttl).
    expect(ok({ dueTime: '10s', ttl: '5s' }).expiresAt).toBe(now + 15_000);
  });

  it('refuses what is not a schedule', () => {
    for (const spec of [{ dueTime: 'later' }, { period: '5' }, { period: 5 }, { ttl: 'x' }, { dueTime: '10s', ttl: '0s' }, { dueTime: '10s', ttl: '2025-01-01T00:00:00Z' }]) {
      const r = parseSchedule(spec, now);
      expect(r.ok, JSON.stringify(spec)).toBe(false);
    }
  });
});
