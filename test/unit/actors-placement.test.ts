import { describe, expect, it } from 'vitest';
import {
  EMPTY_PLACEMENT, buildPlacement, diff, hash32, lookup, movedAway, nextPlacement,
} from '../../src/actors/placement.ts';
import type { PlacementMember, PlacementTable } from '../../src/actors/placement.ts';

function member(nodeId: string, actorTypes: string[] = ['counter']): PlacementMember {
  return { nodeId, address: '10.0.0.1', port: 50002, actorTypes };
}

const IDS = Array.from({ length: 20_000 }, (_, i) => `actor-${i}`);

function owners(table: PlacementTable, type = 'counter'): Map<string, string | undefined> {
  return new Map(IDS.map((id) => [id, lookup(table, type, id)?.nodeId]));
}

function shares(table: PlacementTable, nodes: string[]): number[] {
  const counts = new Map(nodes.map((n) => [n, 0]));
  for (const owner of owners(table).values()) counts.set(owner as string, (counts.get(owner as string) ?? 0) + 1);
  return nodes.map((n) => (counts.get(n) ?? 0) / IDS.length);
}

function movedCount(a: PlacementTable, b: PlacementTable): number {
  const before = owners(a);
  const after = owners(b);
  let moved = 0;
  for (const id of IDS) if (before.get(id) !== after.get(id)) moved++;
  return moved;
}

describe('hash32', () => {
  it('is stable, unsigned and hashes UTF-8 bytes', () => {
    expect(hash32('a')).toBe(hash32('a'));
    expect(hash32('a')).toBeGreaterThanOrEqual(0);
    expect(hash32('node-a#1')).not.toBe(hash32('node-a#2'));
    // a non-ASCII id hashes like its UTF-8 bytes would, whatever the prefix
    expect(hash32('é')).not.toBe(hash32('e'));
    expect(hash32('xé')).toBe(hash32('xé'));
  });
});

describe('placement rings', () => {
  it('balances ids across 3 to 5 members', () => {
    for (const n of [3, 4, 5]) {
      const nodes = Array.from({ length: n }, (_, i) => `node-${i}`);
      const table = buildPlacement(nodes.map((x) => member(x)), 1);
      const s = shares(table, nodes);
      const mean = 1 / n;
      const stddev = Math.sqrt(s.reduce((acc, x) => acc + (x - mean) ** 2, 0) / n);
      expect(stddev / mean).toBeLessThan(0.15);
      for (const x of s) expect(Math.abs(x - mean) / mean).toBeLessThan(0.3);
    }
  });

  it('moves about 1/n of the ids when a member joins, all to the new member', () => {
    const four = buildPlacement(['a', 'b', 'c', 'd'].map((x) => member(x)), 1);
    const five = buildPlacement(['a', 'b', 'c', 'd', 'e'].map((x) => member(x)), 2);
    const moved = movedCount(four, five) / IDS.length;
    expect(moved).toBeGreaterThan(0.2 * 0.6);
    expect(moved).toBeLessThan(0.2 * 1.4);
    const before = owners(four);
    for (const [id, owner] of owners(five)) if (owner !== before.get(id)) expect(owner).toBe('e');
  });

  it('moves only the leaving member\'s ids when a member leaves', () => {
    const four = buildPlacement(['a', 'b', 'c', 'd'].map((x) => member(x)), 1);
    const three = buildPlacement(['a', 'b', 'd'].map((x) => member(x)), 2);
    const before = owners(four);
    for (const [id, owner] of owners(three)) {
      if (before.get(id) !== 'c') expect(owner).toBe(before.get(id));
      else expect(owner).not.toBe('c');
    }
  });

  it('is deterministic: the same membership in any order gives the same owners and fingerprint', () => {
    const x = buildPlacement([member('a'), member('b'), member('c')], 1);
    const y = buildPlacement([member('c'), member('a'), member('b'), member('a')], 7);
    expect(y.fingerprint).toBe(x.fingerprint);
    expect(owners(y)).toEqual(owners(x));
    expect(buildPlacement([member('a'), member('b')], 1).fingerprint).not.toBe(x.fingerprint);
  });

  it('keeps one ring per actor type over the members hosting it', () => {
    const t = buildPlacement([member('a', ['counter', 'timer']), member('b', ['counter'])], 1);
    for (const id of IDS.slice(0, 500)) expect(lookup(t, 'timer', id)?.nodeId).toBe('a');
    expect(new Set(IDS.slice(0, 500).map((id) => lookup(t, 'counter', id)?.nodeId))).toEqual(new Set(['a', 'b']));
    expect(lookup(t, 'unknown', 'x')).toBeUndefined();
  });

  it('answers undefined on an empty table', () => {
    expect(lookup(EMPTY_PLACEMENT, 'counter', 'x')).toBeUndefined();
    expect(lookup(buildPlacement([], 1), 'counter', 'x')).toBeUndefined();
    expect(lookup(buildPlacement([member('a', [])], 1), 'counter', 'x')).toBeUndefined();
  });
});

describe('table versions and diffs', () => {
  it('versions only grow, and an unchanged membership keeps the table', () => {
    const t1 = nextPlacement(EMPTY_PLACEMENT, [member('a')], 1);
    expect(t1.version).toBe(1);
    expect(nextPlacement(t1, [member('a')], 2)).toBe(t1);
    const t3 = nextPlacement(t1, [member('a'), member('b')], 3);
    expect(t3.version).toBe(3);
    expect(() => nextPlacement(t3, [member('a')], 3)).toThrow(RangeError);
  });

  it('names the active actors whose owner changed away from this node', () => {
    const before = buildPlacement([member('a'), member('b')], 1);
    const after = buildPlacement([member('a'), member('b'), member('c')], 2);
    const active = IDS.slice(0, 2000).filter((id) => lookup(before, 'counter', id)?.nodeId === 'a');
    const moves = diff(before, after, 'a', [['counter', active]]);
    expect(moves.length).toBeGreaterThan(0);
    for (const m of moves) {
      expect(m.to?.nodeId).toBe('c');
      expect(lookup(after, 'counter', m.id)?.nodeId).toBe('c');
    }
    const stayed = active.filter((id) => !moves.some((m) => m.id === id));
    for (const id of stayed) expect(lookup(after, 'counter', id)?.nodeId).toBe('a');
  });

  it('reports every active actor of a type no member hosts any more, and none of an unchanged ring', () => {
    const before = buildPlacement([member('a', ['counter', 'timer'])], 1);
    const after = buildPlacement([member('a', ['counter'])], 2);
    expect(diff(before, after, 'a', [['timer', ['x', 'y']]]).map((m) => [m.id, m.to])).toEqual([['x', undefined], ['y', undefined]]);
    expect(diff(before, after, 'a', [['counter', IDS.slice(0, 100)]])).toEqual([]);
    expect(movedAway(before, after, 'a')('counter', 'x')).toBe(false);
  });
});
