// Where a process's live heap was allocated, without a heap snapshot (one of
// a controller at 800 MB is too large to write, let alone read): V8's sampling
// heap profiler, driven over the inspector protocol of a process started with
// --inspect=127.0.0.1:<port>. Its samples are objects still alive when the
// profile is taken, each with the stack that allocated it.

interface CallFrame {
  functionName: string;
  url: string;
  lineNumber: number;
}

interface ProfileNode {
  callFrame: CallFrame;
  selfSize: number;
  children: ProfileNode[];
}

export interface HeapSampler {
  /** Live bytes by allocating site: the top frame, and the innermost frame in the project's own src/. */
  summary(top?: number): Promise<string>;
  close(): void;
}

const mib = (bytes: number): string => `${(bytes / 2 ** 20).toFixed(1)} MiB`;

function frameName(frame: CallFrame): string {
  const file = frame.url.replace(/^.*\/(node_modules\/)/, '$1').replace(/^.*\/src\//, 'src/').replace(/^file:\/\/.*\//, '');
  return `${frame.functionName === '' ? '(anonymous)' : frame.functionName} ${file}:${frame.lineNumber + 1}`;
}

export async function startHeapSampling(inspectPort: number): Promise<HeapSampler> {
  const targets = (await (await fetch(`http://127.0.0.1:${inspectPort}/json/list`)).json()) as { webSocketDebuggerUrl: string }[];
  const url = targets[0]?.webSocketDebuggerUrl;
  if (url === undefined) throw new Error(`no inspector target on port ${inspectPort}`);
  const socket = new WebSocket(url);
  await new Promise<void>((resolve, reject) => {
    socket.addEventListener('open', () => resolve(), { once: true });
    socket.addEventListener('error', () => reject(new Error(`inspector ${url} refused the connection`)), { once: true });
  });
  let nextId = 1;
  const pending = new Map<number, { resolve: (value: unknown) => void; reject: (error: Error) => void }>();
  socket.addEventListener('message', (event: MessageEvent) => {
    const message = JSON.parse(String(event.data)) as { id?: number; result?: unknown; error?: { message: string } };
    const waiter = message.id === undefined ? undefined : pending.get(message.id);
    if (waiter === undefined || message.id === undefined) return;
    pending.delete(message.id);
    if (message.error === undefined) waiter.resolve(message.result);
    else waiter.reject(new Error(message.error.message));
  });
  const call = (method: string, params: Record<string, unknown> = {}): Promise<unknown> =>
    new Promise((resolve, reject) => {
      const id = nextId++;
      pending.set(id, { resolve, reject });
      socket.send(JSON.stringify({ id, method, params }));
    });
  await call('HeapProfiler.enable');
  // One sample per 32 KiB allocated on average: enough for sites of a MiB and more.
  await call('HeapProfiler.startSampling', { samplingInterval: 32 * 1024, includeObjectsCollectedByMajorGC: false, includeObjectsCollectedByMinorGC: false });

  return {
    async summary(top = 20): Promise<string> {
      const { profile } = (await call('HeapProfiler.getSamplingProfile')) as { profile: { head: ProfileNode } };
      const byTop = new Map<string, number>();
      const byOwn = new Map<string, number>();
      let total = 0;
      const walk = (node: ProfileNode, own: string | undefined): void => {
        const here = node.callFrame.url.includes('/src/') ? frameName(node.callFrame) : own;
        if (node.selfSize > 0) {
          total += node.selfSize;
          const name = frameName(node.callFrame);
          byTop.set(name, (byTop.get(name) ?? 0) + node.selfSize);
          const key = here ?? '(no src/ frame)';
          byOwn.set(key, (byOwn.get(key) ?? 0) + node.selfSize);
        }
        for (const child of node.children) walk(child, here);
      };
      walk(profile.head, undefined);
      const list = (map: Map<string, number>): string =>
        [...map]
          .sort((a, b) => b[1] - a[1])
          .slice(0, top)
          .map(([name, bytes]) => `     ${mib(bytes).padStart(10)}  ${name}`)
          .join('\n');
      return `   live heap sampled: ${mib(total)}\n   by allocating function:\n${list(byTop)}\n   by innermost src/ frame:\n${list(byOwn)}`;
    },
    close(): void {
      socket.close();
    },
  };
}
