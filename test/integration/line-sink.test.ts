/**
 * LineSink on real file descriptors: a temp file (order, completeness,
 * multi-byte text, lines larger than a write buffer, flush and flushSync) and
 * a FIFO opened O_RDWR|O_NONBLOCK that nobody reads until the test drains it
 * (EAGAIN, the pending-bytes cap, the dropped-lines report). node:fs is
 * wrapped so the tests also see each write the sink asks for: in shared mode
 * none may exceed PIPE_BUF or end mid-line.
 */
import { jest } from '@jest/globals';
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { sleep, waitFor } from '../support/wait.js';

/** Every write (or writev) the sink hands to node:fs, per descriptor, copied at the call. */
const attempts = new Map<number, Buffer[]>();
function recordAttempt(fd: number, bytes: Buffer): void {
  let list = attempts.get(fd);
  if (list === undefined) attempts.set(fd, (list = []));
  list.push(Buffer.from(bytes));
}

type WriteCallback = (error: NodeJS.ErrnoException | null, written: number) => void;
jest.unstable_mockModule('node:fs', () => ({
  ...fs,
  write(fd: number, buffer: Buffer, offset: number, length: number, position: null, callback: WriteCallback): void {
    recordAttempt(fd, buffer.subarray(offset, offset + length));
    fs.write(fd, buffer, offset, length, position, callback);
  },
  writev(fd: number, buffers: Buffer[], position: null, callback: WriteCallback): void {
    recordAttempt(fd, Buffer.concat(buffers));
    fs.writev(fd, buffers, position, callback);
  },
}));
const { LineSink } = await import('../../src/observability/line-sink.js');

const PIPE_BUF = 4096;
let dir: string;
beforeAll(() => {
  dir = fs.mkdtempSync(join(tmpdir(), 'line-sink-'));
});
afterAll(() => {
  fs.rmSync(dir, { recursive: true, force: true });
});

/** Opens `path`; descriptor numbers are reused, so what was recorded for an earlier one is forgotten. */
function open(path: string, flags: string | number): number {
  const fd = fs.openSync(path, flags);
  attempts.delete(fd);
  return fd;
}

let fileCount = 0;
function tempFile(): { path: string; fd: number } {
  const path = join(dir, `out-${++fileCount}.log`);
  return { path, fd: open(path, 'w') };
}

function fifo(): string {
  const path = join(dir, `fifo-${++fileCount}`);
  execFileSync('mkfifo', [path]);
  return path;
}

const flushed = (sink: InstanceType<typeof LineSink>): Promise<void> => new Promise((resolve) => sink.flush(resolve));

/** null when equal; otherwise where the bytes first differ, with a little context (no 10 MB diffs). */
function difference(actual: Buffer, expected: Buffer): string | null {
  if (actual.equals(expected)) return null;
  let at = 0;
  while (at < actual.length && at < expected.length && actual[at] === expected[at]) at++;
  const around = (buffer: Buffer): string => JSON.stringify(buffer.subarray(Math.max(0, at - 40), at + 40).toString('utf8'));
  return `lengths ${actual.length} vs ${expected.length} (expected); first difference at byte ${at}: got ${around(actual)}, expected ${around(expected)}`;
}

/** Mixed widths: ASCII, 2-byte é, 3-byte €, 4-byte (surrogate pair) emoji. */
function textLine(index: number): string {
  const pad = 'aé€😀'.repeat(index % 23);
  return `{"n":${index},"text":"${pad}"}\n`;
}

