/**
 * A real squid (Debian's) as an HTTP forward proxy on a free loopback port: plain requests and
 * CONNECT to any port, to loopback destinations only, no caching, logs in its own temp dir.
 *
 *   const squid = await startSquid({ users: { alice: 's3cret' } });   // basic auth, else 407
 *   new ProxyAgent({ uri: squid.url, token: `Basic ${btoa('alice:s3cret')}` })
 *   squid.accessLog()   // lines such as "... TCP_TUNNEL/200 ... CONNECT 127.0.0.1:43211 alice ..."
 *   await squid.stop();
 *
 * Squid writes a CONNECT's log line when the tunnel closes: close the client's connections before
 * looking for it.
 */
import { execFileSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { launchOnFreePort, logLines } from './launch.js';
import type { Managed } from './process.js';
import { INSTALL_HINT, RealPartError, canConnect, makeWorkDir, removeWorkDir, requireBinary, startManaged, tailOf, waitReady } from './process.js';

export interface SquidOptions {
  /** user -> password; when given, every request needs Proxy-Authorization (Basic), else 407. */
  users?: Record<string, string>;
  startTimeoutMs?: number;
}

export interface SquidHandle {
  /** http://127.0.0.1:port (no credentials). */
  readonly url: string;
  readonly port: number;
  /** SIGTERM and wait; removes the temp dir. */
  stop(): Promise<void>;
  /** access.log lines so far, one per finished request or tunnel. */
  accessLog(): string[];
  /** squid's cache.log (startup, errors). */
  log(): string;
}

/** Debian's path of squid's NCSA (htpasswd file) basic auth helper, part of the squid package. */
const NCSA_HELPER = '/usr/lib/squid/basic_ncsa_auth';

export async function startSquid(options: SquidOptions = {}): Promise<SquidHandle> {
  const bin = requireBinary('squid');
  const users = Object.entries(options.users ?? {});
  if (users.length > 0 && !existsSync(NCSA_HELPER)) {
    throw new RealPartError('REAL_PART_MISSING', `${NCSA_HELPER} not found (squid's auth helper): ${INSTALL_HINT}`);
  }
  const dir = makeWorkDir('squid');
  try {
    // Run as root, squid drops to the `proxy` user: its logs dir must be writable by that user.
    const logs = join(dir, 'logs');
    mkdirSync(logs);
    chmodSync(logs, 0o777);
    const passwdFile = join(dir, 'passwd');
    if (users.length > 0) writeFileSync(passwdFile, users.map(([user, password]) => `${user}:${apr1(user, password)}\n`).join(''), { mode: 0o644 });
    const accessLogFile = join(logs, 'access.log');
    const cacheLogFile = join(logs, 'cache.log');
    const outFile = join(dir, 'squid.out');
    const confFile = join(dir, 'squid.conf');

    const launch = async (port: number): Promise<Managed> => {
      const conf = [
        `http_port 127.0.0.1:${port}`,
        `pid_filename ${join(logs, 'squid.pid')}`,
        `access_log stdio:${accessLogFile}`,
        `cache_log ${cacheLogFile}`,
        'cache_store_log none',
        `coredump_dir ${logs}`,
        'netdb_filename none',
        // Nothing cached: every request reaches the upstream.
        'cache deny all',
        // The ICMP pinger helper would outlive a killed squid.
        'pinger_enable off',
        // SIGTERM ends squid at once instead of letting connections drain for 30 s.
        'shutdown_lifetime 0 seconds',
        'visible_hostname api-proxy-test-squid',
        'acl from_loopback src 127.0.0.0/8 ::1',
        // Only loopback destinations: the tests' upstreams. Any port, CONNECT included (squid's
        // stock squid.conf denies CONNECT to ports other than 443; this file has no such rule).
        'acl to_loopback dst 127.0.0.0/8 ::1',
        'http_access deny !from_loopback',
        'http_access deny !to_loopback',
      ];
      if (users.length > 0) {
        conf.push(
          `auth_param basic program ${NCSA_HELPER} ${passwdFile}`,
          'auth_param basic children 2 startup=1 idle=1',
          'auth_param basic realm api-proxy-test',
          'acl authenticated proxy_auth REQUIRED',
          'http_access allow authenticated',
          'http_access deny all',
        );
      } else {
        conf.push('http_access allow all');
      }
      writeFileSync(confFile, `${conf.join('\n')}\n`, { mode: 0o644 });
      // -N: no daemon, no SMP kids: one process to stop. -d 1: startup errors on stderr as well.
      const managed = startManaged(bin, ['-N', '-d', '1', '-f', confFile], outFile);
      await waitReady(`squid on port ${port}`, managed, outFile, () => canConnect(port), options.startTimeoutMs ?? 15_000);
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
      accessLog: () => logLines(accessLogFile),
      log: () => tailOf(cacheLogFile, 20_000),
    };
  } catch (err) {
    removeWorkDir(dir);
    throw err;
  }
}

/** An htpasswd line's hash ($apr1$, which basic_ncsa_auth reads), from `openssl passwd`. */
function apr1(user: string, password: string): string {
  if (/[:\s]/.test(user)) throw new RealPartError('REAL_PART_BAD_OPTIONS', `squid user name with ':' or a space: ${JSON.stringify(user)}`);
  const openssl = requireBinary('openssl');
  return execFileSync(openssl, ['passwd', '-apr1', '-stdin'], { input: `${password}\n`, encoding: 'utf8' }).trim();
}
