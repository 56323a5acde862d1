/**
 * A real tinyproxy (Debian's) on a free loopback port: plain requests and CONNECT to any port, to
 * loopback destinations only, optional basic auth, its log in its own temp dir.
 *
 *   const proxy = await startTinyproxy({ basicAuth: { user: 'alice', password: 's3cret' } });
 *   proxy.log()   // lines such as "CONNECT ... Request (file descriptor 5): GET http://127.0.0.1:4321/ HTTP/1.1"
 *   await proxy.stop();
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { launchOnFreePort, logLines } from './launch.js';
import type { Managed } from './process.js';
import { RealPartError, canConnect, makeWorkDir, removeWorkDir, requireBinary, startManaged, waitReady } from './process.js';

export interface TinyproxyOptions {
  /** When given, requests without these Proxy-Authorization (Basic) credentials get 407. */
  basicAuth?: { user: string; password: string };
  startTimeoutMs?: number;
}

export interface TinyproxyHandle {
  /** http://127.0.0.1:port (no credentials). */
  readonly url: string;
  readonly port: number;
  /** SIGTERM and wait; removes the temp dir. */
  stop(): Promise<void>;
  /** tinyproxy's log lines so far (LogLevel Info: one "Request" line per proxied request). */
  log(): string[];
}

export async function startTinyproxy(options: TinyproxyOptions = {}): Promise<TinyproxyHandle> {
  const bin = requireBinary('tinyproxy');
  const auth = options.basicAuth;
  // tinyproxy's config has no quoting for BasicAuth: one word each.
  if (auth && (/\s/.test(auth.user + auth.password) || auth.user === '' || auth.password === '')) {
    throw new RealPartError('REAL_PART_BAD_OPTIONS', 'tinyproxy basicAuth: user and password must be non-empty words without spaces');
  }
  const dir = makeWorkDir('tinyproxy');
  try {
    const logFile = join(dir, 'tinyproxy.log');
    const outFile = join(dir, 'tinyproxy.out');
    const confFile = join(dir, 'tinyproxy.conf');
    const filterFile = join(dir, 'filter');
    // Host names a request may go to (extended regular expressions); everything else is denied.
    writeFileSync(filterFile, '^127\\.[0-9.]+$\n^localhost$\n');

    const launch = async (port: number): Promise<Managed> => {
      const conf = [
        `Port ${port}`,
        'Listen 127.0.0.1',
        'Allow 127.0.0.1',
        'Timeout 60',
        `LogFile "${logFile}"`,
        'LogLevel Info',
        'MaxClients 100',
        `Filter "${filterFile}"`,
        'FilterType ere',
        'FilterDefaultDeny Yes',
        // No ConnectPort line: CONNECT is allowed to every port (Debian's stock file allows 443 and 563).
      ];
      if (auth) conf.push(`BasicAuth ${auth.user} ${auth.password}`);
      writeFileSync(confFile, `${conf.join('\n')}\n`);
      // -d: stay in the foreground.
      const managed = startManaged(bin, ['-d', '-c', confFile], outFile);
      await waitReady(`tinyproxy on port ${port}`, managed, [outFile, logFile], () => canConnect(port), options.startTimeoutMs ?? 10_000);
      return managed;
    };

    const { port, managed } = await launchOnFreePort(launch);
    return {
      url: `http://127.0.0.1:${port}`,
      port,
      async stop() {
        await managed.stop();
        removeWorkDir(dir);
      },
      log: () => logLines(logFile),
    };
  } catch (err) {
    removeWorkDir(dir);
    throw err;
  }
}
