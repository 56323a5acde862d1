import { createHash } from 'node:crypto';
import { readFileSync, watch, type FSWatcher } from 'node:fs';
import { basename, dirname, resolve } from 'node:path';
import { loadConfigFile, type Env } from '../config/load-file.js';
import type { FileInputs } from '../config/model.js';

export interface FileSourceOptions {
  readonly path: string;
  readonly env: Env;
  /** Applies new inputs; throws when they cannot be used (the last good config stays). */
  readonly apply: (inputs: FileInputs) => void;
  readonly onResult: (result: { ok: true } | { ok: false; error: Error }) => void;
  /** Fallback poll, for filesystems without change events. */
  readonly pollMs?: number;
}

/**
 * Watches the config file and the secret files it names. Reacts to writes,
 * write-then-rename and Kubernetes' `..data` symlink swaps (it watches the
 * directories, not the inodes), and polls as a fallback. A change that fails
 * to load or apply is reported once and the last good config stays.
 */
export class FileSource {
  readonly #options: FileSourceOptions;
  #files: string[];
  #fingerprint = '';
  #watchers: FSWatcher[] = [];
  #timer: NodeJS.Timeout | null = null;
  #debounce: NodeJS.Timeout | null = null;

  constructor(options: FileSourceOptions) {
    this.#options = options;
    this.#files = [resolve(options.path)];
  }

  /** Loads and applies the file once; throws if it cannot. */
  loadInitial(): void {
    const fingerprint = this.#readFingerprint();
    const loaded = loadConfigFile(this.#options.path, this.#options.env);
    this.#options.apply(loaded.inputs);
    this.#files = [...loaded.files];
    this.#fingerprint = fingerprint;
  }

  start(): void {
    this.#watchDirectories();
    this.#timer = setInterval(() => this.check(), this.#options.pollMs ?? 1_000);
    this.#timer.unref();
  }

  stop(): void {
    if (this.#timer !== null) clearInterval(this.#timer);
    if (this.#debounce !== null) clearTimeout(this.#debounce);
    for (const watcher of this.#watchers) watcher.close();
    this.#watchers = [];
  }

  /** Reloads when any watched file's content changed since the last attempt. */
  check(): void {
    const fingerprint = this.#readFingerprint();
    if (fingerprint === this.#fingerprint) return;
    this.#fingerprint = fingerprint;
    try {
      const loaded = loadConfigFile(this.#options.path, this.#options.env);
      this.#options.apply(loaded.inputs);
      const filesChanged = loaded.files.join('\n') !== this.#files.join('\n');
      this.#files = [...loaded.files];
      if (filesChanged) {
        this.#fingerprint = this.#readFingerprint();
        this.#watchDirectories();
      }
      this.#options.onResult({ ok: true });
    } catch (error) {
      this.#options.onResult({ ok: false, error: error as Error });
    }
  }

  #readFingerprint(): string {
    const hash = createHash('sha256');
    for (const file of this.#files) {
      try {
        hash.update(readFileSync(file));
      } catch (error) {
        hash.update(`unreadable:${(error as NodeJS.ErrnoException).code ?? 'error'}`);
      }
      hash.update('\0');
    }
    return hash.digest('hex');
  }

  #watchDirectories(): void {
    for (const watcher of this.#watchers) watcher.close();
    this.#watchers = [];
    const namesByDirectory = new Map<string, Set<string>>();
    for (const file of this.#files) {
      const names = namesByDirectory.get(dirname(file)) ?? new Set<string>();
      names.add(basename(file));
      namesByDirectory.set(dirname(file), names);
    }
    for (const [directory, names] of namesByDirectory) {
      try {
        const watcher = watch(directory, { persistent: false }, (_event, filename) => {
          if (concernsWatchedFile(filename, names)) this.#scheduleCheck();
        });
        watcher.on('error', () => undefined); // the poll still covers it
        this.#watchers.push(watcher);
      } catch {
        // A missing directory is covered by the poll.
      }
    }
  }

  #scheduleCheck(): void {
    if (this.#debounce !== null) return;
    this.#debounce = setTimeout(() => {
      this.#debounce = null;
      this.check();
    }, 20);
    this.#debounce.unref();
  }
}

/**
 * Whether a change event in a watched directory can concern the files read
 * from it: one of their names (an in-place write, or a rename onto it), a
 * Kubernetes volume's `..data` swap, or an event without a name. Anything
 * else (e.g. a log file written next to the config) would otherwise re-read
 * and hash the whole config on every write.
 */
export function concernsWatchedFile(filename: string | Buffer | null, names: ReadonlySet<string>): boolean {
  if (filename === null) return true;
  const name = filename.toString();
  return names.has(name) || name.startsWith('..');
}
