/**
 * SPIFFE ids as weft uses them, and reading them back out of certificates.
 *
 * Two shapes exist:
 *   - a workload (an app):  `spiffe://<trustDomain>/ns/<namespace>/<appId>` — Dapr's form, the one
 *     access-control policies match on;
 *   - a node (weft itself): `spiffe://<trustDomain>/node/<nodeId>` — what a peer server presents, so a
 *     client can insist on talking to the node it meant to reach rather than to any holder of a
 *     certificate from the same CA.
 *
 * Parsing is strict (SPIFFE's character rules for the trust domain, weft's config rules for the
 * path parts): an id that does not parse is never half-trusted.
 */
import { X509Certificate } from 'node:crypto';
import { WeftError } from '../errors.ts';
import { APP_ID, NAMESPACE } from '../appid.ts';

export interface WorkloadId {
  readonly trustDomain: string;
  readonly namespace: string;
  readonly appId: string;
}

export interface NodeId {
  readonly trustDomain: string;
  readonly nodeId: string;
}

export type AnySpiffeId = ({ readonly kind: 'workload' } & WorkloadId) | ({ readonly kind: 'node' } & NodeId);

/** Dapr's default trust domain, used when none is configured. */
export const DEFAULT_TRUST_DOMAIN = 'public';

/** SPIFFE: lowercase letters, digits, dots, dashes and underscores. */
export const TRUST_DOMAIN = /^[a-z0-9._-]{1,255}$/;
/** The rule every entry applies to app ids and namespaces (src/appid.ts). */
export { APP_ID, NAMESPACE };
/** The same rule config.ts applies to node ids. */
export const NODE_ID = /^[A-Za-z0-9._:-]+$/;

function idError(id: string, problem: string): WeftError {
  return new WeftError('WEFT_CONFIG', `SPIFFE id ${JSON.stringify(id)}: ${problem}`);
}

export function checkTrustDomain(td: string, field = 'trustDomain'): string {
  if (!TRUST_DOMAIN.test(td)) throw new WeftError('WEFT_CONFIG', `${field}: "${td}" is not a valid trust domain (lowercase letters, digits, . - _)`);
  return td;
}

export function formatWorkloadId(id: WorkloadId): string {
  return `spiffe://${id.trustDomain}/ns/${id.namespace}/${id.appId}`;
}

export function formatNodeId(id: NodeId): string {
  return `spiffe://${id.trustDomain}/node/${id.nodeId}`;
}

/** Parses either shape; throws WEFT_CONFIG naming the id when it is neither. */
export function parseAnySpiffeId(id: string): AnySpiffeId {
  const m = /^spiffe:\/\/([^/]+)(\/.*)?$/.exec(id);
  if (m === null) throw idError(id, 'must start with spiffe:// and name a trust domain');
  const trustDomain = m[1] as string;
  if (!TRUST_DOMAIN.test(trustDomain)) throw idError(id, `"${trustDomain}" is not a valid trust domain`);
  const parts = (m[2] ?? '').split('/').slice(1);
  if (parts.length === 3 && parts[0] === 'ns') {
    const [, namespace, appId] = parts as [string, string, string];
    if (!NAMESPACE.test(namespace)) throw idError(id, `"${namespace}" is not a valid namespace`);
    if (!APP_ID.test(appId)) throw idError(id, `"${appId}" is not a valid app id`);
    return { kind: 'workload', trustDomain, namespace, appId };
  }
  if (parts.length === 2 && parts[0] === 'node') {
    const nodeId = parts[1] as string;
    if (!NODE_ID.test(nodeId)) throw idError(id, `"${nodeId}" is not a valid node id`);
    return { kind: 'node', trustDomain, nodeId };
  }
  throw idError(id, 'path must be /ns/<namespace>/<appId> or /node/<nodeId>');
}

/** `parseSpiffeId('spiffe://td/ns/default/orders')` → `{trustDomain: 'td', namespace: 'default', appId: 'orders'}`. */
export function parseSpiffeId(id: string): WorkloadId {
  const parsed = parseAnySpiffeId(id);
  if (parsed.kind !== 'workload') throw idError(id, 'is a node id, not a workload id (spiffe://<td>/ns/<namespace>/<appId>)');
  return { trustDomain: parsed.trustDomain, namespace: parsed.namespace, appId: parsed.appId };
}

export interface SubjectAltNames {
  uris: string[];
  dns: string[];
  ips: string[];
}

/**
 * Splits Node's `subjectaltname` text (`URI:spiffe://a, DNS:x, IP Address:127.0.0.1`). Node quotes
 * a value that holds a comma or quote as a JSON string (`URI:"..."`), so quoted values are read
 * as JSON rather than split blindly.
 */
export function parseSubjectAltName(text: string | undefined): SubjectAltNames {
  const out: SubjectAltNames = { uris: [], dns: [], ips: [] };
  if (!text) return out;
  let i = 0;
  while (i < text.length) {
    const colon = text.indexOf(':', i);
    if (colon < 0) break;
    const type = text.slice(i, colon).trim();
    let value: string;
    let next: number;
    if (text[colon + 1] === '"') {
      // JSON string: find the closing quote that is not escaped.
      let j = colon + 2;
      while (j < text.length && text[j] !== '"') j += text[j] === '\\' ? 2 : 1;
      value = JSON.parse(text.slice(colon + 1, j + 1)) as string;
      next = text.indexOf(', ', j);
    } else {
      next = text.indexOf(', ', colon);
      value = text.slice(colon + 1, next < 0 ? text.length : next);
    }
    if (type === 'URI') out.uris.push(value);
    else if (type === 'DNS') out.dns.push(value);
    else if (type === 'IP Address') out.ips.push(value);
    if (next < 0) break;
    i = next + 2;
  }
  return out;
}

/** A certificate as PEM text, DER bytes, or already parsed. */
export type CertInput = string | Buffer | X509Certificate;

export function toX509(cert: CertInput): X509Certificate {
  return cert instanceof X509Certificate ? cert : new X509Certificate(cert);
}

/**
 * The one SPIFFE id in a certificate's URI SANs, as text. A certificate with none, or with more
 * than one (SPIFFE allows exactly one), yields undefined.
 */
export function spiffeIdOf(cert: CertInput): string | undefined {
  const ids = parseSubjectAltName(toX509(cert).subjectAltName).uris.filter((u) => u.startsWith('spiffe://'));
  return ids.length === 1 ? ids[0] : undefined;
}
