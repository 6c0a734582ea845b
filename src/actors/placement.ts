/**
 * Actor placement: which node owns an actor, computed by every node from the membership it
 * sees. Pure and synchronous (style point 4): no network, no clock, no randomness.
 *
 * - One consistent-hash ring per actor type, over the members that host that type.
 * - Each member gets `VNODES` points at `hash(nodeId + "#" + i)`; an actor id is owned by
 *   the member of the first point at or after `hash(id)` (wrapping around).
 * - The hash is FNV-1a (32-bit) over the UTF-8 bytes, followed by murmur3's 32-bit
 *   finalizer: FNV-1a alone spreads near-identical keys (`node-a#1`, `node-a#2`) poorly.
 * - Same membership → same rings on every node, whatever order it was listed in. Each ring
 *   and each table carries a `fingerprint` (a hash of its sorted membership) that other
 *   nodes can compare: equal fingerprints mean equal owners for every id.
 * - `version` is the membership source's own counter (the resolver's change count, a
 *   Consul index): it only grows on one node; versions of different nodes are not
 *   comparable, fingerprints are.
 */

/** One node as placement sees it: where to reach its peer server, and the actor types its apps host. */
export interface PlacementMember {
  readonly nodeId: string;
  readonly address: string;
  readonly port: number;
  readonly actorTypes: readonly string[];
  /**
   * The member's incarnation (a new process, or a node that fenced itself, gets a new one).
   * Part of the fingerprint, not of the ring: a new incarnation moves no actor, but nobody's
   * acknowledgement of an older table counts for it.
   */
  readonly epoch?: string | undefined;
}

export interface Ring {
  readonly type: string;
  /** Members hosting the type, sorted by nodeId. */
  readonly members: readonly PlacementMember[];
  /** Sorted ring positions. */
  readonly points: Uint32Array;
  /** `owners[k]` is the index in `members` of the point `points[k]`. */
  readonly owners: Uint16Array;
  readonly fingerprint: number;
}

export interface PlacementTable {
  readonly version: number;
  readonly types: ReadonlyMap<string, Ring>;
  /** Hash of every ring's fingerprint, in type order: equal across nodes that see the same membership. */
  readonly fingerprint: number;
}

/** Points per member. 128 keeps every member's share within about ±20% of 1/n for up to tens of members. */
export const VNODES = 128;

export const EMPTY_PLACEMENT: PlacementTable = { version: 0, types: new Map(), fingerprint: 0 };

const FNV_OFFSET = 0x811c9dc5;
const FNV_PRIME = 0x01000193;
const encoder = new TextEncoder();

/** FNV-1a over the UTF-8 bytes of `text`, then murmur3's fmix32. Unsigned 32-bit. */
export function hash32(text: string): number {
  let h = FNV_OFFSET;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c >= 0x80) return finalize(fnvBytes(h, encoder.encode(text.slice(i))));
    h = Math.imul(h ^ c, FNV_PRIME);
  }
  return finalize(h);
}

function fnvBytes(h: number, bytes: Uint8Array): number {
  for (let i = 0; i < bytes.length; i++) h = Math.imul(h ^ (bytes[i] as number), FNV_PRIME);
  return h;
}

