import type { FileInputs, KubeInputs } from './model.js';
import { buildSnapshot, type RoutingSnapshot } from './snapshot.js';

type Listener = (snapshot: RoutingSnapshot) => void;

/**
 * Holds the latest inputs of every source and the snapshot built from them.
 * Each update rebuilds from all sources; a failing build throws and leaves the
 * current snapshot in place.
 */
export class SnapshotStore {
  #snapshot: RoutingSnapshot | null = null;
  #file: FileInputs | null = null;
  #kube: KubeInputs | null = null;
  #version = 0;
  readonly #listeners: Listener[] = [];
  readonly #namespace: string;

  constructor(namespace: string) {
    this.#namespace = namespace;
  }

  /** The current snapshot; null until the config file has loaded once. */
  get current(): RoutingSnapshot | null {
    return this.#snapshot;
  }

  setFile(inputs: FileInputs): RoutingSnapshot {
    return this.#rebuild(inputs, this.#kube);
  }

  setKube(inputs: KubeInputs): RoutingSnapshot | null {
    if (this.#file === null) {
      this.#kube = inputs;
      return null;
    }
    return this.#rebuild(this.#file, inputs);
  }

  onSwap(listener: Listener): void {
    this.#listeners.push(listener);
  }

  #rebuild(file: FileInputs, kube: KubeInputs | null): RoutingSnapshot {
    const snapshot = buildSnapshot({ file, kube, namespace: this.#namespace, version: this.#version + 1 });
    this.#version = snapshot.version;
    this.#file = file;
    this.#kube = kube;
    this.#snapshot = snapshot;
    for (const listener of this.#listeners) listener(snapshot);
    return snapshot;
  }
}
