/**
 * The method path of a service invocation, normalized once so that the access policy and the
 * target app judge the same path.
 *
 * A method (`orders/42`, everything after `/method/`, or the whole path of the `dapr-app-id`
 * forms, or InvokeService's `message.method`) is read as URL path text, RFC 3986 style, the way
 * Dapr normalizes operation paths for access control: percent-escapes are decoded once, empty and
 * `.` segments are dropped, `..` removes the segment before it. The result is written back in
 * one canonical encoding (UTF-8, every character outside RFC 3986's unreserved, `!$&'()*+,=:@`
 * percent-encoded), and that is both what the policy matches and what the app is sent.
 *
 * What different servers could read in different ways is refused (WEFT_BAD_PATH, 400), not
 * guessed at: an encoded slash (`%2F`) or backslash (`%5C`, `\`), a control character (raw or
 * encoded, `%00` included), a double encoding (`%252F`, which decodes to another escape), a `%`
 * not followed by two hex digits, bytes that are not UTF-8, `..` that would climb above the
 * method root, and methods longer than MAX_METHOD_LENGTH. A `;` is kept but sent encoded
 * (`%3B`), so no app server can take it for a path parameter the policy did not see.
 *
 * Normalizing a normalized path changes nothing, so each node can apply it again.
 */
import { WeftError } from './errors.ts';
import { shown } from './appid.ts';

export const MAX_METHOD_LENGTH = 8192;

export interface MethodPath {
  /** The canonical method: encoded, no leading slash, a trailing one kept. */
  readonly path: string;
  /** The decoded segments (no empty ones), for matching. */
  readonly segments: readonly string[];
}

const utf8 = new TextDecoder('utf-8', { fatal: true });
const encoder = new TextEncoder();
/** Characters RFC 3986 allows raw in a segment that encodeURIComponent escapes anyway (`;` left escaped). */
const KEPT = /%(24|26|2B|2C|3D|3A|40)/g;

function bad(raw: string, why: string): WeftError {
  return new WeftError('WEFT_BAD_PATH', `method path ${shown(raw)} cannot be normalized unambiguously: ${why}`);
}

export function normalizeMethod(raw: string): MethodPath | WeftError {
  if (raw.length > MAX_METHOD_LENGTH) return bad(raw, `it is longer than ${MAX_METHOD_LENGTH} characters`);
  // Fast path: plain ASCII with no escapes, dot segments or doubled slashes is already canonical.
  if (/^(?:[A-Za-z0-9\-._~!$&'()*+,=:@]+(?:\/|$))*$/.test(raw) && !/(?:^|\/)\.{1,2}(?:\/|$)/.test(raw)) {
    const segments = raw.split('/');
    if (segments[segments.length - 1] === '') segments.pop();
    return { path: raw, segments };
  }
  const segments: string[] = [];
  for (const seg of raw.split('/')) {
    const decoded = decodeSegment(seg);
    if (decoded instanceof Error) return bad(raw, decoded.message);
    if (decoded === '' || decoded === '.') continue;
    if (decoded === '..') {
      if (segments.length === 0) return bad(raw, '".." climbs above the method root');
      segments.pop();
      continue;
    }
    segments.push(decoded);
  }
  const trailing = raw.endsWith('/') && segments.length > 0 ? '/' : '';
  const path = segments.map((s) => encodeURIComponent(s).replace(KEPT, (_m, hex: string) => String.fromCharCode(parseInt(hex, 16)))).join('/') + trailing;
  return { path, segments };
}

function decodeSegment(seg: string): string | Error {
  if (!seg.includes('%')) return check(seg);
  const bytes: number[] = [];
  for (let i = 0; i < seg.length; i++) {
    const c = seg[i] as string;
    if (c === '%') {
      const hex = seg.slice(i + 1, i + 3);
      if (!/^[0-9A-Fa-f]{2}$/.test(hex)) return new Error('a "%" is not followed by two hex digits');
      bytes.push(parseInt(hex, 16));
      i += 2;
    } else {
      for (const b of encoder.encode(c)) bytes.push(b);
    }
  }
  let text: string;
  try {
    text = utf8.decode(new Uint8Array(bytes));
  } catch {
    return new Error('its escapes are not UTF-8');
  }
  if (/%[0-9A-Fa-f]{2}/.test(text)) return new Error('it is encoded twice (an escape decodes to another escape)');
  return check(text);
}

function check(text: string): string | Error {
  if (text.includes('/')) return new Error('an encoded "/" (%2F) inside a segment');
  if (text.includes('\\')) return new Error('a backslash');
  // eslint-disable-next-line no-control-regex
  if (/[\u0000-\u001f\u007f-\u009f]/.test(text)) return new Error('a control character');
  // Lone surrogates cannot be sent as UTF-8.
  if (/\p{Surrogate}/u.test(text)) return new Error('a lone surrogate');
  return text;
}
