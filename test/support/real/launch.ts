/** What the daemon starters share past process.ts: a free port to start on, and the log a daemon writes. */
import { existsSync, readFileSync } from 'node:fs';
import { freePort } from '../wait.js';
import { withPortRetry, type Managed } from './process.js';

/** Starts `launch(port)` on a free loopback port, again on another one when the port was taken meanwhile. */
export async function launchOnFreePort(launch: (port: number) => Promise<Managed>): Promise<{ port: number; managed: Managed }> {
  let port = 0;
  const managed = await withPortRetry(async () => {
    port = await freePort();
    return launch(port);
  });
  return { port, managed };
}

/** The non-empty lines of a log a daemon writes; none before the file exists. */
export function logLines(file: string): string[] {
  return existsSync(file)
    ? readFileSync(file, 'utf8')
        .split('\n')
        .filter((line) => line !== '')
    : [];
}