describe('to a file', () => {
  test('100k lines, multi-byte text and lines larger than a write buffer arrive complete and in order, in few writes', async () => {
    const { path, fd } = tempFile();
    const sink = new LineSink(fd, { maxPendingBytes: 1 << 30 });
    const lines: string[] = [];
    let refused = 0;
    for (let index = 0; index < 100_000; index++) {
      let line = textLine(index);
      if (index === 500) line = `{"big":"${'€'.repeat(100_000)}"}\n`; // 300 KB, bigger than the 64 KiB buffers
      if (index === 50_000) line = `{"big":"${'x'.repeat(70_000)}"}\n`; // ASCII, still bigger than one buffer
      if (!sink.write(line)) refused++;
      lines.push(line);
    }
    expect(refused).toBe(0);
    const expected = Buffer.from(lines.join(''));
    let contentAtCallback: Buffer | null = null;
    await new Promise<void>((resolve) =>
      sink.flush(() => {
        contentAtCallback = fs.readFileSync(path);
        resolve();
      }),
    );
    expect(difference(contentAtCallback!, expected)).toBeNull();
    expect(sink.dropped).toBe(0);
    // Everything was written in the same turn, so it went out in one batch (libuv splits it past IOV_MAX).
    expect(attempts.get(fd)!.length).toBeLessThanOrEqual(3);
    fs.closeSync(fd);
  });

  test('lines written over many event-loop turns (buffers reused) are neither lost, repeated nor corrupted', async () => {
    const { path, fd } = tempFile();
    const sink = new LineSink(fd);
    const lines: string[] = [];
    for (let turn = 0; turn < 300; turn++) {
      for (let index = 0; index < 200; index++) {
        const line = textLine(turn * 200 + index);
        sink.write(line);
        lines.push(line);
      }
      await new Promise((resolve) => setImmediate(resolve));
    }
    await flushed(sink);
    expect(difference(fs.readFileSync(path), Buffer.from(lines.join('')))).toBeNull();
    // One write per turn at most, not one per line.
    expect(attempts.get(fd)!.length).toBeLessThanOrEqual(400);
    fs.closeSync(fd);
  });

  test('flush calls back at once when nothing is pending, otherwise only after the lines are written', async () => {
    const { path, fd } = tempFile();
    const sink = new LineSink(fd);
    let called = false;
    sink.flush(() => (called = true));
    expect(called).toBe(true);

    sink.write('one\n');
    sink.write('two\n');
    let content: string | null = null;
    const done = new Promise<void>((resolve) =>
      sink.flush(() => {
        content = fs.readFileSync(path, 'utf8');
        resolve();
      }),
    );
    expect(content).toBeNull(); // not synchronously: the write is asynchronous
    await done;
    expect(content).toBe('one\ntwo\n');
    fs.closeSync(fd);
  });

  test('flushSync also reports lines dropped since the last write', () => {
    const { path, fd } = tempFile();
    const sink = new LineSink(fd, { maxPendingBytes: 10, droppedLine: (count) => `dropped ${count}\n` });
    for (const line of ['first line\n', 'second\n', 'third\n']) sink.write(line);
    expect(sink.dropped).toBe(2);
    sink.flushSync(); // at exit, before any asynchronous write
    expect(fs.readFileSync(path, 'utf8')).toBe('first line\ndropped 2\n');
    fs.closeSync(fd);
  });

  test('flushSync writes everything pending before it returns, and nothing twice afterwards', async () => {
    const { path, fd } = tempFile();
    const sink = new LineSink(fd);
    const lines = Array.from({ length: 5000 }, (_, index) => textLine(index));
    for (const line of lines) sink.write(line);
    sink.flushSync();
    const expected = Buffer.from(lines.join(''));
    expect(difference(fs.readFileSync(path), expected)).toBeNull();
    await flushed(sink);
    await sleep(20);
    expect(difference(fs.readFileSync(path), expected)).toBeNull();
    fs.closeSync(fd);
  });
});

