import { buildTools } from './build-tools.js';

/** The integration project: Jaeger v2, the trace backend of the tracing tests. */
export default function setup(): void {
  buildTools(['build-jaeger.sh']);
}
