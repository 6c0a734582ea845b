/**
 * App ids and namespaces: one rule, applied wherever an id enters weft (the node's config, the
 * HTTP API's path, `dapr-app-id` header and basic-auth forms, the gRPC API, SPIFFE ids, access
 * policies).
 *
 * Dapr's rule in Kubernetes is an RFC 1123 DNS label (at most 63 characters); in self-hosted mode
 * it also takes upper case and `_`. weft takes the self-hosted set with the DNS label's length:
 * ASCII letters, digits, `-` and `_`, starting with a letter or digit, at most 63 characters. A
 * target names `appId` or `appId.namespace` (so an id has no dot). Anything else (non-ASCII,
 * control characters, spaces, a second dot, 10 KB of text) is refused before it reaches routing,
 * so a client cannot make the node watch, cache or label an id that can never be served.
 */
import { WeftError } from './errors.ts';

/** The longest app id or namespace (a DNS label). */
export const ID_MAX_LENGTH = 63;
export const APP_ID = /^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$/;
export const NAMESPACE = APP_ID;

export interface Target {
  readonly appId: string;
  readonly namespace: string;
}

/** A client-given text shown in an error: quoted, control characters escaped, cut short. */
export function shown(text: string, max = 64): string {
  const cut = text.length > max ? `${text.slice(0, max)}…` : text;
  return JSON.stringify(cut).replace(/[\u007f-\u009f\u2028\u2029]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

/**
 * Parses a call's target, `appId` or `appId.namespace` (the caller's namespace when bare).
 * Returns the target, or the error to answer with: WEFT_NO_APP_ID for an empty one,
 * WEFT_BAD_APP_ID for anything that breaks the rule.
 */
export function parseTarget(raw: string, defaultNamespace: string): Target | WeftError {
  if (raw === '') return new WeftError('WEFT_NO_APP_ID', 'no app id in the request');
  const dot = raw.indexOf('.');
  const appId = dot === -1 ? raw : raw.slice(0, dot);
  const namespace = dot === -1 ? defaultNamespace : raw.slice(dot + 1);
  if (!APP_ID.test(appId) || !NAMESPACE.test(namespace)) {
    return new WeftError('WEFT_BAD_APP_ID', `invalid app id ${shown(raw)}: use appId or appId.namespace, each 1 to ${ID_MAX_LENGTH} ASCII letters, digits, - or _, starting with a letter or digit`);
  }
  return { appId, namespace };
}

export function isValidAppId(id: string): boolean {
  return APP_ID.test(id);
}
