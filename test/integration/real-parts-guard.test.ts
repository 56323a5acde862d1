/**
 * The safety net of test/support/real/process.ts: a program a test started must not outlive the
 * node process that started it, even when that process is SIGKILLed (a jest worker killed on a
 * timeout), and a normal stop must leave nothing behind either.
 */
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { waitFor } from '../support/wait.js';

const PROCESS_TS = fileURLToPath(new URL('../support/real/process.ts', import.meta.url));

/** Alive and not a zombie (a killed orphan stays a zombie until init reaps it). */
function alive(pid: number): boolean {
  const stat = `/proc/${pid}/stat`;
  if (!existsSync(stat)) return false;
  try {
    const state = readFileSync(stat, 'utf8').replace(/^.*\) /s, '')[0];
    return state !== 'Z' && state !== 'X';
  } catch {
    return false;
  }
}

/** Guard processes watching `pid` (their command line names it). */
function guardsOf(pid: number): number[] {
  const guards: number[] = [];
  for (const entry of readdirSync('/proc')
    .filter((name) => /^\d+$/.test(name))
    .map(Number)) {
    try {
      const args = readFileSync(`/proc/${entry}/cmdline`, 'utf8').split('\0');
      if (args.includes('api-proxy-real-part-guard') && args.includes(String(pid)) && alive(entry)) guards.push(entry);
    } catch {
      // gone meanwhile
    }
  }
  return guards;
}

/**
 * A plain node process (type stripping loads process.ts as is) that starts `sleep 300` through
 * startManaged, prints its pid, then obeys "stop" / "crash" lines on stdin.
 */
function startOwner(dir: string): { owner: ChildProcess; sleepPid: Promise<number> } {
  const script = `
    import { startManaged } from ${JSON.stringify(PROCESS_TS)};
    import { createInterface } from 'node:readline';
    const managed = startManaged('sleep', ['300'], ${JSON.stringify(join(dir, 'sleep.log'))});
    console.log(managed.child.pid);
    for await (const line of createInterface({ input: process.stdin })) {
      if (line === 'stop') { await managed.stop(); console.log('stopped'); }
    }`;
  const owner = spawn(process.execPath, ['--no-warnings', '--input-type=module', '-e', script], { stdio: ['pipe', 'pipe', 'inherit'] });
  const sleepPid = new Promise<number>((resolve, reject) => {
    owner.stdout?.once('data', (chunk: Buffer) => resolve(Number(chunk.toString().trim().split('\n')[0])));
    owner.once('exit', (code) => reject(new Error(`owner exited with ${code} before printing a pid`)));
  });
  return { owner, sleepPid };
}

describe('real-part guard', () => {
  let dir: string;
  const owners: ChildProcess[] = [];
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'api-proxy-guard-'));
  });
  afterEach(async () => {
    await Promise.all(
      owners
        .splice(0)
        .map((owner) =>
          owner.exitCode !== null || owner.signalCode !== null ? Promise.resolve() : new Promise((resolve) => owner.once('exit', resolve).kill('SIGKILL')),
        ),
    );
    rmSync(dir, { recursive: true, force: true });
  });

  it('kills the program when the node process that started it is SIGKILLed', async () => {
    const { owner, sleepPid } = startOwner(dir);
    owners.push(owner);
    const pid = await sleepPid;
    expect(alive(pid)).toBe(true);
    expect(guardsOf(pid)).toHaveLength(1);

    owner.kill('SIGKILL');
    await waitFor(() => !alive(pid), 5000, `sleep (pid ${pid}) killed by its guard`);
    await waitFor(() => guardsOf(pid).length === 0, 5000, 'guard gone');
  });

  it('a normal stop ends the program and its guard, and the guard kills nothing later', async () => {
    const { owner, sleepPid } = startOwner(dir);
    owners.push(owner);
    const pid = await sleepPid;
    const stopped = new Promise<void>((resolve) => owner.stdout?.on('data', (chunk: Buffer) => chunk.toString().includes('stopped') && resolve()));
    owner.stdin?.write('stop\n');
    await stopped;
    expect(alive(pid)).toBe(false);
    await waitFor(() => guardsOf(pid).length === 0, 5000, 'guard exits after a normal stop');
  });
});
