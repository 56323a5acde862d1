import type { IncomingMessage } from 'node:http';
import type { Socket } from 'node:net';

/** How long, and how much, a connection is read after an answer given before its request was read to its end. */
export interface LingerLimits {
  /** The longest time the rest of the request is read (nginx's `lingering_time`). */
  readonly lingerMs: number;
  /** Closes sooner when the client sends nothing for this long (nginx's `lingering_timeout`). */
  readonly lingerIdleMs: number;
  /** Closes sooner once this many body bytes were read and discarded. */
  readonly lingerBytes: number;
}

/**
 * Closes a connection whose answer (a 413, a 401) left before its request
 * was read to its end, the way nginx does ("lingering close"): the answer
 * goes out with `connection: close`, the gateway ends its side, and it reads
 * and discards what the client still sends, up to the limits, before closing.
 *
 * Closing at once loses the answer for clients that send their whole body
 * before they read (Python's urllib and requests): more bytes reaching a
 * closed socket make the kernel reset the connection, and a reset can
 * discard the answer the client has not read yet. Reading on lets such a
 * client finish sending, read the answer, and close.
 *
 * Call before the answer is written, with the answer saying
 * `connection: close`: Node's server then hands the connection back through
 * `socket.destroySoon()` once the answer is written, which is where the
 * lingering starts instead of the close.
 */
export function closeAfterLingering(req: IncomingMessage, limits: LingerLimits): void {
  const socket = req.socket;
  let discarded = 0;
  let idle: NodeJS.Timeout | null = null;
  const close = (): void => {
    socket.destroy();
  };
  // Flowing with no one to keep the bytes: they are read and dropped (a refused body was paused).
  req.on('data', (chunk: Buffer) => {
    discarded += chunk.length;
    if (discarded > limits.lingerBytes) close();
    else idle?.refresh();
  });
  req.resume();
  socket.destroySoon = function lingerThenClose(this: Socket): void {
    if (this.destroyed) return;
    this.end(); // the answer is complete: the client sees the end after it
    const deadline = setTimeout(close, limits.lingerMs);
    idle = setTimeout(close, limits.lingerIdleMs);
    deadline.unref();
    idle.unref();
    this.once('close', () => {
      clearTimeout(deadline);
      if (idle !== null) clearTimeout(idle);
    });
  };
}
