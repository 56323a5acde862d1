import { hostname } from 'node:os';
import { randomUUID } from 'node:crypto';
import { CoordinationV1Api, CoreV1Api, CustomObjectsApi, KubeConfig, type KubernetesListObject, type KubernetesObject } from '@kubernetes/client-node';
import type { KubeInputs } from '../../config/model.js';
import type { RoutingSnapshot } from '../../config/snapshot.js';
import type { KubeSourceFactory, KubeSourceHandle } from '../../gateway.js';
import { ResourceWatch, type KubeObject, type ListCall } from './resource-watch.js';
import { LEASE_TIMING, StatusLease, type LeaseTiming } from './status-lease.js';
import { GROUP, PLURAL, POLICY_PLURAL, StatusWriter, VERSION } from './status-writer.js';
import { secretEntries, toConsumer, toPolicyInput, toRouteInput } from './translate.js';
import { UpstreamKeyWatches } from './upstream-key-watches.js';

const ALL = '*';

export interface KubeSourceOptions {
  /** This replica's holderIdentity on the status Lease; by default the host (pod) name and a random suffix. */
  readonly identity?: string;
  /** The status Lease's timing; client-go's defaults unless a test shortens them. */
  readonly leaseTiming?: LeaseTiming;
}

/**
 * The Kubernetes source: ModelRoutes, ClientPolicies, client-key Secrets and
 * upstream-key Secrets, each through a resilient list+watch, turned into
 * plain KubeInputs (no Kubernetes types leave this folder) and pushed into
 * the store. Statuses are written by the one replica holding the status
 * Lease; every replica watches and enforces. `writeStatus: false` for all but
 * one of several cluster workers: those never contend for the Lease.
 */