function finalize(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

function byNodeId(a: PlacementMember, b: PlacementMember): number {
  return a.nodeId < b.nodeId ? -1 : a.nodeId > b.nodeId ? 1 : 0;
}

/** Builds one type's ring. `members` must be sorted by nodeId and unique (buildPlacement sees to it). */
export function buildRing(type: string, members: readonly PlacementMember[], vnodes = VNODES): Ring {
  const n = members.length * vnodes;
  const hashes = new Uint32Array(n);
  const who = new Uint16Array(n);
  let fp = FNV_OFFSET;
  for (let m = 0; m < members.length; m++) {
    const member = members[m] as PlacementMember;
    fp = hash32(member.epoch === undefined
      ? `${fp}|${member.nodeId}|${member.address}|${member.port}`
      : `${fp}|${member.nodeId}|${member.address}|${member.port}|${member.epoch}`);
    for (let i = 0; i < vnodes; i++) {
      hashes[m * vnodes + i] = hash32(`${member.nodeId}#${i}`);
      who[m * vnodes + i] = m;
    }
  }
  // Sort point indexes by position; equal positions (rare) fall back to member order, which
  // is nodeId order, so every node breaks the tie the same way.
  const order = Array.from({ length: n }, (_, k) => k);
  order.sort((a, b) => (hashes[a] as number) - (hashes[b] as number) || (who[a] as number) - (who[b] as number));
  const points = new Uint32Array(n);
  const owners = new Uint16Array(n);
  for (let k = 0; k < n; k++) {
    const j = order[k] as number;
    points[k] = hashes[j] as number;
    owners[k] = who[j] as number;
  }
  return { type, members, points, owners, fingerprint: members.length === 0 ? 0 : fp };
}

/**
 * The table for a membership. Members are deduplicated by nodeId (the last listing wins) and
 * sorted, so the result does not depend on the order the resolver listed them in.
 */
export function buildPlacement(members: readonly PlacementMember[], version: number, vnodes = VNODES): PlacementTable {
  const unique = new Map<string, PlacementMember>();
  for (const m of members) unique.set(m.nodeId, m);
  const sorted = [...unique.values()].sort(byNodeId);
  if (sorted.length > 0xffff) throw new RangeError('placement: more than 65535 members');
  const perType = new Map<string, PlacementMember[]>();
  for (const m of sorted) {
    for (const type of new Set(m.actorTypes)) {
      let list = perType.get(type);
      if (list === undefined) perType.set(type, (list = []));
      list.push(m);
    }
  }
  const typeNames = [...perType.keys()].sort();
  const types = new Map<string, Ring>();
  let fp = 0;
  for (const type of typeNames) {
    const ring = buildRing(type, perType.get(type) as PlacementMember[], vnodes);
    types.set(type, ring);
    fp = hash32(`${fp}|${type}|${ring.fingerprint}`);
  }
  return { version, types, fingerprint: fp };
}

/**
 * The next table after a membership change: `version` must be greater than the previous
 * one's (it only grows); an unchanged membership returns `prev` itself.
 */
export function nextPlacement(prev: PlacementTable, members: readonly PlacementMember[], version: number, vnodes = VNODES): PlacementTable {
  if (version <= prev.version) throw new RangeError(`placement: version ${version} does not grow past ${prev.version}`);
  const next = buildPlacement(members, version, vnodes);
  return next.fingerprint === prev.fingerprint && sameRings(prev, next) ? prev : next;
}

function sameRings(a: PlacementTable, b: PlacementTable): boolean {
  if (a.types.size !== b.types.size) return false;
  for (const [type, ring] of a.types) if (b.types.get(type)?.fingerprint !== ring.fingerprint) return false;
  return true;
}

/** Index of the first point at or after `h`, wrapping to 0. */
function search(points: Uint32Array, h: number): number {
  let lo = 0;
  let hi = points.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if ((points[mid] as number) < h) lo = mid + 1;
    else hi = mid;
  }
  return lo === points.length ? 0 : lo;
}

/** The owner of one ring's id, or undefined for an empty ring. */
export function ringLookup(ring: Ring, id: string): PlacementMember | undefined {
  if (ring.points.length === 0) return undefined;
  return ring.members[ring.owners[search(ring.points, hash32(id))] as number];
}

/** The node owning actor `type/id`, or undefined when no member hosts the type. */
export function lookup(table: PlacementTable, type: string, id: string): PlacementMember | undefined {
  const ring = table.types.get(type);
  return ring === undefined ? undefined : ringLookup(ring, id);
}

/**
 * A predicate true for the actors that `nodeId` does not own under `next` although the ring
 * of their type changed since `prev`: asked of the actors active on `nodeId`, it names those
 * to drain and deactivate there. Types whose ring did not change are answered without hashing.
 */
export function movedAway(prev: PlacementTable, next: PlacementTable, nodeId: string): (type: string, id: string) => boolean {
  return (type, id) => {
    const before = prev.types.get(type);
    const after = next.types.get(type);
    if (after !== undefined && before !== undefined && after.fingerprint === before.fingerprint) return false;
    return after === undefined || ringLookup(after, id)?.nodeId !== nodeId;
  };
}

export interface Move {
  readonly type: string;
  readonly id: string;
  /** The new owner, or undefined when no member hosts the type any more. */
  readonly to: PlacementMember | undefined;
}

/**
 * Of the actors active on `nodeId` (`active`: type → ids), those whose owner changed
 * between `prev` and `next`, with their new owner.
 */
export function diff(
  prev: PlacementTable,
  next: PlacementTable,
  nodeId: string,
  active: Iterable<readonly [string, Iterable<string>]>,
): Move[] {
  const moved = movedAway(prev, next, nodeId);
  const out: Move[] = [];
  for (const [type, ids] of active) {
    const after = next.types.get(type);
    for (const id of ids) {
      if (moved(type, id)) out.push({ type, id, to: after === undefined ? undefined : ringLookup(after, id) });
    }
  }
  return out;
}
