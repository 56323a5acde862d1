import { write, writeSync, writev } from 'node:fs';

/** Size of each reusable write buffer; a line that cannot fit in one gets a buffer of its own. */
const CHUNK_BYTES = 64 * 1024;
/** PIPE_BUF on Linux: the largest pipe write that is never split. */
const ATOMIC_BYTES = 4096;
/** Past this many unwritten bytes (a stalled log reader) new lines are dropped and counted, not held. */
const DEFAULT_MAX_PENDING_BYTES = 8 * 1024 * 1024;
const RETRY_MS = 10;
const SYNC_FLUSH_LIMIT_MS = 1_000;

export interface LineSinkOptions {
  readonly maxPendingBytes?: number;
  /**
   * Several processes share the descriptor (cluster workers on one pipe):
   * every write is then at most PIPE_BUF bytes of whole lines, which POSIX
   * keeps in one piece, so lines from different processes never interleave.
   */
  readonly shared?: boolean;
  /** Builds the line written once dropping stops, so it is in the log's own format. */
  readonly droppedLine?: (dropped: number) => string;
}

/**
 * Log lines to a file descriptor, written asynchronously and in batches: lines
 * are copied into reusable buffers, and one write per event-loop turn takes
 * everything gathered since the last one. One write is in flight at a time,
 * so lines keep their order. A slow or blocked reader never blocks the event
 * loop; past a bound the sink drops lines and says how many once it recovers.
 *
 * It stands in for pino's sonic-boom destination, whose per-line
 * `Buffer.byteLength` of the whole pending string grows with the backlog
 * (docs/performance.md, "Hand-written where a library exists").
 */
export class LineSink {
  readonly #fd: number;
  readonly #maxPendingBytes: number;
  readonly #droppedLine: (dropped: number) => string;
  readonly #chunkBytes: number;
  readonly #shared: boolean;
  #filling: Buffer;
  #used = 0;
  /** Filled buffers (whole lines) waiting for the next write. */
  #sealed: Buffer[] = [];
  #pendingBytes = 0;
  #spare: Buffer[] = [];
  #writing = false;
  #scheduled = false;
  #dropped = 0;
  #waiters: (() => void)[] = [];

  constructor(fd: number, options: LineSinkOptions = {}) {
    this.#fd = fd;
    this.#maxPendingBytes = options.maxPendingBytes ?? DEFAULT_MAX_PENDING_BYTES;
    this.#droppedLine = options.droppedLine ?? ((dropped) => `{"msg":"log lines dropped","dropped_lines":${dropped}}\n`);
    this.#shared = options.shared ?? false;
    this.#chunkBytes = this.#shared ? ATOMIC_BYTES : CHUNK_BYTES;
    this.#filling = Buffer.allocUnsafe(this.#chunkBytes);
  }

  /** Lines dropped since the last report (the reader was too slow). */
  get dropped(): number {
    return this.#dropped;
  }