export function kubeSource(kubeConfig: KubeConfig, namespace: string, writeStatus = true, options: KubeSourceOptions = {}): KubeSourceFactory {
  return ({ store, readiness, metrics, logger, snapshot, setKube }): KubeSourceHandle => {
    const settings = snapshot.kubernetes;
    const custom = kubeConfig.makeApiClient(CustomObjectsApi);
    const core = kubeConfig.makeApiClient(CoreV1Api);
    const namespaces = settings.namespaces.length === 0 ? [namespace] : settings.namespaces.includes(ALL) ? [ALL] : [...new Set(settings.namespaces)];
    const silenceTimeoutMs = settings.watchTimeoutSeconds * 1000;
    const routeStatusWriter = new StatusWriter(custom, logger, PLURAL);
    const policyStatusWriter = new StatusWriter(custom, logger, POLICY_PLURAL);

    let scheduled = false;
    const onChange = (): void => {
      if (scheduled) return;
      scheduled = true;
      setImmediate(rebuild);
    };

    const routeWatches: ResourceWatch[] = [];
    const policyWatches: ResourceWatch[] = [];
    const keyWatches: ResourceWatch[] = [];
    const common = { kubeConfig, silenceTimeoutMs, onChange, logger };
    for (const ns of namespaces) {
      const all = ns === ALL;
      const customWatch = (plural: string, list: ListCall): ResourceWatch =>
        new ResourceWatch({
          ...common,
          name: `${plural}${all ? '' : ` in ${ns}`}`,
          list,
          watchPath: all ? `/apis/${GROUP}/${VERSION}/${plural}` : `/apis/${GROUP}/${VERSION}/namespaces/${ns}/${plural}`,
        });
      // The custom-objects client answers with the server's JSON, a list object.
      const listCustom = async (plural: string): Promise<KubernetesListObject<KubernetesObject>> =>
        (all
          ? await custom.listClusterCustomObject({ group: GROUP, version: VERSION, plural })
          : await custom.listNamespacedCustomObject({ group: GROUP, version: VERSION, namespace: ns, plural })) as KubernetesListObject<KubernetesObject>;
      routeWatches.push(customWatch(PLURAL, () => listCustom(PLURAL)));
      policyWatches.push(customWatch(POLICY_PLURAL, () => listCustom(POLICY_PLURAL).catch(noPoliciesWithoutTheirCrd)));
      const labelSelector = settings.clientKeySelector;
      keyWatches.push(
        new ResourceWatch({
          ...common,
          name: `client-key secrets${all ? '' : ` in ${ns}`}`,
          list: () => (all ? core.listSecretForAllNamespaces({ labelSelector }) : core.listNamespacedSecret({ namespace: ns, labelSelector })),
          watchPath: all ? '/api/v1/secrets' : `/api/v1/namespaces/${ns}/secrets`,
          labelSelector,
        }),
      );
    }
    // Upstream-key Secrets follow the config: the first snapshot's now, later reloads' as they swap in.
    const upstreamKeyWatches = new UpstreamKeyWatches({
      defaultNamespace: namespace,
      onChange,
      logger,
      create: (ns, name) => {
        const fieldSelector = `metadata.name=${name}`;
        return new ResourceWatch({
          ...common,
          name: `upstream-key secret ${ns}/${name}`,
          list: () => core.listNamespacedSecret({ namespace: ns, fieldSelector }),
          watchPath: `/api/v1/namespaces/${ns}/secrets`,
          fieldSelector,
        });
      },
    });
    upstreamKeyWatches.follow(snapshot);
    store.onSwap((current) => upstreamKeyWatches.follow(current));
    const fixedWatches = [...routeWatches, ...policyWatches, ...keyWatches];
    const allWatches = (): ResourceWatch[] => [...fixedWatches, ...upstreamKeyWatches.watches];

    function objectsOf(watches: readonly ResourceWatch[]): Map<string, KubeObject> {
      const objects = new Map<string, KubeObject>();
      for (const watch of watches) for (const item of watch.items) objects.set(`${item.metadata?.namespace}/${item.metadata?.name}`, item);
      return objects;
    }

    // The objects the current snapshot was built from, for the status writers.
    let routes = new Map<string, KubeObject>();
    let policies = new Map<string, KubeObject>();

    // Readiness waits for the first sync of every watch there is by then. A Secret named by a later reload does not
    // take a ready gateway out of service (every replica reloads the same file at once): until its watch has listed,
    // the upstream has no key, as with a Secret that does not exist.
    let synced = false;
    function rebuild(): void {
      scheduled = false;
      if (!synced && !allWatches().every((watch) => watch.synced)) return;
      synced = true;
      routes = objectsOf(routeWatches);
      policies = objectsOf(policyWatches);
      const upstreamKeys = new Map<string, string>();
      for (const watch of upstreamKeyWatches.watches) for (const item of watch.items) secretEntries(item, upstreamKeys);
      const inputs: KubeInputs = {
        routes: [...routes.values()].map(toRouteInput),
        policies: [...policies.values()].map(toPolicyInput),
        consumers: keyWatches.flatMap((watch) => watch.items.map(toConsumer)),
        upstreamKeys,
      };
      try {
        setKube(inputs);
        metrics.configReload('kubernetes', 'success');
      } catch (error) {
        metrics.configReload('kubernetes', 'failure');
        logger.error({ err: { message: (error as Error).message } }, 'Kubernetes update rejected; keeping the last good snapshot');
      }
      readiness.setGate('kubernetes sync', true);
    }

    // Statuses: written by the replica holding the Lease, on every swap (also after file reloads: an upstream
    // appears or goes) and at once when it starts holding it.
    const writeStatuses = (current: RoutingSnapshot | null): void => {
      if (current === null) return;
      routeStatusWriter.reconcile(current.routeStatuses, routes);
      policyStatusWriter.reconcile(current.policyStatuses, policies);
    };
    const lease = writeStatus
      ? new StatusLease({
          api: kubeConfig.makeApiClient(CoordinationV1Api),
          namespace,
          name: settings.leaseName,
          identity: options.identity ?? `${hostname()}_${randomUUID()}`,
          timing: options.leaseTiming ?? LEASE_TIMING,
          logger,
          onLeading: () => writeStatuses(store.current),
        })
      : null;
    if (lease !== null) store.onSwap((current) => lease.leading && writeStatuses(current));

    return {
      async start() {
        for (const watch of fixedWatches) watch.start();
        upstreamKeyWatches.start();
        lease?.start();
        const watches = allWatches();
        await Promise.all(watches.map((watch) => watch.firstSync));
        logger.info({ namespaces, watches: watches.length }, 'Kubernetes sources synced');
      },
      async stop() {
        await Promise.all([...fixedWatches.map((watch) => watch.stop()), upstreamKeyWatches.stop(), lease?.stop()]);
      },
    };
  };
}

/**
 * A cluster without the ClientPolicy CRD has no ClientPolicies: its list is
 * 404 until the CRD is applied (`helm upgrade` does not add CRDs), and
 * routes and keys must keep working meanwhile. The watch after it fails and
 * is retried with backoff, so the policies arrive once the CRD does.
 */
function noPoliciesWithoutTheirCrd(error: unknown): KubernetesListObject<KubernetesObject> {
  if ((error as { code?: unknown } | null)?.code !== 404) throw error;
  return { apiVersion: `${GROUP}/${VERSION}`, kind: 'ClientPolicyList', metadata: {}, items: [] };
}

/** Kubeconfig from KUBECONFIG, ~/.kube/config, or the pod's service account. */
export function loadKubeConfig(): KubeConfig {
  const kubeConfig = new KubeConfig();
  kubeConfig.loadFromDefault();
  return kubeConfig;
}
