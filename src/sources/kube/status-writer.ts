import type { CustomObjectsApi } from '@kubernetes/client-node';
import type { ResourceStatus } from '../../config/model.js';
import type { Logger } from '../../observability/logger.js';
import type { KubeObject } from './resource-watch.js';

interface Condition {
  type: string;
  status: string;
  reason: string;
  message: string;
  observedGeneration: number;
  lastTransitionTime: string;
}

export const GROUP = 'apiproxy.io';
export const VERSION = 'v1alpha1';
export const PLURAL = 'modelroutes';
export const POLICY_PLURAL = 'clientpolicies';

/**
 * Writes each object's `Accepted` condition (ModelRoutes, ClientPolicies),
 * only when it differs from what the object already says. Only the replica
 * holding the status Lease calls it (status-lease.ts), so two versions of the
 * gateway during a rollout never take turns rewriting a condition.
 */
export class StatusWriter {
  readonly #api: CustomObjectsApi;
  readonly #logger: Logger;
  readonly #plural: string;
  readonly #inFlight = new Map<string, string>();

  constructor(api: CustomObjectsApi, logger: Logger, plural: string) {
    this.#api = api;
    this.#logger = logger;
    this.#plural = plural;
  }

  reconcile(statuses: readonly ResourceStatus[], objects: ReadonlyMap<string, KubeObject>): void {
    for (const status of statuses) {
      const key = `${status.namespace}/${status.name}`;
      const object = objects.get(key);
      if (object === undefined) continue;
      const wanted = signature(status.generation, status.accepted ? 'True' : 'False', status.reason, status.message);
      const current = currentCondition(object);
      const observed = (object['status'] as { observedGeneration?: number } | undefined)?.observedGeneration;
      if (
        current !== null &&
        observed === status.generation &&
        signature(current.observedGeneration, current.status, current.reason, current.message) === wanted
      ) {
        continue;
      }
      if (this.#inFlight.get(key) === wanted) continue;
      this.#inFlight.set(key, wanted);
      void this.#patch(status, current).finally(() => {
        if (this.#inFlight.get(key) === wanted) this.#inFlight.delete(key);
      });
    }
  }

  async #patch(status: ResourceStatus, current: Condition | null): Promise<void> {
    const value = status.accepted ? 'True' : 'False';
    const condition: Condition = {
      type: 'Accepted',
      status: value,
      reason: status.reason,
      message: status.message,
      observedGeneration: status.generation,
      lastTransitionTime: current !== null && current.status === value ? current.lastTransitionTime : new Date().toISOString().replace(/\.\d+Z$/, 'Z'),
    };
    try {
      await this.#api.patchNamespacedCustomObjectStatus({
        group: GROUP,
        version: VERSION,
        namespace: status.namespace,
        plural: this.#plural,
        name: status.name,
        body: [{ op: 'add', path: '/status', value: { observedGeneration: status.generation, conditions: [condition] } }],
      });
    } catch (error) {
      // Deleted since the verdict was computed: its status no longer matters.
      if ((error as { code?: unknown }).code === 404) return;
      this.#logger.warn(
        { resource: this.#plural, object: `${status.namespace}/${status.name}`, err: { message: (error as Error).message } },
        'could not write status',
      );
    }
  }
}

function currentCondition(object: KubeObject): Condition | null {
  const conditions = (object['status'] as { conditions?: Condition[] } | undefined)?.conditions;
  return conditions?.find((c) => c.type === 'Accepted') ?? null;
}

function signature(generation: number, status: string, reason: string, message: string): string {
  return `${generation}|${status}|${reason}|${message}`;
}
