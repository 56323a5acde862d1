import type { SlotOp } from '../policy/counter-store.js';
import { MemoryCounters } from '../policy/memory-counters.js';
import { isClusterMessage, type LimitsAdmitted } from './messages.js';

/** The part of a cluster worker the host talks to. */
export interface LimitsWorker {
  send(message: LimitsAdmitted): void;
  isConnected(): boolean;
}

/**
 * The cluster primary's limit counters, shared by its workers (each asks
 * with PrimaryCounters). It remembers which worker holds which stream slot,
 * so the slots of a worker that dies are given back at once.
 */
export class LimitsHost {
  readonly #counters = new MemoryCounters();
  readonly #held = new Map<LimitsWorker, Map<string, SlotOp>>();
  #nextHandle = 1;

  /** Handles the limits messages among a worker's messages. */
  onMessage(from: LimitsWorker, message: unknown): void {
    if (!isClusterMessage(message)) return;
    if (message.type === 'api-proxy:limits-admit') {
      const result = this.#counters.admit(message.admission);
      const slot = message.admission.slot;
      let handle: string | null = null;
      if (result.allowed && slot !== null) {
        handle = String(this.#nextHandle++);
        let held = this.#held.get(from);
        if (held === undefined) this.#held.set(from, (held = new Map<string, SlotOp>()));
        held.set(handle, slot);
      }
      const reply: LimitsAdmitted = { type: 'api-proxy:limits-admitted', id: message.id, result: { ...result, slotHandle: handle } };
      if (from.isConnected()) from.send(reply);
    } else if (message.type === 'api-proxy:limits-settle') {
      if (message.charges.length > 0) this.#counters.charge(message.charges);
      const held = this.#held.get(from);
      for (const { handle } of message.releases) {
        const slot = held?.get(handle);
        if (slot === undefined) continue;
        held!.delete(handle);
        this.#counters.release(slot);
      }
    }
  }

  /** A worker exited: the slots its streams held are free. */
  workerExited(worker: LimitsWorker): void {
    const held = this.#held.get(worker);
    this.#held.delete(worker);
    if (held !== undefined) for (const slot of held.values()) this.#counters.release(slot);
  }

  close(): Promise<void> {
    return this.#counters.close();
  }
}
