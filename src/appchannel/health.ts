/**
 * App health checks, as daprd's `--enable-app-health-check`: the node probes `GET <path>` on
 * the app every `intervalMs`; an answer in 2xx within `timeoutMs` is a success, anything else
 * (another status, a timeout, a refused connection) a failure. After `threshold` failures in a
 * row the app is unhealthy; one success makes it healthy again. The first probe, made at
 * start, decides the initial state on its own (no threshold), so an app that is not up yet
 * is not announced as routable.
 *
 * Probes use a connection of their own, not the app's call pool: a saturated pool must not
 * make a busy but healthy app look dead.
 *
 * Contract: `onChange` is called once per transition, never for the first result (read
 * `healthy` after `start()`), never after `stop()`.
 */
import { Client } from 'undici';
import type { AppConfig } from '../config.ts';

export type AppHealthState = 'unknown' | 'healthy' | 'unhealthy';

export interface AppHealthStatus {
  readonly state: AppHealthState;
  /** Consecutive failed probes (0 after a success). */
  readonly failures: number;
  /** Why the last probe failed, if it did. */
  readonly lastError?: string;
  /** ms since the epoch of the last probe's end. */
  readonly lastProbeAt?: number;
}

export class AppHealth {
  readonly app: AppConfig;
  private readonly client: Client;
  private readonly onChange: (healthy: boolean, why: string | undefined) => void;
  private state: AppHealthState = 'unknown';
  private failures = 0;
  private lastError: string | undefined;
  private lastProbeAt: number | undefined;
  private timer: NodeJS.Timeout | undefined;
  private inFlight: AbortController | undefined;
  private stopped = false;

  constructor(app: AppConfig, onChange: (healthy: boolean, why: string | undefined) => void) {
    if (app.appPort === undefined) throw new Error(`app ${app.appId} has no app port to probe`);
    this.app = app;
    this.onChange = onChange;
    this.client = new Client(`http://${app.appHost}:${app.appPort}`, { pipelining: 1, keepAliveTimeout: Math.max(app.health.intervalMs * 2, 10_000), headersTimeout: 0, bodyTimeout: 0 });
  }

  /** Whether calls should go to the app: true unless the checks found it unhealthy. */
  get healthy(): boolean {
    return this.state !== 'unhealthy';
  }

  status(): AppHealthStatus {
    return {
      state: this.state,
      failures: this.failures,
      ...(this.lastError !== undefined ? { lastError: this.lastError } : {}),
      ...(this.lastProbeAt !== undefined ? { lastProbeAt: this.lastProbeAt } : {}),
    };
  }

  /** Makes the first probe (bounded by the probe timeout), then probes every interval. */
  async start(): Promise<void> {
    const error = await this.probe();
    if (this.stopped) return;
    this.state = error === undefined ? 'healthy' : 'unhealthy';
    this.failures = error === undefined ? 0 : 1;
    this.schedule();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.inFlight?.abort();
    await this.client.destroy().catch(() => {});
  }

  private schedule(): void {
    if (this.stopped) return;
    this.timer = setTimeout(() => void this.tick(), this.app.health.intervalMs);
    this.timer.unref();
  }

  private async tick(): Promise<void> {
    const error = await this.probe();
    if (this.stopped) return;
    if (error === undefined) {
      this.failures = 0;
      if (this.state !== 'healthy') this.transition('healthy', undefined);
    } else {
      this.failures++;
      if (this.state !== 'unhealthy' && this.failures >= this.app.health.threshold) this.transition('unhealthy', error);
    }
    this.schedule();
  }

  private transition(state: AppHealthState, why: string | undefined): void {
    this.state = state;
    this.onChange(state === 'healthy', why);
  }

  /** One probe: undefined on success, else why it failed. */
  private async probe(): Promise<string | undefined> {
    const ac = new AbortController();
    this.inFlight = ac;
    const timer = setTimeout(() => ac.abort(), this.app.health.timeoutMs);
    try {
      const res = await this.client.request({ path: this.app.health.path, method: 'GET', signal: ac.signal });
      await res.body.dump().catch(() => {});
      this.lastError = res.statusCode >= 200 && res.statusCode < 300 ? undefined : `GET ${this.app.health.path} answered ${res.statusCode}`;
    } catch (err) {
      const code = (err as { code?: unknown }).code;
      this.lastError = ac.signal.aborted
        ? `GET ${this.app.health.path}: no answer within ${this.app.health.timeoutMs} ms`
        : `GET ${this.app.health.path}: ${typeof code === 'string' ? code : (err as Error).message}`;
    } finally {
      clearTimeout(timer);
      this.inFlight = undefined;
      this.lastProbeAt = Date.now();
    }
    return this.lastError;
  }
}
