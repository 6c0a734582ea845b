/**
 * A byte stream over a MessagePort with credit-based flow control, used for bodies too large
 * to hold whole (see `StreamMessage` in protocol.ts). Pure module: the same code runs on the
 * main thread and in workers.
 *
 * Contract: the reader grants the writer `WINDOW` bytes up front and more as the consumer
 * takes chunks, so at most about one window is ever queued in a port. Chunks are copied into
 * exact-size ArrayBuffers and transferred (never a view of Node's shared pool).
 */
import type { MessagePort } from 'node:worker_threads';
import type { ResponseHead, StreamMessage, WireErrorShape } from './protocol.ts';

export const WINDOW = 256 * 1024;
/** Bodies up to this size travel whole; larger ones (or of unknown length) stream. */
export const WHOLE_BODY_LIMIT = 256 * 1024;

/** An exact-size, transferable copy of `view` (or `view`'s own buffer when it already is one). */
export function transferable(view: Uint8Array): ArrayBuffer {
  const buffer = view.buffer;
  // Buffers of 4 KiB and up are never slices of Node's pool; a whole one can move as it is.
  if (view.byteOffset === 0 && view.byteLength === buffer.byteLength && view.byteLength >= 4096 && buffer instanceof ArrayBuffer) {
    return buffer;
  }
  const copy = new Uint8Array(view.byteLength);
  copy.set(view);
  return copy.buffer;
}

export class PortWriter {
  private readonly port: MessagePort;
  private credit = 0;
  private waiter: (() => void) | null = null;
  private closed = false;
  private onClosed: (() => void) | null = null;

  constructor(port: MessagePort) {
    this.port = port;
    port.on('message', (msg: StreamMessage) => {
      if (msg.type === 'credit') {
        this.credit += msg.bytes;
        this.wake();
      }
    });
    port.on('close', () => {
      this.closed = true;
      this.wake();
      const cb = this.onClosed;
      this.onClosed = null;
      cb?.();
    });
  }

  get isClosed(): boolean {
    return this.closed;
  }

  /**
   * Runs `cb` once when the port closes (either side closed it: for the sender of an answer,
   * the reader went away). Whoever feeds this writer from a network call cancels that call
   * here at once, rather than at its next write, which may never come (an idle event stream).
   */
  onClose(cb: () => void): void {
    if (this.closed) cb();
    else this.onClosed = cb;
  }

  head(head: ResponseHead): void {
    this.post({ type: 'head', head });
  }

  /** Resolves once the chunk is posted; waits while the reader has granted no credit. */
  async write(view: Uint8Array): Promise<void> {
    if (view.byteLength === 0) return;
    while (this.credit <= 0 && !this.closed) await new Promise<void>((resolve) => (this.waiter = resolve));
    if (this.closed) throw new Error('stream reader went away');
    this.credit -= view.byteLength;
    const chunk = transferable(view);
    this.port.postMessage({ type: 'data', chunk } satisfies StreamMessage, [chunk]);
  }

  end(): void {
    this.post({ type: 'end' });
  }

  error(error: WireErrorShape): void {
    this.post({ type: 'error', error: { code: error.code, message: error.message } });
  }

  close(): void {
    this.closed = true;
    this.wake();
    this.port.close();
  }

  private post(msg: StreamMessage): void {
    if (!this.closed) this.port.postMessage(msg);
  }

  private wake(): void {
    const w = this.waiter;
    this.waiter = null;
    w?.();
  }
}

export type ReadEvent =
  | { type: 'head'; head: ResponseHead }
  | { type: 'data'; chunk: Buffer }
  | { type: 'end' }
  | { type: 'error'; error: WireErrorShape };

/**
 * Reads a port as a queue of events. `next()` hands out one event at a time and grants credit
 * for each chunk handed out, so memory held is bounded by the window.
 */
export class PortReader {
  private readonly port: MessagePort;
  private readonly queue: ReadEvent[] = [];
  private waiter: ((e: ReadEvent) => void) | null = null;
  private done = false;
  private onFinished: (() => void) | null = null;

  constructor(port: MessagePort) {
    this.port = port;
    port.on('message', (msg: StreamMessage) => {
      switch (msg.type) {
        case 'head': this.push({ type: 'head', head: msg.head }); break;
        case 'data': this.push({ type: 'data', chunk: Buffer.from(msg.chunk) }); break;
        case 'end': this.push({ type: 'end' }); break;
        case 'error': this.push({ type: 'error', error: msg.error }); break;
        default: break;
      }
    });
    port.on('close', () => {
      if (!this.done) this.push({ type: 'error', error: { code: 'WEFT_INTERNAL', message: 'stream closed before its end' } });
    });
    port.postMessage({ type: 'credit', bytes: WINDOW } satisfies StreamMessage);
  }

  next(): Promise<ReadEvent> {
    const e = this.queue.shift();
    if (e !== undefined) return Promise.resolve(this.taken(e));
    return new Promise((resolve) => {
      this.waiter = (ev) => resolve(this.taken(ev));
    });
  }

  /** Iterates the data chunks up to `end`; throws on `error`. Heads are skipped. */
  async *chunks(): AsyncGenerator<Buffer> {
    for (;;) {
      const e = await this.next();
      if (e.type === 'data') yield e.chunk;
      else if (e.type === 'end') return;
      else if (e.type === 'error') throw Object.assign(new Error(e.error.message), { code: e.error.code });
    }
  }

  /** Ends the stream with an error found on this side (e.g. the task carrying it failed). */
  fail(error: WireErrorShape): void {
    this.push({ type: 'error', error });
  }

  /**
   * Gives up on the stream: the consumer's next event is `error`, the other side hears why
   * (its reader of this port gets the error; its writer sees the port close) and the port closes.
   */
  cancel(error: WireErrorShape): void {
    if (this.done) return;
    this.fail(error);
    try {
      this.port.postMessage({ type: 'error', error: { code: error.code, message: error.message } } satisfies StreamMessage);
    } catch {
      // already closed
    }
    this.finish();
    this.port.close();
  }

  /** Runs `cb` once the stream is over: its end or error was taken, or it was closed or cancelled. */
  onDone(cb: () => void): void {
    if (this.done) cb();
    else this.onFinished = cb;
  }

  close(): void {
    this.finish();
    this.port.close();
  }

  private finish(): void {
    this.done = true;
    const cb = this.onFinished;
    this.onFinished = null;
    cb?.();
  }

  private taken(e: ReadEvent): ReadEvent {
    if (e.type === 'data') {
      try {
        this.port.postMessage({ type: 'credit', bytes: e.chunk.byteLength } satisfies StreamMessage);
      } catch {
        // the writer has gone; nothing more will arrive that needs credit
      }
    } else if (e.type !== 'head') {
      this.finish();
    }
    return e;
  }

  private push(e: ReadEvent): void {
    if (this.done && e.type === 'error') return;
    const w = this.waiter;
    if (w !== null) {
      this.waiter = null;
      w(e);
    } else {
      this.queue.push(e);
    }
  }
}
