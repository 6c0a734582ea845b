/**
 * `weft ca ...`: create a CA, issue node and app certificates from it, inspect certificates.
 * Human-readable output by default, one JSON document with `--json`. Exit codes: 0 done,
 * 1 the operation failed (bad CA directory, refused overwrite, ...), 2 the command line is wrong.
 */
import { chmodSync, existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { parseDuration } from '../duration.ts';
import { WeftError } from '../errors.ts';
import { CaError, initCa, inspectCert, issueNodeCert, issueWorkloadCert, loadCa, splitPemCertificates, type CertInfo } from '../security/ca.ts';
import { DEFAULT_TRUST_DOMAIN } from '../security/spiffe.ts';

export interface CliOut {
  json: boolean;
  write: (s: string) => void;
}

const USAGE = {
  ca: `Usage: weft ca <command> [options]

Manage weft's certificate authority.

Commands:
  init      create a root CA and an issuer in a directory
  issue     issue a node or app certificate from a CA directory
  inspect   show what a certificate file holds

Run "weft ca <command> --help" for a command's options. Every command takes --json.
`,
  init: `Usage: weft ca init --dir DIR [--trust-domain TD] [--force] [--json]

Creates root.crt/root.key (10 years), issuer.crt/issuer.key (1 year, signed by the root) and
trust-bundle.pem in DIR. Private keys are written with mode 0600.

Options:
  --dir DIR            directory for the CA files (created if missing)
  --trust-domain TD    SPIFFE trust domain (default: ${DEFAULT_TRUST_DOMAIN})
  --force              replace a CA that already exists in DIR
  --json               print the result as JSON
`,
  issue: `Usage: weft ca issue --dir DIR --out PREFIX (--node-id ID [--dns NAME]... [--ip ADDR]... | --app-id ID [--namespace NS]) [--ttl 24h] [--force] [--json]

Issues a certificate signed by the issuer in DIR and writes PREFIX.crt (the certificate followed
by the issuer) and PREFIX.key (mode 0600). A node certificate carries spiffe://<td>/node/<id>, an
app certificate spiffe://<td>/ns/<namespace>/<app-id>; both are valid for server and client auth.

Options:
  --dir DIR            CA directory made by "weft ca init"
  --out PREFIX         where to write PREFIX.crt and PREFIX.key
  --node-id ID         issue a node certificate
  --dns NAME           DNS name for a node certificate (repeatable)
  --ip ADDR            IP address for a node certificate (repeatable)
  --app-id ID          issue an app (workload) certificate
  --namespace NS       the app's namespace (default: default)
  --ttl DURATION       lifetime, e.g. 24h, 90m, P7D (default: 24h)
  --force              overwrite existing PREFIX.crt / PREFIX.key
  --json               print the result as JSON
`,
  inspect: `Usage: weft ca inspect FILE [--json]

Shows subject, issuer, SANs (SPIFFE id, DNS names, IPs), validity, serial number, SHA-256
fingerprint and whether it is a CA, for each certificate in a PEM file.
`,
} as const;

class UsageError extends Error {}

function parse(args: string[], options: ParseArgsConfig['options'], positionals = 0): ReturnType<typeof parseArgs> {
  let parsed;
  try {
    parsed = parseArgs({ args, options: { ...options, help: { type: 'boolean', short: 'h' }, json: { type: 'boolean' } }, allowPositionals: positionals > 0, strict: true });
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
  if (parsed.positionals.length > positionals) throw new UsageError(`unexpected argument: ${parsed.positionals[positionals]}`);
  return parsed;
}

function str(values: Record<string, unknown>, name: string): string | undefined {
  const v = values[name];
  return typeof v === 'string' ? v : undefined;
}

function required(values: Record<string, unknown>, name: string): string {
  const v = str(values, name);
  if (v === undefined || v === '') throw new UsageError(`--${name} is required`);
  return v;
}

function describeCert(info: CertInfo, indent = ''): string {
  const lines = [
    `subject:      ${info.subject}`,
    `issuer:       ${info.issuer}`,
    `SPIFFE id:    ${info.spiffeId ?? '(none)'}`,
    ...(info.sans.dns.length ? [`DNS names:    ${info.sans.dns.join(', ')}`] : []),
    ...(info.sans.ips.length ? [`IPs:          ${info.sans.ips.join(', ')}`] : []),
    ...(info.sans.uris.filter((u) => u !== info.spiffeId).length ? [`other URIs:   ${info.sans.uris.filter((u) => u !== info.spiffeId).join(', ')}`] : []),
    `valid:        ${info.notBefore} .. ${info.notAfter}${validity(info)}`,
    `serial:       ${info.serialNumber}`,
    `sha256:       ${info.sha256}`,
    `CA:           ${info.isCa ? 'yes' : 'no'}`,
  ];
  return lines.map((l) => indent + l).join('\n') + '\n';
}

function validity(info: CertInfo): string {
  const now = Date.now();
  if (Date.parse(info.notAfter) <= now) return ' (EXPIRED)';
  if (Date.parse(info.notBefore) > now) return ' (NOT YET VALID)';
  const hours = (Date.parse(info.notAfter) - now) / 3_600_000;
  return hours >= 48 ? ` (${Math.floor(hours / 24)} days left)` : ` (${hours.toFixed(1)} hours left)`;
}

function init(args: string[], out: CliOut): number {
  const { values } = parse(args, { dir: { type: 'string' }, 'trust-domain': { type: 'string' }, force: { type: 'boolean' } });
  if (values['help']) return help(out, 'init');
  const dir = required(values, 'dir');
  const ca = initCa(dir, { trustDomain: str(values, 'trust-domain') ?? DEFAULT_TRUST_DOMAIN, force: values['force'] === true });
  const root = inspectCert(ca.rootCertPem);
  const issuer = inspectCert(ca.issuerCertPem);
  if (out.json) {
    out.write(JSON.stringify({ dir: ca.dir, trustDomain: ca.trustDomain, files: ca.files, root, issuer }, null, 2) + '\n');
  } else {
    out.write(`Created a CA for trust domain ${ca.trustDomain} in ${ca.dir}\n\n`);
    out.write(`root (valid until ${root.notAfter}):\n  sha256 ${root.sha256}\n`);
    out.write(`issuer (valid until ${issuer.notAfter}):\n  sha256 ${issuer.sha256}\n\n`);
    out.write(`Files:\n${ca.files.map((f) => `  ${f}`).join('\n')}\n\n`);
    out.write('Keep root.key offline if you can: nodes need only issuer.crt, issuer.key and trust-bundle.pem.\n');
  }
  return 0;
}

function issue(args: string[], out: CliOut): number {
  const { values } = parse(args, {
    dir: { type: 'string' }, out: { type: 'string' }, 'node-id': { type: 'string' }, dns: { type: 'string', multiple: true },
    ip: { type: 'string', multiple: true }, 'app-id': { type: 'string' }, namespace: { type: 'string' }, ttl: { type: 'string' },
    force: { type: 'boolean' },
  });
  if (values['help']) return help(out, 'issue');
  const dir = required(values, 'dir');
  const prefix = required(values, 'out');
  const nodeId = str(values, 'node-id');
  const appId = str(values, 'app-id');
  const dns = (values['dns'] as string[] | undefined) ?? [];
  const ips = (values['ip'] as string[] | undefined) ?? [];
  if ((nodeId === undefined) === (appId === undefined)) throw new UsageError('give exactly one of --node-id and --app-id');
  if (appId !== undefined && (dns.length > 0 || ips.length > 0)) throw new UsageError('--dns and --ip apply to node certificates (--node-id) only');
  if (nodeId !== undefined && values['namespace'] !== undefined) throw new UsageError('--namespace applies to app certificates (--app-id) only');
  const ttlText = str(values, 'ttl') ?? '24h';
  const ttlMs = parseDuration(ttlText);
  if (ttlMs === undefined || ttlMs <= 0) throw new UsageError(`--ttl: "${ttlText}" is not a positive duration (e.g. 24h, 90m, P7D)`);

  const certPath = `${prefix}.crt`;
  const keyPath = `${prefix}.key`;
  const existing = [certPath, keyPath].filter((p) => existsSync(p));
  if (existing.length > 0 && values['force'] !== true) throw new CaError('CA_EXISTS', existing.join(', '), 'already exists; pass --force to overwrite');

  const ca = loadCa(dir);
  const cert = nodeId !== undefined
    ? issueNodeCert(ca, { nodeId, dnsNames: dns, ipAddresses: ips, ttlMs })
    : issueWorkloadCert(ca, { appId: appId as string, namespace: str(values, 'namespace') ?? 'default', ttlMs });
  writeFileSync(certPath, cert.chainPem);
  writeFileSync(keyPath, cert.keyPem, { mode: 0o600 });
  chmodSync(keyPath, 0o600);
  const info = inspectCert(cert.certPem);
  if (out.json) {
    out.write(JSON.stringify({ cert: certPath, key: keyPath, trustBundle: join(dir, 'trust-bundle.pem'), certificate: info }, null, 2) + '\n');
  } else {
    out.write(`Issued ${info.spiffeId} (valid until ${info.notAfter})\n  certificate: ${certPath}\n  key:         ${keyPath}\n  trust:       ${join(dir, 'trust-bundle.pem')}\n`);
  }
  return 0;
}

function inspect(args: string[], out: CliOut): number {
  const { values, positionals } = parse(args, {}, 1);
  if (values['help']) return help(out, 'inspect');
  const file = positionals[0];
  if (file === undefined) throw new UsageError('give the certificate file to inspect');
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new CaError('CA_UNREADABLE', file, `cannot be read: ${(err as Error).message}`, err);
  }
  const certs = splitPemCertificates(text, file).map((c) => inspectCert(c));
  if (out.json) {
    out.write(JSON.stringify({ file, certificates: certs }, null, 2) + '\n');
  } else {
    certs.forEach((c, i) => {
      if (certs.length > 1) out.write(`${i > 0 ? '\n' : ''}certificate ${i + 1} of ${certs.length}:\n`);
      out.write(describeCert(c, certs.length > 1 ? '  ' : ''));
    });
  }
  return 0;
}

function help(out: CliOut, topic: keyof typeof USAGE): number {
  out.write(USAGE[topic]);
  return 0;
}

const COMMANDS = { init, issue, inspect } as const;

/** Runs `weft ca <argv...>`; returns the process exit code. */
export async function caCommand(argv: string[], out: CliOut): Promise<number> {
  const [name, ...rest] = argv;
  const json = out.json || argv.includes('--json');
  const o: CliOut = { json, write: out.write };
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') return help(o, 'ca');
  const command = (COMMANDS as Record<string, (a: string[], o: CliOut) => number>)[name];
  try {
    if (command === undefined) throw new UsageError(`unknown command "${name}" (known: ${Object.keys(COMMANDS).join(', ')})`);
    return command(rest, o);
  } catch (err) {
    if (err instanceof UsageError) {
      if (json) o.write(JSON.stringify({ error: { code: 'USAGE', message: err.message } }) + '\n');
      else o.write(`weft ca: ${err.message}\n\n${USAGE[command === undefined ? 'ca' : (name as keyof typeof USAGE)]}`);
      return 2;
    }
    if (err instanceof WeftError) {
      const reason = err instanceof CaError ? err.reason : undefined;
      if (json) o.write(JSON.stringify({ error: { code: err.code, ...(reason ? { reason } : {}), message: err.message } }) + '\n');
      else o.write(`weft ca ${name}: ${err.message}\n`);
      return 1;
    }
    throw err;
  }
}
