/**
 * The config file watcher reacts to its own files only. It watches
 * directories (to survive renames and Kubernetes' `..data` swaps), so every
 * write of a log file next to the config used to re-read and hash the whole
 * config: at 100,000 keys, megabytes every 20 ms. The poll is set to a minute
 * here, so that every reload below comes from a change event.
 */
import { linkSync, mkdirSync, mkdtempSync, renameSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { FileInputs } from '../../src/config/model.js';
import { concernsWatchedFile, FileSource } from '../../src/sources/file-source.js';
import { waitFor } from '../support/wait.js';

const config = (model: string): string =>
  JSON.stringify({
    upstreams: { default: { url: 'http://127.0.0.1:9/v1' } },
    client_keys: [{ id: 'k', key: 'sk-file-source-test-key' }],
    model_redirects: { 'gpt-4': model },
  });

function redirectOf(inputs: FileInputs): string | undefined {
  return inputs.routes.find((route) => route.model === 'gpt-4')?.targets[0]?.model;
}

const wait = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

describe('concernsWatchedFile', () => {
  const names = new Set(['config.yaml', 'key.txt']);
  test.each([
    ['config.yaml', true],
    ['key.txt', true],
    ['..data', true],
    ['..2026_11_28_01_02_03.123456789', true],
    ['..data_tmp', true],
    [null, true],
    ['gateway.log', false],
    ['config.yaml.tmp', false],
    ['.config.yaml.swp', false],
  ])('%s: %s', (filename, expected) => {
    expect(concernsWatchedFile(filename, names)).toBe(expected);
  });

  test('a Buffer name (non-UTF-8 file systems) is compared as text', () => {
    expect(concernsWatchedFile(Buffer.from('config.yaml'), names)).toBe(true);
  });
});

describe('FileSource change events', () => {
  let dir: string;
  let source: FileSource | null = null;
  const applied: string[] = [];

  function start(path: string): void {
    source = new FileSource({
      path,
      env: {},
      apply: (inputs) => void applied.push(redirectOf(inputs) ?? '?'),
      onResult: () => undefined,
      pollMs: 60_000,
    });
    source.loadInitial();
    source.start();
  }

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'file-source-'));
    applied.length = 0;
  });
  afterEach(() => {
    source?.stop();
    source = null;
    rmSync(dir, { recursive: true, force: true });
  });

  test('an in-place write and a write-then-rename reload', async () => {
    const path = join(dir, 'config.json');
    writeFileSync(path, config('first'));
    start(path);
    expect(applied).toEqual(['first']);
    writeFileSync(path, config('written'));
    await waitFor(() => applied.at(-1) === 'written', 2000, 'the in-place write');
    writeFileSync(join(dir, 'config.json.tmp'), config('renamed'));
    renameSync(join(dir, 'config.json.tmp'), path);
    await waitFor(() => applied.at(-1) === 'renamed', 2000, 'the rename');
  });

  test("a Kubernetes volume's ..data symlink swap reloads", async () => {
    const version = (name: string, model: string): void => {
      mkdirSync(join(dir, name));
      writeFileSync(join(dir, name, 'config.json'), config(model));
    };
    version('..v1', 'v1');
    symlinkSync('..v1', join(dir, '..data'));
    symlinkSync('..data/config.json', join(dir, 'config.json'));
    start(join(dir, 'config.json'));
    version('..v2', 'v2');
    symlinkSync('..v2', join(dir, '..data_tmp'));
    renameSync(join(dir, '..data_tmp'), join(dir, '..data'));
    await waitFor(() => applied.at(-1) === 'v2', 2000, 'the ..data swap');
  });

  test('writes to other files in the directory do not make it re-read the config', async () => {
    const path = join(dir, 'config.json');
    writeFileSync(path, config('first'));
    start(path);
    // Change the config through a hard link elsewhere: its content changes, with no event in its directory.
    const elsewhere = mkdtempSync(join(tmpdir(), 'file-source-link-'));
    try {
      linkSync(path, join(elsewhere, 'config.json'));
      writeFileSync(join(elsewhere, 'config.json'), config('unnoticed'));
      // A log file written next to the config: had these writes triggered a check, it would find the change.
      for (let line = 0; line < 20; line++) {
        writeFileSync(join(dir, 'gateway.log'), `line ${line}\n`, { flag: 'a' });
        await wait(5);
      }
      await wait(300);
      expect(applied).toEqual(['first']);
      // The watcher is alive: an event for the config itself does reload it.
      writeFileSync(path, config('noticed'));
      await waitFor(() => applied.at(-1) === 'noticed', 2000, 'the direct write');
    } finally {
      rmSync(elsewhere, { recursive: true, force: true });
    }
  });
});
