/**
 * The `weft` command line. Output for people by default, one JSON document (or JSON line per
 * event) with `--json`; errors go to stderr with their stable code, and the exit code is 0 on
 * success, 1 on a failure at run time, 2 on bad usage or config.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { request } from 'undici';
import { WeftError } from '../errors.ts';
import { DEFAULTS, loadConfigFile, readConfigDocument, validateConfig } from '../config.ts';
import { WeftNode, type Listener } from '../node.ts';
import { createLogger } from '../observability/log.ts';
import { COMPILED } from '../paths.ts';

interface Out {
  readonly json: boolean;
  write(text: string): void;
}

const stdout: Out = { json: false, write: (t) => process.stdout.write(t) };

const HELP: Record<string, string> = {
  main: `weft: an actor-style invocation fabric that serves Dapr's service invocation API

Usage: weft <command> [options]

Commands:
  start    run a node for this host, serving the apps in its YAML config
  run      run a node serving one app (like \`dapr run\`), optionally starting the app
  invoke   call an app through a running node
  status   show a running node's metadata
  ca       manage weft's certificate authority (init, issue, inspect)

Run \`weft <command> --help\` for a command's options. Every command takes --json.
`,
  start: `Usage: weft start [--config FILE] [--json]

Runs a node for this host serving the apps listed in FILE (YAML; default ./weft.yaml).
The config is validated at start; a bad field is named in the error.
Stops gracefully on SIGTERM or SIGINT.

Options:
  --config FILE   the node's YAML config (default: weft.yaml)
  --json          print events as JSON lines on stdout
`,
  run: `Usage: weft run --app-id ID [options] [-- CMD ARGS...]

Runs a node serving one app. With CMD, starts it with DAPR_HTTP_PORT, DAPR_GRPC_PORT,
APP_PORT, APP_ID and APP_PROTOCOL set, stops the node when CMD exits and stops CMD when the node stops.
Without --app-port the node serves a caller-only app id. Ports not given use the Dapr
default when it is free, else any free port (the ready line says which).

Options:
  --app-id ID          the app's id (required)
  --app-port N         the port the app listens on
  --enable-app-health-check     probe the app; while it fails, route no call to it (Dapr's flag)
  --app-health-check-path P     the path probed with GET (default /healthz)
  --app-health-probe-interval S seconds between probes (default 5)
  --app-health-probe-timeout MS probe timeout in milliseconds (default 500)
  --app-health-threshold N      failures in a row before the app counts as unhealthy (default 3)
  --app-protocol P     how the node calls the app: http (default), https, h2c, grpc (Dapr's
                       AppCallback) or grpcs; with TLS the app's certificate is not verified
  --namespace NS       the app's namespace (default: default)
  --http-port N        Dapr HTTP API port (default 3500)
  --grpc-port N        Dapr gRPC API port (default 50001)
  --peer-port N        node-to-node port (default 50002)
  --metrics-port N     Prometheus metrics port (default 9090; 0 = any free port)
  --workers N          outbound worker threads (0 = on the main thread; default ${DEFAULTS.workers})
  --resolver TYPE      name resolution: local (default), static or consul
  --registry FILE      the local resolver's registry file (default ~/.weft/registry.sqlite)
  --node-id ID         this node's id (default <hostname>-<peer port>)
  --advertise-address A  the address other nodes use to reach this node (default: the peer host)
  --ca-dir DIR         CA for mTLS between nodes (made by \`weft ca init\`; or WEFT_CA_DIR).
                       Default with the local resolver: <registry dir>/ca, created on first use.
                       Required with the static and consul resolvers.
  --trust-domain TD    SPIFFE trust domain of this node's certificates (default: the CA's)
  --insecure-plaintext no TLS between nodes: calls are neither encrypted nor authenticated, and
                       access policies are not enforced (one trusted host only; logged at start)
  --resources-path DIR Dapr Component files (repeatable): the actor state store, state.sqlite
                       or state.postgresql with actorStateStore "true" (default with the local
                       resolver: SQLite beside the registry)
  --config FILE        a YAML config to start from (flags override it)
  --log-level LEVEL    debug, info, warn, error or silent (default info)
  --json               print events as JSON lines on stdout
`,
  invoke: `Usage: weft invoke --app-id ID --method METHOD [options]

Calls METHOD on app ID through the node at --http-port and prints the answer.

Options:
  --app-id ID        the target app (appId or appId.namespace)
  --method METHOD    the method (path below the app's root)
  --verb VERB        HTTP verb (default POST)
  --data TEXT        request body
  --header K:V       a request header (repeatable)
  --http-port N      the node's HTTP API port (default 3500, or DAPR_HTTP_PORT)
  --api-token TOKEN  the node's API token (default: DAPR_API_TOKEN)
  --json             print {status, headers, body} as JSON
`,
  status: `Usage: weft status [--http-port N] [--api-token TOKEN] [--json]

Prints the metadata of the node at --http-port (default 3500, or DAPR_HTTP_PORT).
Exits 1 with a clear error when nothing answers there, when the node wants an API
token it was not given (or refuses the one given), or when what answers is not weft.

Options:
  --http-port N        the node's HTTP API port (default 3500, or DAPR_HTTP_PORT)
  --api-token TOKEN    the node's API token (default: DAPR_API_TOKEN, as Dapr's CLI)
  --json               print the metadata (or {"error": {code, message}}) as JSON
`,
};

export async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  const json = rest.includes('--json');
  const out: Out = { ...stdout, json };
  try {
    switch (command) {
      case 'start': return await startCommand(rest, out);
      case 'run': return await runCommand(rest, out);
      case 'invoke': return await invokeCommand(rest, out);
      case 'status': return await statusCommand(rest, out);
      case 'ca': return await caCommand(rest, out);
      case undefined: case '--help': case '-h': case 'help':
        out.write(HELP['main'] as string);
        return command === undefined ? 2 : 0;
      default:
        return fail(out, new WeftError('WEFT_CONFIG', `unknown command "${command}" (try weft --help)`), 2);
    }
  } catch (err) {
    const e = WeftError.from(err);
    return fail(out, e, e.code === 'WEFT_CONFIG' ? 2 : 1);
  }
}

function fail(out: Out, err: WeftError, code: number): number {
  if (out.json) process.stdout.write(`${JSON.stringify({ error: { code: err.code, message: err.message } })}\n`);
  else process.stderr.write(`weft: ${err.code === 'WEFT_CONFIG' ? 'config error: ' : ''}${err.message} [${err.code}]\n`);
  return code;
}

function parse<T extends NonNullable<ParseArgsConfig['options']>>(args: string[], options: T, help: string, out: Out) {
  try {
    const parsed = parseArgs({ args, options: { ...options, help: { type: 'boolean', short: 'h' }, json: { type: 'boolean' } }, allowPositionals: false, strict: true });
    const values = parsed.values as Record<string, string | boolean | string[] | undefined>;
    if (values['help'] === true) {
      out.write(help);
      return null;
    }
    return values;
  } catch (err) {
    throw new WeftError('WEFT_CONFIG', `${(err as Error).message.replace(/\. To specify.*$/, '')} (see --help)`);
  }
}

async function startCommand(args: string[], out: Out): Promise<number> {
  const v = parse(args, { config: { type: 'string' } }, HELP['start'] as string, out);
  if (v === null) return 0;
  const config = loadConfigFile((v['config'] as string | undefined) ?? 'weft.yaml');
  const node = await WeftNode.start(config);
  announce(node, out);
  await untilSignal(node, null);
  return 0;
}

function intFlag(v: Record<string, unknown>, name: string): number | undefined {
  const raw = v[name];
  if (raw === undefined) return undefined;
  if (typeof raw !== 'string' || !/^\d+$/.test(raw) || Number(raw) > 65535) throw new WeftError('WEFT_CONFIG', `--${name}: must be a port number from 0 to 65535 (got ${String(raw)})`);
  return Number(raw);
}

async function runCommand(args: string[], out: Out): Promise<number> {
  const dash = args.indexOf('--');
  const own = dash === -1 ? args : args.slice(0, dash);
  const cmd = dash === -1 ? [] : args.slice(dash + 1);
  const v = parse(own, {
    'app-id': { type: 'string' }, 'app-port': { type: 'string' }, 'app-protocol': { type: 'string' }, namespace: { type: 'string' },
    'http-port': { type: 'string' }, 'grpc-port': { type: 'string' }, 'peer-port': { type: 'string' }, 'metrics-port': { type: 'string' },
    workers: { type: 'string' }, resolver: { type: 'string' }, registry: { type: 'string' }, config: { type: 'string' },
    'log-level': { type: 'string' }, 'node-id': { type: 'string' }, 'advertise-address': { type: 'string' },
    'ca-dir': { type: 'string' }, 'trust-domain': { type: 'string' }, 'insecure-plaintext': { type: 'boolean' },
    'resources-path': { type: 'string', multiple: true },
    'enable-app-health-check': { type: 'boolean' }, 'app-health-check-path': { type: 'string' },
    'app-health-probe-interval': { type: 'string' }, 'app-health-probe-timeout': { type: 'string' }, 'app-health-threshold': { type: 'string' },
  }, HELP['run'] as string, out);
  if (v === null) return 0;
  const appId = v['app-id'];
  if (typeof appId !== 'string') throw new WeftError('WEFT_CONFIG', '--app-id: is required (see weft run --help)');
  // The config file as written, with the flags on top: every field the file sets and no
  // flag overrides reaches the node unchanged.
  const doc = typeof v['config'] === 'string' ? readConfigDocument(v['config']) : {};
  if (typeof doc !== 'object' || doc === null || Array.isArray(doc)) validateConfig(doc);
  const raw = structuredClone(doc) as Record<string, unknown>;
  const section = (key: string): Record<string, unknown> => {
    const cur = raw[key];
    const obj = typeof cur === 'object' && cur !== null && !Array.isArray(cur) ? (cur as Record<string, unknown>) : {};
    raw[key] = obj;
    return obj;
  };
  // A port given by flag or file is kept (or the node fails to bind it); one left to its Dapr
  // default is only a preference: the node binds it if free, else any free port (node.ts claim).
  const portFallback: Listener[] = [];
  const port = (key: Listener, flag: string, fallback: number): void => {
    const s = section(key);
    const given = intFlag(v, flag);
    if (given !== undefined) s['port'] = given;
    else if (s['port'] === undefined) {
      s['port'] = fallback;
      portFallback.push(key);
    }
  };
  port('http', 'http-port', DEFAULTS.httpPort);
  port('grpc', 'grpc-port', DEFAULTS.grpcPort);
  port('peer', 'peer-port', DEFAULTS.peerPort);
  port('metrics', 'metrics-port', DEFAULTS.metricsPort);
  if (v['node-id'] !== undefined) raw['nodeId'] = v['node-id'];
  if (v['advertise-address'] !== undefined) raw['advertiseAddress'] = v['advertise-address'];
  if (v['workers'] !== undefined) raw['workers'] = v['workers'];
  if (v['log-level'] !== undefined) raw['logLevel'] = v['log-level'];
  if (v['resources-path'] !== undefined) raw['resourcesPath'] = v['resources-path'];
  // weft run serves one app: the file's entry for it (if any), with the flags on top
  const fileApps = Array.isArray(raw['apps']) ? (raw['apps'] as Array<Record<string, unknown>>) : [];
  const fileApp = fileApps.find((a) => typeof a === 'object' && a !== null && a['appId'] === appId) ?? {};
  raw['apps'] = [{
    ...fileApp, appId,
    ...(v['namespace'] !== undefined ? { namespace: v['namespace'] } : {}),
    ...(v['app-port'] !== undefined ? { appPort: v['app-port'] } : {}),
    ...(v['enable-app-health-check'] === true ? { enableAppHealthCheck: true } : {}),
    ...(v['app-health-check-path'] !== undefined ? { appHealthCheckPath: v['app-health-check-path'] } : {}),
    ...(v['app-health-probe-interval'] !== undefined ? { appHealthProbeInterval: v['app-health-probe-interval'] } : {}),
    ...(v['app-health-probe-timeout'] !== undefined ? { appHealthProbeTimeout: v['app-health-probe-timeout'] } : {}),
    ...(v['app-health-threshold'] !== undefined ? { appHealthThreshold: v['app-health-threshold'] } : {}),
    ...(v['app-protocol'] !== undefined ? { appProtocol: v['app-protocol'] } : {}),
  }];
  const fileResolver = typeof raw['resolver'] === 'string' ? { type: raw['resolver'] } : section('resolver');
  const resolverType = (v['resolver'] as string | undefined) ?? (typeof fileResolver['type'] === 'string' ? fileResolver['type'] : DEFAULTS.resolver);
  const resolverOptions = { ...(fileResolver['type'] === resolverType || (fileResolver['type'] === undefined && resolverType === DEFAULTS.resolver) ? (fileResolver[resolverType] as Record<string, unknown> | undefined) : {}) };
  if (typeof v['registry'] === 'string') resolverOptions['path'] = v['registry'];
  raw['resolver'] = { type: resolverType, [resolverType]: resolverOptions };
  const security = section('security');
  if (v['insecure-plaintext'] === true && v['ca-dir'] !== undefined) throw new WeftError('WEFT_CONFIG', '--insecure-plaintext: cannot be used with --ca-dir');
  if (v['insecure-plaintext'] === true) {
    security['plaintext'] = true;
    delete security['caDir'];
  }
  if (v['ca-dir'] !== undefined) {
    security['caDir'] = v['ca-dir'];
    delete security['plaintext'];
  }
  if (v['trust-domain'] !== undefined) security['trustDomain'] = v['trust-domain'];
  const config = validateConfig(raw);
  const node = await WeftNode.start(config, { logger: createLogger(config.logLevel), portFallback });
  announce(node, out);
  let child: ChildProcess | null = null;
  if (cmd.length > 0) {
    const app = config.apps[0];
    child = spawn(cmd[0] as string, cmd.slice(1), {
      stdio: 'inherit',
      env: {
        ...process.env,
        DAPR_HTTP_PORT: String(node.ports.http),
        ...(node.ports.grpc === null ? {} : { DAPR_GRPC_PORT: String(node.ports.grpc) }),
        APP_ID: appId,
        ...(app?.appPort !== undefined ? { APP_PORT: String(app.appPort) } : {}),
        // Dapr's CLI sets no variable for the protocol; weft tells the app which one it will speak.
        ...(app !== undefined ? { APP_PROTOCOL: app.appProtocol } : {}),
      },
    });
  }
  return untilSignal(node, child);
}

function announce(node: WeftNode, out: Out): void {
  const event = { event: 'ready', nodeId: node.nodeId, http: node.ports.http, grpc: node.ports.grpc, peer: node.ports.peer, metrics: node.ports.metrics, apps: node.config.apps.map((a) => a.appId), workers: node.config.workers, resolver: node.config.resolver.type, peerTls: node.config.security.plaintext ? 'plaintext' : 'mtls', build: COMPILED ? 'compiled' : 'source' };
  if (out.json) out.write(`${JSON.stringify(event)}\n`);
  else out.write(`weft: node ${node.nodeId} ready: http 127.0.0.1:${node.ports.http}${node.ports.grpc === null ? '' : `, grpc :${node.ports.grpc}`}, peer :${node.ports.peer}${node.ports.metrics === null ? '' : `, metrics :${node.ports.metrics}`}; apps ${event.apps.join(', ') || '(none)'}; ${node.config.workers === 0 ? 'outbound inline' : `${node.config.workers} outbound workers`}; resolver ${event.resolver}; ${event.peerTls === 'mtls' ? 'mTLS between nodes' : 'PLAINTEXT between nodes'}\n`);
}

/** Runs until SIGTERM/SIGINT or the child exits; stops the node and the child either way. */
function untilSignal(node: WeftNode, child: ChildProcess | null): Promise<number> {
  return new Promise((resolve) => {
    let stopping = false;
    const stop = async (code: number, why: string): Promise<void> => {
      if (stopping) return;
      stopping = true;
      node.log.info({ why }, 'weft node stopping');
      if (child !== null && child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      await node.stop().catch((err: unknown) => node.log.error({ err: (err as Error).message }, 'stop failed'));
      if (child !== null && child.exitCode === null && child.signalCode === null) {
        const killer = setTimeout(() => child.kill('SIGKILL'), 5000);
        await new Promise((r) => child.once('exit', r));
        clearTimeout(killer);
      }
      resolve(code);
    };
    // `on`, not `once`: a signal often arrives twice (Ctrl-C reaches the whole process
    // group; npx and timeout forward theirs), and a second one must not kill the node
    // before it has stopped its app.
    process.on('SIGTERM', () => void stop(0, 'SIGTERM'));
    process.on('SIGINT', () => void stop(0, 'SIGINT'));
    child?.once('exit', (code, signal) => void stop(code ?? (signal === null ? 0 : 1), `app exited (${code ?? signal})`));
    child?.once('error', (err) => {
      node.log.error({ err: err.message }, 'could not start the app command');
      void stop(1, 'app failed to start');
    });
  });
}

function apiPort(v: Record<string, unknown>): number {
  return intFlag(v, 'http-port') ?? (Number(process.env['DAPR_HTTP_PORT']) || DEFAULTS.httpPort);
}

async function invokeCommand(args: string[], out: Out): Promise<number> {
  const v = parse(args, {
    'app-id': { type: 'string' }, method: { type: 'string' }, verb: { type: 'string' }, data: { type: 'string' },
    header: { type: 'string', multiple: true }, 'http-port': { type: 'string' }, 'api-token': { type: 'string' },
  }, HELP['invoke'] as string, out);
  if (v === null) return 0;
  if (typeof v['app-id'] !== 'string') throw new WeftError('WEFT_CONFIG', '--app-id: is required');
  if (typeof v['method'] !== 'string') throw new WeftError('WEFT_CONFIG', '--method: is required');
  const headers: Record<string, string> = {};
  for (const h of (v['header'] as string[] | undefined) ?? []) {
    const colon = h.indexOf(':');
    if (colon <= 0) throw new WeftError('WEFT_CONFIG', `--header: "${h}" is not NAME:VALUE`);
    headers[h.slice(0, colon).trim()] = h.slice(colon + 1).trim();
  }
  const token = apiToken(v);
  if (token !== undefined) headers['dapr-api-token'] = token;
  const verb = ((v['verb'] as string | undefined) ?? 'POST').toUpperCase();
  const url = `http://127.0.0.1:${apiPort(v)}/v1.0/invoke/${encodeURIComponent(v['app-id'])}/method/${(v['method']).replace(/^\//, '')}`;
  const res = await request(url, { method: verb as 'POST', headers, body: (v['data'] as string | undefined) ?? null }).catch((err: unknown) => {
    throw new WeftError('WEFT_NODE_UNREACHABLE', `no weft node answers at ${url}: ${(err as Error).message}`);
  });
  const body = await res.body.text();
  if (out.json) out.write(`${JSON.stringify({ status: res.statusCode, headers: res.headers, body })}\n`);
  else out.write(`${res.statusCode}\n${body}${body.endsWith('\n') ? '' : '\n'}`);
  return res.statusCode < 400 ? 0 : 1;
}

/** The API token: --api-token, else DAPR_API_TOKEN (as Dapr's CLI), else none. */
function apiToken(v: Record<string, unknown>): string | undefined {
  const flag = v['api-token'];
  if (typeof flag === 'string') return flag;
  return process.env['DAPR_API_TOKEN'] || undefined;
}

async function statusCommand(args: string[], out: Out): Promise<number> {
  const v = parse(args, { 'http-port': { type: 'string' }, 'api-token': { type: 'string' } }, HELP['status'] as string, out);
  if (v === null) return 0;
  const url = `http://127.0.0.1:${apiPort(v)}/v1.0/metadata`;
  const token = apiToken(v);
  const headers: Record<string, string> = token === undefined ? {} : { 'dapr-api-token': token };
  const res = await request(url, { headers, headersTimeout: 10_000, bodyTimeout: 10_000 }).catch((err: unknown) => {
    throw new WeftError('WEFT_NODE_UNREACHABLE', `no weft node answers at ${url}: ${(err as Error).message}`);
  });
  const text = await res.body.text().catch(() => '');
  if (res.statusCode === 401) {
    throw new WeftError('WEFT_UNAUTHORIZED', token === undefined
      ? `the node at ${url} wants an API token: pass --api-token TOKEN or set DAPR_API_TOKEN`
      : `the node at ${url} refused the API token given (${typeof v['api-token'] === 'string' ? '--api-token' : 'DAPR_API_TOKEN'})`);
  }
  const meta = metadataOf(text);
  if (res.statusCode !== 200 || meta === null) {
    throw new WeftError('WEFT_NOT_A_NODE', `what answers at ${url} is not a weft node (HTTP ${res.statusCode}${meta === null ? ', not weft\'s metadata' : ''})`);
  }
  if (out.json) {
    out.write(`${JSON.stringify(meta)}\n`);
  } else {
    const ext = meta.extended;
    out.write(`node      ${ext['nodeId']}\napp       ${String(meta['id'])}\nruntime   ${meta.runtimeVersion}\noutbound  ${String(ext['outbound'])}\nresolver  ${JSON.stringify(ext['resolver'])}\n`);
  }
  return 0;
}

/** The body as a weft node's metadata, or null when it is not that (another server, or not JSON). */
function metadataOf(text: string): (Record<string, unknown> & { runtimeVersion: string; extended: Record<string, unknown> & { nodeId: string } }) | null {
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch {
    return null;
  }
  if (typeof doc !== 'object' || doc === null || Array.isArray(doc)) return null;
  const d = doc as Record<string, unknown>;
  const ext = d['extended'];
  if (typeof d['runtimeVersion'] !== 'string' || !d['runtimeVersion'].startsWith('weft/')) return null;
  if (typeof ext !== 'object' || ext === null || typeof (ext as Record<string, unknown>)['nodeId'] !== 'string') return null;
  return d as Record<string, unknown> & { runtimeVersion: string; extended: Record<string, unknown> & { nodeId: string } };
}

async function caCommand(args: string[], out: Out): Promise<number> {
  // The CA module is loaded only for `weft ca` (it brings node-forge).
  const mod = (await import('./ca.ts')) as { caCommand: (argv: string[], out: Out) => Promise<number> };
  return mod.caCommand(args, out);
}
