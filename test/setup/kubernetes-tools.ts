import { buildTools } from './build-tools.js';

/** The k8s and chart projects: kube-apiserver and etcd, and helm (v3 and v4). */
export default function setup(): void {
  buildTools(['build-k8s.sh', 'build-helm.sh']);
}
