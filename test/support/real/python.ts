/**
 * python3, for tests that need a client other than node's (urllib's connection handling differs
 * from undici's).
 */
import { execFile } from 'node:child_process';
import { requireBinary } from './process.js';

/** Absolute path of python3, or a REAL_PART_MISSING error. */
export function python3(): string {
  return requireBinary('python3');
}

export interface PythonResult {
  /** The exit code; null when a signal (or the timeout) ended it. */
  status: number | null;
  stdout: string;
  stderr: string;
}

/**
 * Runs `python3 -c code args...` to completion (at most `timeoutMs`). Asynchronous, so the python
 * client can talk to a server in this very process.
 */
export function runPython(code: string, args: string[] = [], timeoutMs = 30_000): Promise<PythonResult> {
  const bin = python3();
  return new Promise((resolve) => {
    execFile(bin, ['-c', code, ...args], { encoding: 'utf8', timeout: timeoutMs }, (err, stdout, stderr) => {
      const status = err === null ? 0 : typeof err.code === 'number' ? err.code : null;
      resolve({ status, stdout, stderr });
    });
  });
}
