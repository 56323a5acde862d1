/**
 * atTurnEnd: tasks queued in one turn run together, in order, after the
 * turn's I/O callbacks and before its timers, or at once when a batch is
 * full; a task that throws does not keep the others from running, and its
 * error still surfaces, but not into the caller that filled the batch.
 */
import { spawnSync } from 'node:child_process';
import { createServer, connect, type Server } from 'node:net';
import { fileURLToPath } from 'node:url';
import { atTurnEnd, BATCH_SIZE } from '../../src/io/turn-end.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));

function record(into: string[], name: string): void {
  into.push(name);
}

describe('atTurnEnd', () => {
  it('runs every task queued in a turn in one batch, in order, with its arguments', async () => {
    const order: string[] = [];
    atTurnEnd(record, order, 'a');
    setImmediate(() => order.push('immediate queued after the first task'));
    atTurnEnd(record, order, 'b');
    atTurnEnd((list: string[], n: number) => list.push(`c${n}`), order, 7);
    expect(order).toEqual([]);
    await new Promise((resolve) => setTimeout(resolve, 5));
    expect(order).toEqual(['a', 'b', 'c7', 'immediate queued after the first task']);
  });

  it(`runs a batch as soon as ${BATCH_SIZE} tasks wait, and the tasks after it by the end of the turn`, async () => {
    const order: string[] = [];
    for (let i = 1; i < BATCH_SIZE; i++) atTurnEnd(record, order, `task ${i}`);
    expect(order).toEqual([]);
    atTurnEnd(record, order, `task ${BATCH_SIZE}`);
    expect(order).toHaveLength(BATCH_SIZE);
    expect(order.at(-1)).toBe(`task ${BATCH_SIZE}`);
    atTurnEnd(record, order, 'one more');
    expect(order).toHaveLength(BATCH_SIZE);
    await new Promise((resolve) => setTimeout(resolve, 5));
    expect(order.slice(BATCH_SIZE)).toEqual(['one more']);
  });

  it('runs in the turn that queued it: after an I/O callback, before any timer', async () => {
    const order: string[] = [];
    let server: Server | null = null;
    const done = new Promise<void>((resolve) => {
      server = createServer((socket) => {
        socket.once('data', () => {
          setTimeout(() => {
            order.push('timer');
            socket.destroy();
            resolve();
          }, 0);
          atTurnEnd(record, order, 'turn end');
          order.push('io callback');
        });
      }).listen(0, '127.0.0.1', () => {
        const { port } = server!.address() as { port: number };
        connect(port, '127.0.0.1').end('x');
      });
    });
    await done;
    await new Promise<void>((resolve) => server!.close(() => resolve()));
    expect(order).toEqual(['io callback', 'turn end', 'timer']);
  });

  it('gives a task queued by a running task a turn of its own', async () => {
    const order: string[] = [];
    atTurnEnd(
      (list: string[]) => {
        list.push('first');
        setImmediate(() => list.push('immediate queued by the first'));
        atTurnEnd(record, list, 'queued by the first');
      },
      order,
      null,
    );
    await new Promise((resolve) => setTimeout(resolve, 5));
    expect(order).toEqual(['first', 'immediate queued by the first', 'queued by the first']);
  });

  it('runs the rest of the batch when a task throws, then throws its error', () => {
    // In a process of its own: the error is uncaught there, as a throw from an I/O callback would be.
    const script = `
      import { atTurnEnd } from './src/io/turn-end.ts';
      const say = (_, text) => console.log(text);
      atTurnEnd(say, null, 'before');
      atTurnEnd(() => { throw new Error('task failed'); }, null, null);
      atTurnEnd(say, null, 'after');
      setImmediate(() => console.log('next turn'));
    `;
    const run = spawnSync(process.execPath, ['--input-type=module', '-e', script], { cwd: ROOT, encoding: 'utf8' });
    expect(run.stdout.trim().split('\n')).toEqual(['before', 'after']);
    expect(run.stderr).toContain('task failed');
    expect(run.status).not.toBe(0);
  });

  it('does not throw a failed task into the caller whose task filled the batch', () => {
    const script = `
      import { atTurnEnd, BATCH_SIZE } from './src/io/turn-end.ts';
      atTurnEnd(() => { throw new Error('task failed'); }, null, null);
      for (let i = 2; i < BATCH_SIZE; i++) atTurnEnd(() => {}, null, null);
      try {
        atTurnEnd(() => console.log('last task ran'), null, null);
        console.log('filled without a throw');
      } catch {
        console.log('the caller got the error');
      }
    `;
    const run = spawnSync(process.execPath, ['--input-type=module', '-e', script], { cwd: ROOT, encoding: 'utf8' });
    expect(run.stdout.trim().split('\n')).toEqual(['last task ran', 'filled without a throw']);
    expect(run.stderr).toContain('task failed');
    expect(run.status).not.toBe(0);
  });
});
