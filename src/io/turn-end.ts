import type { Writable } from 'node:stream';

/**
 * Gathers small I/O tasks (an uncork, a response's end) and runs them
 * together: at the end of the current event-loop turn (the check phase,
 * right after the turn's I/O callbacks), or as soon as BATCH_SIZE of them
 * wait. The writes of a busy turn then leave back to back instead of one
 * every few tens of microseconds, and a reader woken by the first finds the
 * next ones already queued: on loopback a socket write runs its reader's
 * wakeup inline, and one wakeup per batch instead of one per write is the
 * largest single saving per proxied request (docs/performance.md, "Writes
 * leave together at the end of the turn").
 */

/**
 * A task waits at most for BATCH_SIZE - 1 others to be queued behind it,
 * or for the rest of its turn: unbounded, the wait was a whole busy turn and
 * time to first byte grew at 500 concurrent streams; 16 keeps the CPU saving.
 */
export const BATCH_SIZE = 16;

/** The usual task: a corked socket's writes leave in one. Also fit for `process.nextTick`. */
export function uncork(socket: Writable): void {
  socket.uncork();
}

/**
 * Holds `socket`'s writes until the end of this turn (or a full batch), when
 * they leave in one write with the other sockets' (the relay of event
 * streams: the events of one turn's upstream reads go out together).
 */
export function corkForTurn(socket: Writable | null): void {
  if (socket === null || socket.writableCorked > 0 || socket.destroyed) return;
  socket.cork();
  atTurnEnd(uncork, socket, null);
}

type Task<A, B> = (a: A, b: B) => void;

/** Flat triples: task, first argument, second argument. No closure or record per task. */
let queued: unknown[] = [];

/** Queues `task(a, b)`; tasks run in the order queued, by the end of this turn. */
export function atTurnEnd<A, B>(task: Task<A, B>, a: A, b: B): void {
  queued.push(task, a, b);
  if (queued.length === 3) setImmediate(runQueued);
  else if (queued.length === 3 * BATCH_SIZE) runQueued();
}

function runQueued(): void {
  const batch = queued;
  if (batch.length === 0) return; // the batch was full and ran early
  queued = []; // a task queued while these run joins the next batch
  let failure: { error: unknown } | null = null;
  for (let i = 0; i < batch.length; i += 3) {
    try {
      (batch[i] as Task<unknown, unknown>)(batch[i + 1], batch[i + 2]);
    } catch (error) {
      failure ??= { error }; // every other task still runs: a lost uncork would stall its socket
    }
  }
  // Thrown where a throw from an I/O callback would be: not into whichever caller filled the batch.
  if (failure !== null) process.nextTick(rethrow, failure.error);
}

function rethrow(error: unknown): never {
  throw error;
}
