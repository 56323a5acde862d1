import { createServer } from 'node:net';

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/**
 * The suite's one polling loop: polls `check` every 10 ms; resolves with the
 * ms it took, throws naming `what` after `timeoutMs`. A check that throws
 * counts as not yet (a server still starting refuses connections); the last
 * such error is in the timeout's message.
 */
export async function waitFor(check: () => boolean | Promise<boolean>, timeoutMs = 3000, what = 'condition'): Promise<number> {
  const started = Date.now();
  let lastError: unknown = null;
  for (;;) {
    const met = await Promise.resolve()
      .then(check)
      .catch((error: unknown) => {
        lastError = error;
        return false;
      });
    if (met) return Date.now() - started;
    if (Date.now() - started > timeoutMs) {
      const cause = lastError === null ? '' : ` (last error: ${lastError instanceof Error ? lastError.message : JSON.stringify(lastError)})`;
      throw new Error(`${what}: not within ${timeoutMs} ms${cause}`);
    }
    await sleep(10);
  }
}

/**
 * Waits until `read` has stayed the same for `quietMs` and returns that value; throws naming `what`
 * if it still moves after `timeoutMs`. For "the sender is held back": a busy machine only makes it later.
 */
export async function waitForPlateau(read: () => number, quietMs: number, timeoutMs: number, what = 'plateau'): Promise<number> {
  let value = read();
  let since = Date.now();
  await waitFor(
    () => {
      const now = read();
      if (now !== value) [value, since] = [now, Date.now()];
      return Date.now() - since >= quietMs;
    },
    timeoutMs,
    what,
  );
  return value;
}

/** A loopback port nothing listens on right now (for child processes that need a fixed PORT). */
export function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const server = createServer().listen(0, '127.0.0.1', () => {
      const port = (server.address() as { port: number }).port;
      server.close(() => resolve(port));
    });
  });
}
