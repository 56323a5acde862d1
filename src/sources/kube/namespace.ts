import { readFileSync } from 'node:fs';
import type { KubeConfig } from '@kubernetes/client-node';

const SERVICE_ACCOUNT_NAMESPACE = '/var/run/secrets/kubernetes.io/serviceaccount/namespace';

/** The gateway's own namespace: POD_NAMESPACE, the service account's, the kubeconfig context's, or `default`. */
export function ownNamespace(env: Readonly<Record<string, string | undefined>>, kubeConfig?: KubeConfig): string {
  const fromEnv = env['POD_NAMESPACE'];
  if (fromEnv !== undefined && fromEnv !== '') return fromEnv;
  try {
    const fromFile = readFileSync(SERVICE_ACCOUNT_NAMESPACE, 'utf8').trim();
    if (fromFile !== '') return fromFile;
  } catch {
    // not in a pod
  }
  const context = kubeConfig?.getContextObject(kubeConfig.getCurrentContext());
  return context?.namespace ?? 'default';
}
