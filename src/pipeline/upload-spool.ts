import { randomUUID } from 'node:crypto';
import { open, unlink, type FileHandle } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** Writes to the spool file gather this much first, and reads come back in blocks of this size: fewer trips to the thread pool. */
const FILE_BLOCK = 256 * 1024;

/**
 * The start of an upload, held while the gateway looks for its model: in
 * memory up to `memoryLimit` bytes, then in a temporary file that is
 * unlinked as soon as it is opened, so nothing is left behind whatever
 * happens to the process. Appends and reads are never concurrent: one
 * request's reader appends, then the upload reads back.
 */
export class UploadSpool {
  readonly #memoryLimit: number;
  readonly #dir: string;
  #chunks: Buffer[] = [];
  #length = 0;
  #file: FileHandle | null = null;
  /** Chunks for the file not yet written, and their bytes; `#written` is how many bytes the file has. */
  #pending: Buffer[] = [];
  #pendingBytes = 0;
  #written = 0;
  #released = false;

  /** `dir`: where the file goes (the OS's temporary directory by default: /tmp, or TMPDIR). */
  constructor(memoryLimit: number, dir: string = tmpdir()) {
    this.#memoryLimit = memoryLimit;
    this.#dir = dir;
  }

  get length(): number {
    return this.#length;
  }

  /** Whether the spool moved to a file. */
  get onDisk(): boolean {
    return this.#file !== null;
  }

  async append(chunk: Buffer): Promise<void> {
    if (this.#file === null && this.#length + chunk.length <= this.#memoryLimit) {
      this.#chunks.push(chunk);
      this.#length += chunk.length;
      return;
    }
    if (this.#file === null) await this.#moveToFile();
    this.#pending.push(chunk);
    this.#pendingBytes += chunk.length;
    this.#length += chunk.length;
    if (this.#pendingBytes >= FILE_BLOCK) await this.#flush();
  }

  /** Writes what is pending to the file. */
  async #flush(): Promise<void> {
    if (this.#pendingBytes === 0) return;
    const block = this.#pending.length === 1 ? this.#pending[0]! : Buffer.concat(this.#pending, this.#pendingBytes);
    this.#pending = [];
    this.#pendingBytes = 0;
    await writeAll(this.#file!, block, this.#written);
    this.#written += block.length;
  }

  /** The bytes in [start, end), in blocks. */
  async *read(start: number, end: number): AsyncGenerator<Buffer> {
    if (this.#released) throw new SpoolReadError(start);
    const file = this.#file;
    if (file === null) {
      yield* sliceChunks(this.#chunks, start, end);
      return;
    }
    await this.#flush();
    for (let at = start; at < end;) {
      const size = Math.min(FILE_BLOCK, end - at);
      const block = Buffer.allocUnsafe(size);
      const { bytesRead } = await file.read(block, 0, size, at);
      if (bytesRead === 0) throw new SpoolReadError(at);
      at += bytesRead;
      yield bytesRead === size ? block : block.subarray(0, bytesRead);
    }
  }

  /** The bytes in [start, end) in one buffer (for a small range). */
  async slice(start: number, end: number): Promise<Buffer> {
    const blocks: Buffer[] = [];
    for await (const block of this.read(start, end)) blocks.push(block);
    return blocks.length === 1 ? blocks[0]! : Buffer.concat(blocks);
  }

  /** Frees the memory and closes the file; reading after this fails. */
  async release(): Promise<void> {
    if (this.#released) return;
    this.#released = true;
    this.#chunks = [];
    this.#pending = [];
    const file = this.#file;
    this.#file = null;
    await file?.close();
  }

  async #moveToFile(): Promise<void> {
    const path = join(this.#dir, `api-proxy-upload-${randomUUID()}`);
    const file = await open(path, 'wx+', 0o600);
    try {
      await unlink(path);
      const held = Buffer.concat(this.#chunks, this.#length);
      await writeAll(file, held, 0);
      this.#written = held.length;
    } catch (error) {
      await file.close();
      throw error;
    }
    if (this.#released) {
      await file.close();
      throw new SpoolReadError(0);
    }
    this.#file = file;
    this.#chunks = [];
  }
}

/** A spool file shorter than what was written to it: it was released or truncated underneath. */
export class SpoolReadError extends Error {
  readonly code = 'SPOOL_READ';
  constructor(at: number) {
    super(`the upload spool ended early at byte ${at}`);
    this.name = 'SpoolReadError';
  }
}

async function writeAll(file: FileHandle, chunk: Buffer, position: number): Promise<void> {
  for (let done = 0; done < chunk.length;) {
    const { bytesWritten } = await file.write(chunk, done, chunk.length - done, position + done);
    done += bytesWritten;
  }
}

function* sliceChunks(chunks: readonly Buffer[], start: number, end: number): Generator<Buffer> {
  let at = 0;
  for (const chunk of chunks) {
    const chunkEnd = at + chunk.length;
    if (chunkEnd > start && at < end) yield chunk.subarray(Math.max(0, start - at), Math.min(chunk.length, end - at));
    at = chunkEnd;
    if (at >= end) return;
  }
}
