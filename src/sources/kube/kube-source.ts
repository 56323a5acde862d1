import { CoreV1Api, CustomObjectsApi, KubeConfig, type KubernetesListObject, type KubernetesObject } from '@kubernetes/client-node';
import type { KubeInputs } from '../../config/model.js';
import type { KubeSourceFactory, KubeSourceHandle } from '../../gateway.js';
import { ResourceWatch, type KubeObject } from './resource-watch.js';
import { GROUP, PLURAL, StatusWriter, VERSION } from './status-writer.js';
import { secretEntries, toClientKeys, toRouteInput } from './translate.js';
import { UpstreamKeyWatches } from './upstream-key-watches.js';

const ALL = '*';

/**
 * The Kubernetes source: ModelRoutes, client-key Secrets and upstream-key
 * Secrets, each through a resilient list+watch, turned into plain KubeInputs
 * (no Kubernetes types leave this folder) and pushed into the store.
 * `writeStatus: false` for all but one of several cluster workers: each
 * watches on its own, one writes the ModelRoute statuses.
 */
export function kubeSource(kubeConfig: KubeConfig, namespace: string, writeStatus = true): KubeSourceFactory {
  return ({ store, readiness, metrics, logger, snapshot, setKube }): KubeSourceHandle => {
    const settings = snapshot.kubernetes;
    const custom = kubeConfig.makeApiClient(CustomObjectsApi);
    const core = kubeConfig.makeApiClient(CoreV1Api);
    const namespaces = settings.namespaces.length === 0 ? [namespace] : settings.namespaces.includes(ALL) ? [ALL] : [...new Set(settings.namespaces)];
    const silenceTimeoutMs = settings.watchTimeoutSeconds * 1000;
    const statusWriter = new StatusWriter(custom, logger);

    let scheduled = false;
    const onChange = (): void => {
      if (scheduled) return;
      scheduled = true;
      setImmediate(rebuild);
    };

    const routeWatches: ResourceWatch[] = [];
    const keyWatches: ResourceWatch[] = [];
    const common = { kubeConfig, silenceTimeoutMs, onChange, logger };
    for (const ns of namespaces) {
      const all = ns === ALL;
      routeWatches.push(
        new ResourceWatch({
          ...common,
          name: `modelroutes${all ? '' : ` in ${ns}`}`,
          // The custom-objects client answers with the server's JSON, a list object.
          list: async () =>
            (all
              ? await custom.listClusterCustomObject({ group: GROUP, version: VERSION, plural: PLURAL })
              : await custom.listNamespacedCustomObject({
                  group: GROUP,
                  version: VERSION,
                  namespace: ns,
                  plural: PLURAL,
                })) as KubernetesListObject<KubernetesObject>,
          watchPath: all ? `/apis/${GROUP}/${VERSION}/${PLURAL}` : `/apis/${GROUP}/${VERSION}/namespaces/${ns}/${PLURAL}`,
        }),
      );
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
    const fixedWatches = [...routeWatches, ...keyWatches];
    const allWatches = (): ResourceWatch[] => [...fixedWatches, ...upstreamKeyWatches.watches];

    function routeObjects(): Map<string, KubeObject> {
      const objects = new Map<string, KubeObject>();
      for (const watch of routeWatches) for (const item of watch.items) objects.set(`${item.metadata?.namespace}/${item.metadata?.name}`, item);
      return objects;
    }

    // The ModelRoutes the current snapshot was built from, for the status writer.
    let objects = new Map<string, KubeObject>();

    // Readiness waits for the first sync of every watch there is by then. A Secret named by a later reload does not
    // take a ready gateway out of service (every replica reloads the same file at once): until its watch has listed,
    // the upstream has no key, as with a Secret that does not exist.
    let synced = false;
    function rebuild(): void {
      scheduled = false;
      if (!synced && !allWatches().every((watch) => watch.synced)) return;
      synced = true;
      objects = routeObjects();
      const upstreamKeys = new Map<string, string>();
      for (const watch of upstreamKeyWatches.watches) for (const item of watch.items) secretEntries(item, upstreamKeys);
      const inputs: KubeInputs = {
        routes: [...objects.values()].map(toRouteInput),
        clientKeys: keyWatches.flatMap((watch) => [...watch.items].flatMap(toClientKeys)),
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

    // Every swap reports verdicts, also after file reloads (an upstream appears or goes).
    if (writeStatus) store.onSwap((current) => statusWriter.reconcile(current.routeStatuses, objects));

    return {
      async start() {
        for (const watch of fixedWatches) watch.start();
        upstreamKeyWatches.start();
        const watches = allWatches();
        await Promise.all(watches.map((watch) => watch.firstSync));
        logger.info({ namespaces, watches: watches.length }, 'Kubernetes sources synced');
      },
      async stop() {
        await Promise.all([...fixedWatches.map((watch) => watch.stop()), upstreamKeyWatches.stop()]);
      },
    };
  };
}

/** Kubeconfig from KUBECONFIG, ~/.kube/config, or the pod's service account. */
export function loadKubeConfig(): KubeConfig {
  const kubeConfig = new KubeConfig();
  kubeConfig.loadFromDefault();
  return kubeConfig;
}
