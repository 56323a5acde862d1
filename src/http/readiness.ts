/** What /health/ready reports: ready once config is loaded and every gate (e.g. informer sync) is open, until draining. */
export class Readiness {
  #draining = false;
  readonly #gates = new Map<string, boolean>();
  #configLoaded: () => boolean;

  constructor(configLoaded: () => boolean) {
    this.#configLoaded = configLoaded;
  }

  /** Registers a gate that starts closed. */
  addGate(name: string): void {
    this.#gates.set(name, false);
  }

  setGate(name: string, open: boolean): void {
    this.#gates.set(name, open);
  }

  startDraining(): void {
    this.#draining = true;
  }

  /** Null when ready, else the reason. */
  blocker(): string | null {
    if (this.#draining) return 'draining';
    if (!this.#configLoaded()) return 'config not loaded';
    for (const [name, open] of this.#gates) if (!open) return `waiting for ${name}`;
    return null;
  }
}
