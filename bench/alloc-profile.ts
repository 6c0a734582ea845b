/**
 * What a weft node allocates per call: V8's sampling heap profiler, read over the inspector
 * protocol while the load runs (`npm run bench -- --alloc`).
 *
 * The sampler keeps objects the GC has already collected (`includeObjectsCollectedBy*`), so
 * the sampled bytes estimate everything allocated in the window, not what is still alive.
 * Divided by the calls made in the window, that is the bytes a call allocates on the node's
 * main thread; worker threads are separate isolates and are not sampled.
 *
 * Each node is started with `--inspect=127.0.0.1:<port>` on a port the harness picked, so
 * the inspector never listens beyond loopback, and the session is opened once the node is
 * ready, before the load starts.
 */

/** One node of V8's sampling heap profile (`HeapProfiler.SamplingHeapProfile`). */
interface HeapNode {
  callFrame: { functionName: string; url: string; lineNumber: number };
  selfSize: number;
  children: HeapNode[];
}

export interface AllocSummary {
  /** Bytes allocated per call on the main thread over the measured phase (sampled estimate). */
  bytesPerCall: number;
  /** The functions that allocated most, bytes per call, largest first. */
  top: Array<{ fn: string; bytesPerCall: number }>;
}

/** An inspector session on one node, able to sample its allocations over a window. */
export class AllocSampler {
  readonly #socket: WebSocket;
  readonly #pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();
  #nextId = 0;

  private constructor(socket: WebSocket) {
    this.#socket = socket;
    socket.addEventListener('message', (e) => {
      const m = JSON.parse(String(e.data)) as { id?: number; result?: unknown; error?: { message: string } };
      const waiting = m.id === undefined ? undefined : this.#pending.get(m.id);
      if (waiting === undefined || m.id === undefined) return;
      this.#pending.delete(m.id);
      if (m.error) waiting.reject(new Error(m.error.message));
      else waiting.resolve(m.result);
    });
    socket.addEventListener('close', () => {
      for (const w of this.#pending.values()) w.reject(new Error('inspector session closed'));
      this.#pending.clear();
    });
  }

  /** Opens a session on the inspector at 127.0.0.1:`port` (the node's first target). */
  static async connect(port: number, timeoutMs = 10_000): Promise<AllocSampler> {
    const until = Date.now() + timeoutMs;
    let url: string | undefined;
    while (url === undefined) {
      try {
        const list = (await (await fetch(`http://127.0.0.1:${port}/json/list`)).json()) as Array<{ webSocketDebuggerUrl?: string }>;
        url = list[0]?.webSocketDebuggerUrl;
      } catch (err) {
        if (Date.now() > until) throw new Error(`no inspector on 127.0.0.1:${port}: ${(err as Error).message}`);
      }
      if (url === undefined) await new Promise((r) => setTimeout(r, 100));
    }
    const socket = new WebSocket(url);
    await new Promise<void>((resolve, reject) => {
      socket.addEventListener('open', () => resolve(), { once: true });
      socket.addEventListener('error', () => reject(new Error(`inspector at ${url} refused the session`)), { once: true });
    });
    const sampler = new AllocSampler(socket);
    await sampler.#send('HeapProfiler.enable');
    return sampler;
  }

  #send(method: string, params: Record<string, unknown> = {}): Promise<unknown> {
    const id = ++this.#nextId;
    return new Promise((resolve, reject) => {
      this.#pending.set(id, { resolve, reject });
      this.#socket.send(JSON.stringify({ id, method, params }));
    });
  }

  /** Starts sampling: one sample per `intervalBytes` allocated on average, collected objects kept. */
  start(intervalBytes = 4096): Promise<unknown> {
    return this.#send('HeapProfiler.startSampling', {
      samplingInterval: intervalBytes,
      includeObjectsCollectedByMajorGC: true,
      includeObjectsCollectedByMinorGC: true,
    });
  }

  /** Stops sampling and returns the profile's root. */
  async stop(): Promise<HeapNode> {
    const { profile } = (await this.#send('HeapProfiler.stopSampling')) as { profile: { head: HeapNode } };
    return profile.head;
  }

  close(): void {
    this.#socket.close();
  }
}

/** A function's name and place, with paths shortened to the package or weft's own tree. */
function frameName(f: HeapNode['callFrame']): string {
  const where = f.url
    .replace(/^.*node_modules\//, '')
    .replace(/^file:\/\/.*?\/(dist\/)?(src|workers)\//, '$2/')
    .replace(/^node:/, 'node:');
  return `${f.functionName || '(anonymous)'} ${where === '' ? '(native)' : `${where}:${f.lineNumber + 1}`}`;
}

/** Bytes per call, in total and by allocating function, from one sampled profile. */
export function summariseAlloc(head: HeapNode, calls: number, top = 12): AllocSummary {
  const byFn = new Map<string, number>();
  let total = 0;
  const stack = [head];
  while (stack.length > 0) {
    const n = stack.pop() as HeapNode;
    if (n.selfSize > 0) {
      total += n.selfSize;
      const k = frameName(n.callFrame);
      byFn.set(k, (byFn.get(k) ?? 0) + n.selfSize);
    }
    for (const c of n.children) stack.push(c);
  }
  const per = (bytes: number): number => (calls > 0 ? bytes / calls : 0);
  return {
    bytesPerCall: per(total),
    top: [...byFn].sort((a, b) => b[1] - a[1]).slice(0, top).map(([fn, bytes]) => ({ fn, bytesPerCall: per(bytes) })),
  };
}
