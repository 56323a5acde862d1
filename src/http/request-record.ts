import type { RouteLabel } from '../observability/metrics.js';
import type { UpstreamAdmission } from '../proxy/admission.js';

/** Everything the access log and metrics need about one request, filled in as it goes. */
export interface RequestRecord {
  readonly id: string;
  readonly startedAt: number;
  readonly method: string;
  readonly path: string;
  route: RouteLabel;
  keyId: string | null;
  model: string | null;
  targetModel: string | null;
  upstream: string | null;
  status: number;
  ttfbMs: number;
  bytesIn: number;
  bytesOut: number;
  stream: boolean;
  errorCode: string | null;
  clientAborted: boolean;
  /** The upstream slot this request holds while forwarded; given back when the relay ends. */
  slot: UpstreamAdmission | null;
  /** Set once the proxy owns the response: it completes the record itself. */
  forwarded: boolean;
  completed: boolean;
}