  /** Appends one line (with its newline); never blocks. */
  write(line: string): boolean {
    if (this.#pendingBytes + this.#used >= this.#maxPendingBytes) {
      this.#dropped++;
      return false;
    }
    if (this.#dropped > 0) this.#reportDropped();
    this.#append(line);
    if (!this.#scheduled && !this.#writing) {
      this.#scheduled = true;
      setImmediate(this.#flushNow);
    }
    return true;
  }

  /** Calls `done` once everything written so far has reached the descriptor (pino's `logger.flush(cb)`). */
  flush(done?: () => void): void {
    if (done !== undefined) {
      if (!this.#writing && this.#used === 0 && this.#sealed.length === 0) {
        done();
        return;
      }
      this.#waiters.push(done);
    }
    if (!this.#writing) this.#flushNow();
  }

  /**
   * Writes everything not yet handed to a write, blocking: for the last lines
   * before the process exits. A write still in flight may then land after them.
   */
  flushSync(): void {
    if (this.#dropped > 0) this.#reportDropped();
    this.#seal();
    // A descriptor that stays full (a non-blocking pipe nobody reads) gets a bounded wait, not a hang at exit.
    const giveUpAt = Date.now() + SYNC_FLUSH_LIMIT_MS;
    const sealed = this.#sealed;
    this.#sealed = [];
    for (const buffer of sealed) this.#pendingBytes -= buffer.length; // an in-flight write keeps its own count
    for (const buffer of sealed) {
      let offset = 0;
      while (offset < buffer.length) {
        try {
          offset += writeSync(this.#fd, buffer, offset);
        } catch (error) {
          if ((error as NodeJS.ErrnoException).code !== 'EAGAIN' || Date.now() > giveUpAt) return; // what is left is lost
        }
      }
    }
  }

  #reportDropped(): void {
    const dropped = this.#dropped;
    this.#dropped = 0;
    this.#append(this.#droppedLine(dropped));
  }

  #append(line: string): void {
    // Latin-1 characters take two bytes and the rest up to three: `length * 3` always fits.
    if (line.length * 3 > this.#filling.length - this.#used) {
      this.#seal();
      if (line.length * 3 > this.#chunkBytes) {
        const whole = Buffer.from(line);
        this.#sealed.push(whole);
        this.#pendingBytes += whole.length;
        return;
      }
    }
    this.#used += this.#filling.write(line, this.#used);
  }

  /** Moves the filled part of the current buffer to the write queue. */
  #seal(): void {
    if (this.#used === 0) return;
    this.#sealed.push(this.#filling.subarray(0, this.#used));
    this.#pendingBytes += this.#used;
    this.#filling = this.#spare.pop() ?? Buffer.allocUnsafe(this.#chunkBytes);
    this.#used = 0;
  }

  readonly #flushNow = (): void => {
    this.#scheduled = false;
    if (this.#writing) return;
    this.#seal();
    if (this.#sealed.length === 0) {
      this.#settleWaiters();
      return;
    }
    const batch = this.#sealed;
    this.#sealed = [];
    this.#writing = true;
    this.#writeBatch(batch);
  };

  #writeBatch(batch: Buffer[]): void {
    const done = (error: NodeJS.ErrnoException | null, written: number): void => this.#afterWrite(batch, error, written);
    if (batch.length === 1 || this.#shared) write(this.#fd, batch[0]!, 0, batch[0]!.length, null, done);
    else writev(this.#fd, batch, null, done);
  }

  #afterWrite(batch: Buffer[], error: NodeJS.ErrnoException | null, written: number): void {
    if (error !== null) {
      if (error.code === 'EAGAIN') {
        setTimeout(() => this.#writeBatch(batch), RETRY_MS).unref();
        return;
      }
      // A closed or broken log descriptor: nothing to retry; count what is lost.
      written = batch.reduce((sum, buffer) => sum + buffer.length, 0);
    }
    const rest = skipWritten(batch, written);
    this.#pendingBytes -= written;
    if (rest.length > 0) {
      this.#writeBatch(rest);
      return;
    }
    for (const buffer of batch) {
      if (buffer.byteOffset === 0 && buffer.buffer.byteLength === this.#chunkBytes && this.#spare.length < 2)
        this.#spare.push(Buffer.from(buffer.buffer, 0, this.#chunkBytes));
    }
    this.#writing = false;
    // The reader caught up: say what was lost now, not only once another line is logged.
    if (this.#dropped > 0 && this.#pendingBytes + this.#used < this.#maxPendingBytes) this.#reportDropped();
    if (this.#used > 0 || this.#sealed.length > 0) this.#flushNow();
    else this.#settleWaiters();
  }

  #settleWaiters(): void {
    const waiters = this.#waiters;
    if (waiters.length === 0) return;
    this.#waiters = [];
    for (const waiter of waiters) waiter();
  }
}

/** The part of `batch` a write of `written` bytes left over. */
function skipWritten(batch: Buffer[], written: number): Buffer[] {
  let index = 0;
  while (index < batch.length && written >= batch[index]!.length) written -= batch[index++]!.length;
  if (index === batch.length) return [];
  const rest = batch.slice(index);
  rest[0] = rest[0]!.subarray(written);
  return rest;
}