describe('shared (several processes on one pipe)', () => {
  /** Lines of 1 to ~3000 bytes, so batches fill the 4 KiB buffers unevenly. */
  function varied(count: number, tag: string): string[] {
    return Array.from({ length: count }, (_, index) => `{"s":"${tag}","n":${index},"pad":"${'ü'.repeat((index * 7919) % 1400)}"}\n`);
  }

  test('every write is at most PIPE_BUF bytes of whole lines; without shared the writes are larger', async () => {
    const lines = varied(3000, 'a');
    const expected = Buffer.from(lines.join(''));
    const run = async (shared: boolean): Promise<Buffer[]> => {
      const { path, fd } = tempFile();
      const sink = new LineSink(fd, { shared });
      for (const [index, line] of lines.entries()) {
        sink.write(line);
        if (index % 100 === 0) await new Promise((resolve) => setImmediate(resolve));
      }
      await flushed(sink);
      expect(difference(fs.readFileSync(path), expected)).toBeNull();
      fs.closeSync(fd);
      return attempts.get(fd)!;
    };

    const shared = await run(true);
    expect(shared.length).toBeGreaterThan(expected.length / PIPE_BUF);
    const bad = shared.filter((write) => write.length > PIPE_BUF || write.at(-1) !== 0x0a || write.length === 0);
    expect(bad.map((write) => write.length)).toEqual([]);
    // The same lines unshared go out in bigger writes: the check above can fail.
    expect(Math.max(...(await run(false)).map((write) => write.length))).toBeGreaterThan(PIPE_BUF);
  });

  test('a line longer than PIPE_BUF is still written whole, in a write of its own', async () => {
    const { path, fd } = tempFile();
    const sink = new LineSink(fd, { shared: true });
    const long = `{"long":"${'€'.repeat(5000)}"}\n`;
    const lines = ['{"before":1}\n', long, '{"after":1}\n'];
    for (const line of lines) sink.write(line);
    await flushed(sink);
    expect(fs.readFileSync(path, 'utf8')).toBe(lines.join(''));
    const writes = attempts.get(fd)!.map((write) => write.toString('utf8'));
    expect(writes).toContain(long);
    for (const write of writes) if (write !== long) expect(Buffer.byteLength(write)).toBeLessThanOrEqual(PIPE_BUF);
    fs.closeSync(fd);
  });

  test('two sinks on one full, slowly read FIFO: every line arrives intact and each sink in order', async () => {
    const path = fifo();
    const writerA = open(path, fs.constants.O_RDWR | fs.constants.O_NONBLOCK);
    const writerB = open(path, fs.constants.O_RDWR | fs.constants.O_NONBLOCK);
    const reader = open(path, fs.constants.O_RDONLY | fs.constants.O_NONBLOCK);
    const sinks = { a: new LineSink(writerA, { shared: true }), b: new LineSink(writerB, { shared: true }) };
    const count = 1500; // about 1 MiB per sink, many times what the pipe holds
    const sent = { a: varied(count, 'a'), b: varied(count, 'b') };
    const total = Buffer.byteLength(sent.a.join('')) + Buffer.byteLength(sent.b.join(''));

    const received: Buffer[] = [];
    let receivedBytes = 0;
    const chunk = Buffer.alloc(16 * 1024);
    const readSome = (chunks = 1): void => {
      try {
        for (let read = 0; read < chunks; read++) {
          const size = fs.readSync(reader, chunk, 0, chunk.length, null);
          received.push(Buffer.from(chunk.subarray(0, size)));
          receivedBytes += size;
        }
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== 'EAGAIN') throw error;
      }
    };
    // Both write in the same turns while the reader takes only 16 KiB now and then, so the pipe stays full.
    for (let index = 0; index < count; index++) {
      sinks.a.write(sent.a[index]!);
      sinks.b.write(sent.b[index]!);
      if (index % 50 === 0) {
        readSome();
        await sleep(1);
      }
    }
    await waitFor(
      () => {
        readSome(4);
        return receivedBytes >= total;
      },
      20_000,
      'all bytes through the FIFO',
    );
    expect(sinks.a.dropped + sinks.b.dropped).toBe(0);

    const lines = Buffer.concat(received).toString('utf8').split('\n');
    expect(lines.pop()).toBe('');
    const seen = { a: [] as number[], b: [] as number[] };
    const broken: string[] = [];
    for (const line of lines) {
      try {
        const entry = JSON.parse(line) as { s: 'a' | 'b'; n: number };
        seen[entry.s].push(entry.n);
      } catch {
        broken.push(line.slice(0, 80));
      }
    }
    expect(broken).toEqual([]);
    const inOrder = Array.from({ length: count }, (_, index) => index);
    expect(seen.a).toEqual(inOrder);
    expect(seen.b).toEqual(inOrder);
    for (const fd of [writerA, writerB, reader]) fs.closeSync(fd);
  }, 30_000);
});

