/**
 * When an actor timer (and later a reminder) fires, from Dapr's fields:
 * - `dueTime`: first fire, a duration from now (Go `1.5s`, ISO `PT2S`) or an RFC 3339 time;
 *   empty means now.
 * - `period`: a duration, or an ISO 8601 repetition `R5/PT1S` (5 fires in all; `R/PT1S`
 *   repeats forever); empty or zero means fire once.
 * - `ttl`: a duration counted from the first fire (Dapr's rule: it expires at dueTime + ttl),
 *   or an RFC 3339 time, after which it never fires again. `dueTime 2s, period 2s, ttl 3s`
 *   fires at 2 s and 4 s; `dueTime 5s, ttl 3s` fires once at 5 s.
 * Pure: the caller passes `now`.
 */
import { parseDuration } from '../duration.ts';

export interface ScheduleSpec {
  readonly dueTime?: unknown;
  readonly period?: unknown;
  readonly ttl?: unknown;
}

export interface Schedule {
  /** ms since the epoch of the first fire. */
  readonly firstAt: number;
  /** ms between fires; undefined: fire once. */
  readonly periodMs: number | undefined;
  /** Fires in all; undefined: no limit. */
  readonly repetitions: number | undefined;
  /** ms since the epoch after which it never fires; undefined: never expires. */
  readonly expiresAt: number | undefined;
}

export type ScheduleResult = { readonly ok: true; readonly schedule: Schedule } | { readonly ok: false; readonly problem: string };

const RFC3339 = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$/;
const REPETITION = /^R(\d*)\/(.+)$/;

export function parseSchedule(spec: ScheduleSpec, now: number): ScheduleResult {
  const due = instantOrDelay(spec.dueTime, now);
  if (due === null) return fail(`dueTime ${JSON.stringify(spec.dueTime)} is neither a duration nor an RFC 3339 time`);
  const firstAt = Math.max(now, due ?? now);

  let periodMs: number | undefined;
  let repetitions: number | undefined;
  const period = spec.period;
  if (period !== undefined && period !== null && period !== '') {
    if (typeof period !== 'string') return fail('period must be a string');
    const rep = REPETITION.exec(period.trim());
    const text = rep === null ? period : (rep[2] as string);
    if (rep !== null && rep[1] !== '') {
      repetitions = Number(rep[1]);
      if (repetitions === 0) return fail(`period ${period} repeats zero times`);
    }
    const ms = strictDuration(text);
    if (ms === undefined) return fail(`period ${JSON.stringify(period)} is neither a duration nor an ISO 8601 repetition like R5/PT1S`);
    if (ms > 0) periodMs = ms;
    else if (rep !== null) return fail(`period ${period} repeats with a zero interval`);
  }
  if (periodMs === undefined) repetitions = 1;

  let expiresAt: number | undefined;
  if (spec.ttl !== undefined && spec.ttl !== null && spec.ttl !== '') {
    // A duration counts from the first fire; an RFC 3339 time is absolute.
    const ttl = instantOrDelay(spec.ttl, firstAt);
    if (ttl === null || ttl === undefined) return fail(`ttl ${JSON.stringify(spec.ttl)} is neither a duration nor an RFC 3339 time`);
    if (ttl <= firstAt) return fail('ttl ends before the first fire');
    expiresAt = ttl;
  }
  return { ok: true, schedule: { firstAt, periodMs, repetitions, expiresAt } };
}

/** Absolute ms for a duration-from-now or RFC 3339 time; undefined when empty, null when invalid. */
function instantOrDelay(v: unknown, now: number): number | undefined | null {
  if (v === undefined || v === null || v === '') return undefined;
  if (typeof v !== 'string') return null;
  const text = v.trim();
  if (RFC3339.test(text)) {
    const at = Date.parse(text);
    return Number.isNaN(at) ? null : at;
  }
  const ms = strictDuration(text);
  return ms === undefined ? null : now + ms;
}

/** A Go or ISO 8601 duration; a bare number is not one here (Dapr would refuse it). */
function strictDuration(text: string): number | undefined {
  const t = text.trim();
  if (t === '0') return 0;
  if (/^\d+(\.\d+)?$/.test(t)) return undefined;
  return parseDuration(t);
}

function fail(problem: string): ScheduleResult {
  return { ok: false, problem };
}
