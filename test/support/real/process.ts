/**
 * Running a real program for a test: find it, start it with its output in a log file, wait until it
 * serves, stop it. Shared by the starters in this folder.
 *
 * Inside jest, `process.on('exit')` registers on jest's copy of `process` and never fires, so the
 * safety net against strays is a guard process per child: a shell blocked reading a pipe from
 * this node process. When node goes away by any means (even SIGKILL) the kernel closes the pipe,
 * the read returns and the guard kills the child. A normal stop tells the guard to exit quietly.
 *
 * No imports from this repo: test/unit/real-parts-guard.test.ts loads this file in a plain node
 * child (type stripping) to prove the guard.
 */
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { accessSync, chmodSync, closeSync, constants, existsSync, mkdtempSync, openSync, readFileSync, rmSync, statSync } from 'node:fs';
import { connect } from 'node:net';
import type { Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

export type RealPartErrorCode = 'REAL_PART_MISSING' | 'REAL_PART_BAD_OPTIONS' | 'REAL_PART_START_FAILED' | 'REAL_PART_NOT_READY' | 'REAL_PART_NO_TRACE';

/** Every failure of a starter; tests fail on it, they never skip. */
export class RealPartError extends Error {
  readonly code: RealPartErrorCode;
  constructor(code: RealPartErrorCode, message: string) {
    super(message);
    this.name = 'RealPartError';
    this.code = code;
  }
}

/** The installer every missing Debian program points to. */
export const INSTALL_HINT = '.ci/run installs it (test/tools/install-packages.sh)';

/** Absolute path of `name` on PATH, or a REAL_PART_MISSING error naming how to get it. */
export function requireBinary(name: string, hint = INSTALL_HINT): string {
  for (const dir of (process.env.PATH ?? '').split(delimiter)) {
    if (dir === '') continue;
    const candidate = join(dir, name);
    try {
      if (statSync(candidate).isFile()) {
        accessSync(candidate, constants.X_OK);
        return candidate;
      }
    } catch {
      // not in this directory
    }
  }
  throw new RealPartError('REAL_PART_MISSING', `${name} not found on PATH: ${hint}`);
}

/** A private, world-traversable temp dir (some daemons drop root privileges and must reach it). */
export function makeWorkDir(prefix: string): string {
  const dir = mkdtempSync(join(tmpdir(), `api-proxy-${prefix}-`));
  chmodSync(dir, 0o755);
  return dir;
}

export function removeWorkDir(dir: string): void {
  rmSync(dir, { recursive: true, force: true, maxRetries: 3 });
}

/** The last `max` characters of a log file, for error messages. */
export function tailOf(file: string, max = 3000): string {
  if (!existsSync(file)) return '(no log)';
  const text = readFileSync(file, 'utf8');
  return text.length > max ? `…${text.slice(-max)}` : text;
}

export interface Managed {
  readonly child: ChildProcess;
  /** Resolves when the process has exited (for whatever reason). */
  readonly exited: Promise<void>;
  /** undefined while running; then how it ended. */
  exitInfo(): string | undefined;
  /** SIGTERM, then SIGKILL after `graceMs`; resolves once the process is gone. */
  stop(graceMs?: number): Promise<void>;
  /** SIGKILL at once; resolves once the process is gone. */
  kill(): Promise<void>;
}

/** Starts `bin args` with stdout and stderr appended to `logFile`; nothing of it keeps node alive. */
export function startManaged(bin: string, args: string[], logFile: string, env?: NodeJS.ProcessEnv): Managed {
  const fd = openSync(logFile, 'a');
  const child = spawn(bin, args, { stdio: ['ignore', fd, fd], env: env ?? process.env });
  closeSync(fd);
  const guard = child.pid === undefined ? undefined : startGuard(child.pid);
  let info: string | undefined;
  const exited = new Promise<void>((resolve) => {
    child.once('exit', (code, signal) => {
      info = `exited with ${signal ?? `code ${code}`}`;
      // Also after a crash: the guard must not kill a pid the system may hand out again.
      guard?.stdin?.end('stop\n');
      resolve();
    });
    child.once('error', (err) => {
      info = `failed to start: ${err.message}`;
      guard?.stdin?.end('stop\n');
      resolve();
    });
  });
  child.unref();
  const signalAndWait = async (signal: NodeJS.Signals, graceMs: number): Promise<void> => {
    if (info !== undefined) return;
    child.kill(signal);
    const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
    await exited;
    clearTimeout(timer);
  };
  return {
    child,
    exited,
    exitInfo: () => info,
    stop: (graceMs = 5000) => signalAndWait('SIGTERM', graceMs),
    kill: () => signalAndWait('SIGKILL', 0),
  };
}

function startGuard(pid: number): ChildProcess {
  const script = 'read -r line; [ "$line" = stop ] || kill -KILL "$1" 2>/dev/null';
  const guard = spawn('/bin/sh', ['-c', script, 'api-proxy-real-part-guard', String(pid)], {
    stdio: ['pipe', 'ignore', 'ignore'],
  });
  guard.unref();
  // The pipe's write end is a net.Socket: unref'd, it does not keep node (or a jest worker) alive.
  (guard.stdin as Socket | null)?.unref();
  guard.stdin?.on('error', () => {
    // EPIPE if the guard is already gone: nothing left to guard
  });
  return guard;
}

/** Resolves once something accepts a TCP connection on 127.0.0.1:`port`. */
export function canConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host: '127.0.0.1', port });
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

/**
 * Polls `ready` every 50 ms until it is true. Fails with REAL_PART_START_FAILED (and the log's tail)
 * as soon as the process exits, with REAL_PART_NOT_READY after `timeoutMs`.
 */
export async function waitReady(what: string, managed: Managed, logFiles: string | string[], ready: () => Promise<boolean>, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  const logs = (): string =>
    [logFiles]
      .flat()
      .map((file) => tailOf(file))
      .join('\n');
  for (;;) {
    const info = managed.exitInfo();
    if (info !== undefined) {
      throw new RealPartError('REAL_PART_START_FAILED', `${what} ${info} before it was ready; log:\n${logs()}`);
    }
    if (await ready().catch(() => false)) return;
    if (Date.now() > deadline) {
      await managed.kill();
      throw new RealPartError('REAL_PART_NOT_READY', `${what} not ready within ${timeoutMs} ms; log:\n${logs()}`);
    }
    await sleep(50);
  }
}

/**
 * Runs `start` again, with fresh free ports, when the daemon could not bind (another process can take
 * a port between freePort() and the bind): three tries. Any other failure is thrown at once.
 */
export async function withPortRetry<T>(start: () => Promise<T>): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await start();
    } catch (err) {
      const portTaken = err instanceof RealPartError && err.code === 'REAL_PART_START_FAILED' && /already in use/i.test(err.message);
      if (attempt >= 3 || !portTaken) throw err;
    }
  }
}
