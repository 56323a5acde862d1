/**
 * A real redis-server (Debian's) on a free loopback port, with its own temp dir and no persistence.
 *
 *   const redis = await startRedis({ password: 'pw', tls: true });
 *   createClient({ url: redis.url, socket: { tls: true, ca: redis.ca } })
 *   await redis.kill();     // SIGKILL: "Redis dies mid-traffic"
 *   await redis.restart();  // same port, same password, empty data set
 *   redis.freeze(); redis.thaw();  // SIGSTOP / SIGCONT: a Redis that stops answering (connections stay open)
 *   await redis.stop();     // in afterAll
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { freePort } from '../wait.js';
import type { Managed } from './process.js';
import { canConnect, makeWorkDir, removeWorkDir, requireBinary, startManaged, tailOf, waitReady, withPortRetry } from './process.js';
import { makeTestCertificates } from './tls.js';

export interface RedisOptions {
  /** Sets `requirepass`: clients must AUTH with it. */
  password?: string;
  /** Serve TLS only (tls-port; the plain port is off), with a certificate from a throwaway CA. */
  tls?: boolean;
  startTimeoutMs?: number;
}

export interface RedisHandle {
  /** redis://[:password@]127.0.0.1:port, or rediss:// with tls. */
  readonly url: string;
  readonly host: string;
  readonly port: number;
  readonly password: string | undefined;
  /** With tls: PEM of the CA the client must trust (the server's certificate names 127.0.0.1). */
  readonly ca: string | undefined;
  /** SIGTERM and wait; removes the temp dir. */
  stop(): Promise<void>;
  /** SIGKILL and wait, keeping the temp dir so restart() works. */
  kill(): Promise<void>;
  /** Starts redis-server again on the same port with the same password (stops it first if running). */
  restart(): Promise<void>;
  /** SIGSTOP: the server stops answering while its connections stay open. */
  freeze(): void;
  /** SIGCONT after freeze(). */
  thaw(): void;
  /** redis-server's own log. */
  log(): string;
}

const HOST = '127.0.0.1';

export async function startRedis(options: RedisOptions = {}): Promise<RedisHandle> {
  const bin = requireBinary('redis-server');
  const dir = makeWorkDir('redis');
  try {
    const certs = options.tls ? makeTestCertificates(dir) : undefined;
    const timeoutMs = options.startTimeoutMs ?? 10_000;
    const logFile = join(dir, 'redis.log');
    const confFile = join(dir, 'redis.conf');

    const launch = async (port: number): Promise<Managed> => {
      const lines = [
        `bind ${HOST}`,
        'daemonize no',
        `dir ${dir}`,
        // No RDB or AOF: a restart comes back empty, as a cache-only Redis does.
        'save ""',
        'appendonly no',
        'logfile ""',
      ];
      if (certs) {
        lines.push(
          'port 0',
          `tls-port ${port}`,
          `tls-cert-file ${certs.certFile}`,
          `tls-key-file ${certs.keyFile}`,
          `tls-ca-cert-file ${certs.caFile}`,
          'tls-auth-clients no',
        );
      } else {
        lines.push(`port ${port}`);
      }
      if (options.password !== undefined) lines.push(`requirepass "${options.password.replace(/["\\]/g, '\\$&')}"`);
      writeFileSync(confFile, `${lines.join('\n')}\n`);
      const managed = startManaged(bin, [confFile], logFile);
      await waitReady(`redis-server on port ${port}`, managed, logFile, () => canConnect(port), timeoutMs);
      return managed;
    };

    let port = 0;
    let current = await withPortRetry(async () => {
      port = await freePort();
      return launch(port);
    });
    const auth = options.password === undefined ? '' : `:${encodeURIComponent(options.password)}@`;
    return {
      url: `${certs ? 'rediss' : 'redis'}://${auth}${HOST}:${port}`,
      host: HOST,
      port,
      password: options.password,
      ca: certs?.ca,
      async stop() {
        await current.stop();
        removeWorkDir(dir);
      },
      kill: () => current.kill(),
      freeze: () => void current.child.kill('SIGSTOP'),
      thaw: () => void current.child.kill('SIGCONT'),
      async restart() {
        await current.stop();
        current = await launch(port);
      },
      log: () => tailOf(logFile, 20_000),
    };
  } catch (err) {
    removeWorkDir(dir);
    throw err;
  }
}
