/**
 * Runs small I/O tasks (an uncork, a response's end) at the end of the
 * current event-loop turn: in the check phase, right after the turn's I/O
 * callbacks. The writes a busy turn produces then leave back to back instead
 * of one every few tens of microseconds, and a reader woken by the first
 * finds the next ones already queued: on loopback a socket write runs its
 * reader's wakeup inline, and one wakeup per batch instead of one per write
 * took ~8 µs of CPU off each proxied request (docs/performance.md). A task
 * waits at most for the rest of the turn it was queued in.
 */

type Task<A, B> = (a: A, b: B) => void;

/** Flat triples: task, first argument, second argument. No closure or record per task. */
let queued: unknown[] = [];

/** Queues `task(a, b)` for the end of this turn; tasks run in the order queued. */
export function atTurnEnd<A, B>(task: Task<A, B>, a: A, b: B): void {
  queued.push(task, a, b);
  if (queued.length === 3) setImmediate(runQueued);
}

function runQueued(): void {
  const batch = queued;
  queued = []; // a task queued while these run gets a turn of its own
  let failure: { error: unknown } | null = null;
  for (let i = 0; i < batch.length; i += 3) {
    try {
      (batch[i] as Task<unknown, unknown>)(batch[i + 1], batch[i + 2]);
    } catch (error) {
      failure ??= { error }; // every other task still runs: a lost uncork would stall its socket
    }
  }
  if (failure !== null) throw failure.error;
}
