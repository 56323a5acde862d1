/**
 * ResourceWatch (client-node's ListWatch and the owner that restarts it)
 * against a small fake API server (plain node:http on 127.0.0.1) whose list
 * and watch answers each test scripts: 410 Gone, failing and reset watches, a
 * stalled (silent) watch, ADDED/MODIFIED/DELETED/BOOKMARK events, credentials
 * that fail, and stop() at every stage.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { KubeConfig, type KubernetesListObject, type KubernetesObject } from '@kubernetes/client-node';
import { request } from 'undici';
import { ResourceWatch, type KubeObject } from '../../src/sources/kube/resource-watch.js';
import { createLogger } from '../../src/observability/logger.js';
import { LogCapture } from '../support/gateway-harness.js';
import { waitFor } from '../support/wait.js';

const PATH = '/api/v1/namespaces/ns/things';

interface WatchRequest {
  at: number;
  query: URLSearchParams;
  req: IncomingMessage;
  res: ServerResponse;
  closed: boolean;
}

/** What the server does with one list or watch request; `undefined` means the default. */
type Handler = (req: IncomingMessage, res: ServerResponse, query: URLSearchParams) => void;

class FakeApiServer {
  readonly server: Server;
  readonly sockets = new Set<Socket>();
  readonly objects = new Map<string, KubeObject>();
  readonly watches: WatchRequest[] = [];
  readonly lists: number[] = [];
  /** Scripted answers, taken in order; when empty the defaults apply. */
  readonly listScript: Handler[] = [];
  readonly watchScript: Handler[] = [];
  rv = 1;
  url = '';

  constructor() {
    this.server = createServer((req, res) => {
      const url = new URL(req.url ?? '/', 'http://x');
      if (url.pathname !== PATH) {
        res.writeHead(404).end();
        return;
      }
      const query = url.searchParams;
      if (query.get('watch') === 'true') {
        const entry: WatchRequest = { at: Date.now(), query, req, res, closed: false };
        this.watches.push(entry);
        res.on('close', () => (entry.closed = true));
        // Whatever the client asks for (timeoutSeconds included) is ignored: the fake decides when a watch ends.
        (this.watchScript.shift() ?? openWatch)(req, res, query);
      } else {
        this.lists.push(Date.now());
        (this.listScript.shift() ?? ((_req, r) => this.listOk(r)))(req, res, query);
      }
    });
    this.server.on('connection', (socket: Socket) => {
      this.sockets.add(socket);
      socket.on('close', () => this.sockets.delete(socket));
    });
  }

  async start(): Promise<void> {
    await new Promise<void>((resolve) => this.server.listen(0, '127.0.0.1', resolve));
    this.url = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }

  listOk(res: ServerResponse): void {
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ kind: 'ThingList', metadata: { resourceVersion: String(this.rv) }, items: [...this.objects.values()] }));
  }

  /** Stores an object under a new resourceVersion and returns it. */
  put(name: string, data: Record<string, unknown> = {}): KubeObject {
    const object: KubeObject = { metadata: { name, namespace: 'ns', resourceVersion: String(++this.rv) }, ...data };
    this.objects.set(name, object);
    return object;
  }

  /** Sends one watch event on the latest open watch. */
  send(type: string, object: unknown): void {
    const open = this.openWatch();
    if (open === undefined) throw new Error('no open watch');
    open.res.write(`${JSON.stringify({ type, object })}\n`);
  }

  openWatch(): WatchRequest | undefined {
    return this.watches.findLast((w) => !w.closed);
  }

  async close(): Promise<void> {
    for (const socket of this.sockets) socket.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}

/** Accepts the watch, sends headers, then keeps it open until the test writes events or it is closed. */
const openWatch: Handler = (_req, res) => {
  res.writeHead(200, { 'content-type': 'application/json' });
  res.flushHeaders();
};
const status =
  (code: number): Handler =>
  (_req, res) => {
    res.writeHead(code, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ kind: 'Status', code, message: `fake ${code}` }));
  };
const reset: Handler = (req) => req.socket.destroy();
/** Never answers (not even headers): a connect that hangs. */
const hang: Handler = () => undefined;

/** A kubeconfig whose credentials can be made to fail, as a failing exec plugin or an unreadable token file does. */
class FlakyKubeConfig extends KubeConfig {
  authFailures = 0;
  override async applySecurityAuthentication(...args: Parameters<KubeConfig['applySecurityAuthentication']>): Promise<void> {
    if (this.authFailures > 0) {
      this.authFailures--;
      throw new Error('credentials unavailable');
    }
    return super.applySecurityAuthentication(...args);
  }
}

