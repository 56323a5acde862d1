import { readFileSync } from 'node:fs';

const SERVICE_ACCOUNT_NAMESPACE = '/var/run/secrets/kubernetes.io/serviceaccount/namespace';

/** The gateway's own namespace: POD_NAMESPACE, the service account's, or `default`. */
export function ownNamespace(env: Readonly<Record<string, string | undefined>>): string {
  const fromEnv = env['POD_NAMESPACE'];
  if (fromEnv !== undefined && fromEnv !== '') return fromEnv;
  try {
    const fromFile = readFileSync(SERVICE_ACCOUNT_NAMESPACE, 'utf8').trim();
    if (fromFile !== '') return fromFile;
  } catch {
    // not in a pod
  }
  return 'default';
}