describe('a FIFO nobody reads (O_NONBLOCK: EAGAIN)', () => {
  const line = (index: number): string => `{"n":${index},"pad":"${'x'.repeat(80)}"}\n`;

  test('writes never block or throw; past maxPendingBytes lines are dropped and counted, then reported once after what was kept', async () => {
    const path = fifo();
    const fd = open(path, fs.constants.O_RDWR | fs.constants.O_NONBLOCK);
    const maxPendingBytes = 256 * 1024; // four times what a pipe holds
    const sink = new LineSink(fd, { maxPendingBytes });

    let accepted = 0;
    const started = performance.now();
    for (let index = 0; index < 10_000; index++) {
      if (sink.write(line(index))) {
        expect(index).toBe(accepted); // once dropping starts, nothing gets through: nothing was written yet
        accepted++;
      }
    }
    expect(performance.now() - started).toBeLessThan(2000); // synchronous copies only
    // A line is taken while fewer than maxPendingBytes are pending, so exactly these were:
    let expectedAccepted = 0;
    for (let bytes = 0; bytes < maxPendingBytes;) bytes += Buffer.byteLength(line(expectedAccepted++));
    expect(accepted).toBe(expectedAccepted);
    expect(sink.dropped).toBe(10_000 - accepted);

    // The pipe fills up; the sink keeps retrying without completing, and keeps dropping.
    let flushedAt: number | null = null;
    sink.flush(() => (flushedAt = performance.now()));
    await waitFor(() => (attempts.get(fd)?.length ?? 0) >= 5, 5000, 'retries after EAGAIN');
    await sleep(100);
    expect(flushedAt).toBeNull();
    const dropped = 10_000 - accepted;
    expect(sink.dropped).toBe(dropped);

    const reader = open(path, fs.constants.O_RDONLY | fs.constants.O_NONBLOCK);
    const received: Buffer[] = [];
    const chunk = Buffer.alloc(64 * 1024);
    const drain = (): string => {
      for (;;) {
        try {
          const size = fs.readSync(reader, chunk, 0, chunk.length, null);
          received.push(Buffer.from(chunk.subarray(0, size)));
        } catch (error) {
          if ((error as NodeJS.ErrnoException).code !== 'EAGAIN') throw error;
          return Buffer.concat(received).toString('utf8');
        }
      }
    };
    await waitFor(() => drain().includes('dropped'), 10_000, 'the dropped-lines report');
    await waitFor(() => flushedAt !== null, 5000, 'the flush callback');
    await sleep(50);
    const lines = drain().split('\n');
    expect(lines.pop()).toBe('');
    const kept = Array.from({ length: accepted }, (_, index) => line(index).slice(0, -1));
    expect(lines.slice(0, accepted)).toEqual(kept);
    expect(lines.slice(accepted).map((text) => JSON.parse(text))).toEqual([{ msg: 'log lines dropped', dropped_lines: dropped }]);
    expect(sink.dropped).toBe(0);

    // Writing resumes normally afterwards, with no second report.
    expect(sink.write(line(20_000))).toBe(true);
    await flushed(sink);
    await sleep(20);
    expect(
      drain()
        .split('\n')
        .slice(accepted + 1),
    ).toEqual([line(20_000).slice(0, -1), '']);
    fs.closeSync(reader);
    fs.closeSync(fd);
  }, 30_000);

  test('with lines still coming, each report (from droppedLine) sits where the lines it counts are missing', async () => {
    const path = fifo();
    const fd = open(path, fs.constants.O_RDWR | fs.constants.O_NONBLOCK);
    const reader = open(path, fs.constants.O_RDONLY | fs.constants.O_NONBLOCK);
    const sink = new LineSink(fd, { maxPendingBytes: 100 * 1024, droppedLine: (count) => `DROPPED ${count}\n` });
    let accepted = 0;
    for (let index = 0; index < 3000; index++) if (sink.write(line(index))) accepted++;
    expect(accepted).toBeLessThan(3000);

    const chunk = Buffer.alloc(64 * 1024);
    let text = '';
    const drain = (): void => {
      for (;;) {
        try {
          const size = fs.readSync(reader, chunk, 0, chunk.length, null);
          text += chunk.toString('utf8', 0, size);
        } catch (error) {
          if ((error as NodeJS.ErrnoException).code !== 'EAGAIN') throw error;
          return;
        }
      }
    };
    // Keep logging while the reader catches up: every line is either delivered or counted in a report.
    let next = 3000;
    await waitFor(
      async () => {
        drain();
        sink.write(line(next++));
        await sleep(2);
        return text.includes('DROPPED');
      },
      10_000,
      'a report',
    );
    await flushed(sink);
    await sleep(20);
    drain();
    // Walk the output: between two delivered lines the reports account for exactly the lines missing there.
    let expected = 0;
    let reported = 0;
    let reports = 0;
    for (const entry of text.split('\n').slice(0, -1)) {
      if (entry.startsWith('DROPPED ')) {
        reported += Number(entry.slice('DROPPED '.length));
        reports++;
        continue;
      }
      const n = (JSON.parse(entry) as { n: number }).n;
      expect({ n, missing: n - expected }).toEqual({ n, missing: reported });
      expected = n + 1;
      reported = 0;
    }
    expect(next - expected).toBe(reported + sink.dropped);
    expect(reports).toBeGreaterThan(0);
    fs.closeSync(reader);
    fs.closeSync(fd);
  }, 30_000);

  test('flushSync on a descriptor that stays full gives up after about a second instead of hanging the exit', () => {
    const path = fifo();
    const fd = open(path, fs.constants.O_RDWR | fs.constants.O_NONBLOCK);
    const sink = new LineSink(fd);
    for (let index = 0; index < 5_000; index++) sink.write(line(index)); // ~450 KB, several pipes' worth
    const started = performance.now();
    sink.flushSync();
    const elapsed = performance.now() - started;
    expect(elapsed).toBeGreaterThan(900);
    expect(elapsed).toBeLessThan(3_000);
    fs.closeSync(fd);
  }, 10_000);
});