function kubeConfigFor(url: string): FlakyKubeConfig {
  const kc = new FlakyKubeConfig();
  kc.loadFromOptions({
    clusters: [{ name: 'fake', server: url, skipTLSVerify: true }],
    users: [{ name: 'anonymous' }],
    contexts: [{ name: 'fake', cluster: 'fake', user: 'anonymous' }],
    currentContext: 'fake',
  });
  return kc;
}

interface Harness {
  watch: ResourceWatch;
  kubeConfig: FlakyKubeConfig;
  /** Item count after each burst of changes (coalesced per event-loop turn, as the Kubernetes source does). */
  changes: number[];
  logs: LogCapture;
  names(): string[];
  item(name: string): KubeObject | undefined;
}

let api: FakeApiServer;
const running: ResourceWatch[] = [];

beforeEach(async () => {
  api = new FakeApiServer();
  await api.start();
});

afterEach(async () => {
  await Promise.all(running.splice(0).map((w) => w.stop()));
  await api.close();
});

function startWatch(options: { silenceTimeoutMs?: number; minBackoffMs?: number; maxBackoffMs?: number } = {}): Harness {
  const changes: number[] = [];
  const logs = new LogCapture();
  const kubeConfig = kubeConfigFor(api.url);
  let scheduled = false;
  const watch: ResourceWatch = new ResourceWatch({
    name: 'things',
    kubeConfig,
    list: async () => {
      const res = await request(`${api.url}${PATH}`);
      if (res.statusCode !== 200) {
        await res.body.dump();
        throw new Error(`list failed: ${res.statusCode}`);
      }
      return (await res.body.json()) as KubernetesListObject<KubernetesObject>;
    },
    watchPath: PATH,
    silenceTimeoutMs: options.silenceTimeoutMs ?? 30_000,
    minBackoffMs: options.minBackoffMs ?? 20,
    maxBackoffMs: options.maxBackoffMs ?? 1000,
    onChange: () => {
      if (scheduled) return;
      scheduled = true;
      setImmediate(() => {
        scheduled = false;
        changes.push(watch.items.length);
      });
    },
    logger: createLogger('debug', logs),
  });
  running.push(watch);
  watch.start();
  return {
    watch,
    kubeConfig,
    changes,
    logs,
    names: () => watch.items.map((i) => i.metadata?.name ?? '').sort(),
    item: (name) => watch.items.find((i) => i.metadata?.name === name),
  };
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** The gaps between consecutive watch requests, from the `from`-th on. */
const watchGaps = (from = 0) => api.watches.slice(from + 1).map((w, i) => w.at - api.watches[from + i]!.at);

test('ADDED, MODIFIED, DELETED and BOOKMARK events update items; the next watch resumes from the last version', async () => {
  api.put('a', { v: 1 });
  const h = startWatch();
  await h.watch.firstSync;
  expect(h.names()).toEqual(['a']);
  await waitFor(() => api.openWatch() !== undefined);
  expect(api.watches[0]!.query.get('resourceVersion')).toBe('2');
  expect(api.watches[0]!.query.get('allowWatchBookmarks')).toBe('true');

  api.send('ADDED', api.put('b', { v: 1 }));
  await waitFor(() => h.names().join() === 'a,b');
  api.send('MODIFIED', api.put('a', { v: 2 }));
  await waitFor(() => h.item('a')?.['v'] === 2);
  const deleted = api.objects.get('b')!;
  api.objects.delete('b');
  api.send('DELETED', { ...deleted, metadata: { ...deleted.metadata, resourceVersion: String(++api.rv) } });
  await waitFor(() => h.names().join() === 'a');
  await sleep(20);
  const changesBeforeBookmark = h.changes.length;
  api.send('BOOKMARK', { metadata: { resourceVersion: '42' } });
  // lines that are not JSON are skipped
  api.openWatch()!.res.write('not json\n');

  // the server ends the watch cleanly: the next one starts from the bookmark, at once, without a new list
  await sleep(50);
  const endedAt = Date.now();
  api.openWatch()!.res.end();
  await waitFor(() => api.watches.length === 2);
  expect(api.watches[1]!.at - endedAt).toBeLessThan(500);
  expect(api.watches[1]!.query.get('resourceVersion')).toBe('42');
  expect(api.lists).toHaveLength(1);
  expect(h.changes.length).toBe(changesBeforeBookmark);
  expect(h.changes).toEqual([1, 2, 2, 1]);
  expect(h.names()).toEqual(['a']);
});

test('an empty collection: the first sync is reported once, with no items', async () => {
  const h = startWatch();
  await h.watch.firstSync;
  await waitFor(() => api.openWatch() !== undefined);
  await sleep(20);
  expect(h.changes).toEqual([0]);
  expect(h.watch.synced).toBe(true);
});

test('a watch ERROR event with code 410 makes it list again at once; unchanged objects keep their identity', async () => {
  api.put('a');
  api.put('b', { v: 1 });
  const h = startWatch({ minBackoffMs: 5_000, maxBackoffMs: 10_000 });
  await h.watch.firstSync;
  await waitFor(() => api.openWatch() !== undefined);
  const [a, b] = [h.item('a'), h.item('b')];
  // meanwhile (events the watch missed): b changed, c came, and later a is gone
  api.put('b', { v: 2 });
  api.put('c');
  const listedAt = Date.now();
  // the API server ends a watch after its ERROR event
  api.send('ERROR', { kind: 'Status', apiVersion: 'v1', status: 'Failure', reason: 'Expired', code: 410, message: 'too old resource version: 2 (40)' });
  api.openWatch()!.res.end();
  await waitFor(() => api.lists.length === 2 && api.watches.length === 2);
  // no backoff on 410 (minBackoffMs is 5 s)
  expect(Date.now() - listedAt).toBeLessThan(2000);
  expect(api.watches[1]!.query.get('resourceVersion')).toBe(String(api.rv));
  expect(api.watches[0]!.closed).toBe(true);
  expect(h.names()).toEqual(['a', 'b', 'c']);
  // per-object translation caches on identity: the unchanged object is the same one, the changed one is new
  expect(h.item('a')).toBe(a);
  expect(h.item('b')).not.toBe(b);
  expect(h.item('b')?.['v']).toBe(2);
  expect(h.logs.lines.join('\n')).toMatch(/410 Gone/);

  // a later list drops what the server no longer has
  api.objects.delete('a');
  api.send('ERROR', { kind: 'Status', code: 410, message: 'too old resource version' });
  api.openWatch()!.res.end();
  await waitFor(() => h.names().join() === 'b,c');
});

test('a watch answered 410 as an HTTP status also lists again', async () => {
  api.put('a');
  api.watchScript.push(status(410));
  const h = startWatch({ minBackoffMs: 5_000, maxBackoffMs: 10_000 });
  await h.watch.firstSync;
  await waitFor(() => api.lists.length === 2 && api.watches.length === 2);
  expect(h.names()).toEqual(['a']);
  expect(h.logs.lines.join('\n')).toMatch(/410 Gone/);
});

test('failing watches (500, connection reset) are restarted with growing, jittered backoff from the last version; the cache is kept meanwhile', async () => {
  api.put('a');
  api.put('b');
  // the list keeps working but every watch fails: 500, reset, 500, reset, 500, then a good one
  api.watchScript.push(status(500), reset, status(500), reset, status(500));
  const h = startWatch({ minBackoffMs: 80, maxBackoffMs: 10_000 });
  await h.watch.firstSync;
  await waitFor(() => api.watches.length === 6 && api.openWatch() !== undefined, 5000, 'six watches');
  const gaps = watchGaps();
  // equal jitter: each wait is at least half its ceiling (80, 160, 320, 640, 1280 ms)
  expect(gaps).toHaveLength(5);
  expect({ gaps, atLeastHalfTheCeiling: gaps.every((gap, i) => gap >= 0.9 * 40 * 2 ** i) }).toMatchObject({ atLeastHalfTheCeiling: true });
  // each restart resumed from the listed version; nothing was listed again
  expect(api.lists).toHaveLength(1);
  expect(api.watches.map((w) => w.query.get('resourceVersion'))).toEqual(Array(6).fill('3'));
  // the cache was never emptied
  expect(h.names()).toEqual(['a', 'b']);
  expect(h.changes).toEqual([2]);
  expect(h.watch.synced).toBe(true);
  expect(h.logs.lines.filter((l) => l.includes('keeping the last state')).length).toBe(5);

  // a watch that delivers an event resets the backoff: the next failure retries after the minimum again
  api.send('ADDED', api.put('c'));
  await waitFor(() => h.names().length === 3);
  api.watchScript.push(status(500));
  const before = api.watches.length;
  api.openWatch()!.req.socket.destroy();
  await waitFor(() => api.watches.length === before + 2 && api.openWatch() !== undefined, 3000, 'two more watches');
  expect(watchGaps(before).at(-1)).toBeLessThan(400);
});

test('while the API server is away after a 410 (lists fail too) the last state stays in place', async () => {
  api.put('a');
  const h = startWatch({ minBackoffMs: 20, maxBackoffMs: 100 });
  await h.watch.firstSync;
  await waitFor(() => api.openWatch() !== undefined);
  api.listScript.push(status(500), reset, status(503), status(500));
  api.send('ERROR', { kind: 'Status', code: 410, message: 'too old resource version' });
  api.openWatch()!.res.end();
  await waitFor(() => api.lists.length === 6, 5000, 'six lists');
  expect(h.names()).toEqual(['a']);
  expect(h.changes.every((n) => n === 1)).toBe(true);
  expect(h.watch.synced).toBe(true);
  expect(h.logs.lines.filter((l) => l.includes('keeping the last state')).length).toBe(4);
  await waitFor(() => api.openWatch() !== undefined);
});

test('the first list failing: not synced and no items until a list succeeds, retried with backoff', async () => {
  api.put('a');
  api.listScript.push(status(500), status(503));
  const h = startWatch({ minBackoffMs: 100, maxBackoffMs: 1000 });
  let synced = false;
  void h.watch.firstSync.then(() => (synced = true));
  await waitFor(() => api.lists.length === 2);
  expect(h.watch.synced).toBe(false);
  expect(synced).toBe(false);
  expect(h.watch.items).toEqual([]);
  await h.watch.firstSync;
  expect(h.watch.synced).toBe(true);
  expect(h.names()).toEqual(['a']);
  expect(api.lists).toHaveLength(3);
  // 50-100 ms, then 100-200 ms
  expect(api.lists[2]! - api.lists[0]!).toBeGreaterThanOrEqual(140);
});

test('credentials that fail when a watch resumes: restarted with backoff, no unhandled rejection', async () => {
  const unhandled: unknown[] = [];
  const onUnhandled = (reason: unknown) => unhandled.push(reason);
  process.on('unhandledRejection', onUnhandled);
  try {
    api.put('a');
    const h = startWatch({ minBackoffMs: 50, maxBackoffMs: 200 });
    await h.watch.firstSync;
    await waitFor(() => api.openWatch() !== undefined);
    // a healthy watch ends; the next two attempts cannot get credentials
    api.send('BOOKMARK', { metadata: { resourceVersion: '7' } });
    h.kubeConfig.authFailures = 2;
    api.openWatch()!.res.end();
    await waitFor(() => api.watches.length === 2 && api.openWatch() !== undefined, 3000, 'the watch back');
    expect(api.watches[1]!.query.get('resourceVersion')).toBe('7');
    expect(h.logs.lines.filter((l) => l.includes('credentials unavailable')).length).toBe(2);
    await sleep(50);
    expect(unhandled).toEqual([]);
  } finally {
    process.off('unhandledRejection', onUnhandled);
  }
});

test('a silent watch (headers, then nothing, never closed) is restarted after silenceTimeoutMs, from its last version', async () => {
  api.put('a');
  const h = startWatch({ silenceTimeoutMs: 1000, minBackoffMs: 20 });
  await h.watch.firstSync;
  await waitFor(() => api.openWatch() !== undefined);
  const first = api.watches[0]!;
  await waitFor(() => api.watches.length === 2, 3000, 'a second watch');
  const gap = api.watches[1]!.at - first.at;
  expect(gap).toBeGreaterThanOrEqual(1000);
  expect(gap).toBeLessThan(1800);
  // the stalled connection was closed, and the watch resumed without a new list
  await waitFor(() => first.closed);
  expect(api.lists).toHaveLength(1);
  expect(api.watches[1]!.query.get('resourceVersion')).toBe('2');
  expect(h.logs.lines.join('\n')).toMatch(/watch silent for 1000 ms/);
  expect(h.names()).toEqual(['a']);

  // events keep it open
  const second = api.watches[1]!;
  for (let i = 0; i < 6; i++) {
    await sleep(300);
    api.send('BOOKMARK', { metadata: { resourceVersion: String(100 + i) } });
  }
  expect(second.closed).toBe(false);
  expect(api.watches).toHaveLength(2);
});

test('a watch whose request never gets headers is restarted after silenceTimeoutMs too', async () => {
  api.watchScript.push(hang);
  const h = startWatch({ silenceTimeoutMs: 1000, minBackoffMs: 20 });
  await h.watch.firstSync;
  await waitFor(() => api.watches.length === 2, 3000, 'a second watch');
  // The silence timer starts when the gateway sends the request, a little before the fake API records it, and
  // Node's timers keep whole milliseconds: 2 ms early was seen. An immediate restart would be ~20 ms (the backoff).
  expect(api.watches[1]!.at - api.watches[0]!.at).toBeGreaterThanOrEqual(950);
});

describe('stop()', () => {
  test('ends an open watch at once and closes its connection', async () => {
    const h = startWatch();
    await h.watch.firstSync;
    await waitFor(() => api.openWatch() !== undefined);
    const started = Date.now();
    await h.watch.stop();
    expect(Date.now() - started).toBeLessThan(200);
    await waitFor(() => api.watches[0]!.closed, 1000, 'watch connection closed');
    const count = api.watches.length + api.lists.length;
    await sleep(200);
    expect(api.watches.length + api.lists.length).toBe(count);
  });

  test('ends the backoff wait at once (no timer left behind)', async () => {
    api.watchScript.push(status(500), status(500), status(500));
    const h = startWatch({ minBackoffMs: 20_000, maxBackoffMs: 60_000 });
    await h.watch.firstSync;
    await waitFor(() => h.logs.lines.some((l) => l.includes('keeping the last state')));
    const started = Date.now();
    await h.watch.stop();
    expect(Date.now() - started).toBeLessThan(200);
    expect(api.watches).toHaveLength(1);
  });

  test('during the library reconnect delay (watches ending at once): no watch opens after it', async () => {
    const endAtOnce: Handler = (_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end();
    };
    for (let i = 0; i < 10; i++) api.watchScript.push(endAtOnce);
    const h = startWatch();
    await h.watch.firstSync;
    // the first two watches follow each other at once, the third waits 1 s
    await waitFor(() => api.watches.length === 2);
    await sleep(100);
    await h.watch.stop();
    await sleep(1500);
    expect(api.watches).toHaveLength(2);
  });

  test('ends a watch still waiting for its response headers at once; an answer arriving later is dropped', async () => {
    let answer!: (res: ServerResponse) => void;
    api.watchScript.push(
      (_req, res) =>
        (answer = () => {
          res.writeHead(200, { 'content-type': 'application/json' });
          res.write(`${JSON.stringify({ type: 'ADDED', object: api.put('late') })}\n`);
        }),
    );
    const h = startWatch({ silenceTimeoutMs: 20_000 });
    await h.watch.firstSync;
    await waitFor(() => api.watches.length === 1);
    await sleep(20);
    const changes = h.changes.length;
    const started = Date.now();
    await h.watch.stop();
    expect(Date.now() - started).toBeLessThan(200);
    answer(api.watches[0]!.res);
    await waitFor(() => api.watches[0]!.closed, 2000, 'the late watch closed by the client');
    await sleep(50);
    expect(h.names()).toEqual([]);
    expect(h.changes.length).toBe(changes);
  });

  test('before the first list finished, and twice: no watch opens', async () => {
    let answer!: () => void;
    api.listScript.push((_req, res) => (answer = () => api.listOk(res)));
    const h = startWatch();
    await waitFor(() => api.lists.length === 1);
    const stopping = h.watch.stop();
    answer();
    await stopping;
    await h.watch.stop();
    await sleep(200);
    expect(api.watches).toHaveLength(0);
  });
});

describe('a misbehaving server gets no tight loop', () => {
  const endAtOnce: Handler = (_req, res) => {
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end();
  };

  test('watches the server ends at once, without an event, are resumed with growing delays', async () => {
    for (let i = 0; i < 50; i++) api.watchScript.push(endAtOnce);
    const h = startWatch();
    await h.watch.firstSync;
    await sleep(1500);
    // a tight loop would make hundreds; the library waits 1 s, then 2 s
    expect(api.watches.length).toBeGreaterThan(1);
    expect(api.watches.length).toBeLessThan(5);
    expect(watchGaps(1)[0]).toBeGreaterThanOrEqual(900);
  });

  test('a server that answers every fresh watch with 410: the first relists at once, the next ones back off', async () => {
    for (let i = 0; i < 50; i++) api.watchScript.push(status(410));
    const h = startWatch({ minBackoffMs: 100, maxBackoffMs: 400 });
    await h.watch.firstSync;
    await waitFor(() => api.lists.length >= 2, 1000, 'the immediate relist');
    await sleep(1500);
    expect(api.lists.length).toBeLessThan(10);
  });
});
