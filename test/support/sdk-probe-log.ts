import { LogLevel, type LoggerOptions } from '@dapr/dapr';

/**
 * A Dapr SDK logger that remembers whether the client had to wait for its node.
 *
 * `DaprClient.start()` probes the node once; only when that probe fails does it log
 * "Awaiting Sidecar to be Started" and poll again. Tests that want "the first probe was
 * enough" check `waited` instead of timing `start()`, which a loaded machine would break.
 */
export interface ProbeLog {
  readonly logger: LoggerOptions;
  /** True once the SDK said it is waiting for the sidecar (its first probe failed). */
  readonly waited: boolean;
}

export function probeLog(): ProbeLog {
  let waited = false;
  const ignore = (): void => {};
  const logger: LoggerOptions = {
    level: LogLevel.Info,
    service: {
      error: ignore,
      warn: ignore,
      verbose: ignore,
      debug: ignore,
      info: (message: unknown) => {
        if (typeof message === 'string' && message.includes('Awaiting Sidecar')) waited = true;
      },
    },
  };
  return { logger, get waited() { return waited; } };
}
