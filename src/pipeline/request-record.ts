import type { RouteLabel } from '../observability/metrics.js';

/** What the access log and metrics say about one request, filled in as it goes. */
export interface RequestRecord {
  readonly id: string;
  readonly startedAt: number;
  readonly method: string;
  readonly path: string;
  route: RouteLabel;
  keyId: string | null;
  /** The key's consumer (`namespace/secret` or a file consumer's name), once authenticated. */
  consumer: string | null;
  model: string | null;
  targetModel: string | null;
  upstream: string | null;
  status: number;
  /** ms from the first attempt's dispatch to the head of the answer relayed; -1 when none was. */
  ttfbMs: number;
  bytesIn: number;
  bytesOut: number;
  /** The answer is an event stream. */
  stream: boolean;
  errorCode: string | null;
  clientAborted: boolean;
  /** Upstream attempts made (retries, fallbacks, a resend on a fresh connection); `upstream` and `targetModel` name the one whose answer went out, else the last tried. */
  attempts: number;
  /** The model the upstream says answered, read only for a traced request; null otherwise or when unknown. */
  responseModel: string | null;
  /** Tokens the upstream reported (usage accounting fills them in); null when unknown. */
  inputTokens: number | null;
  outputTokens: number | null;
  /** Of the input, tokens the upstream served from its cache; of the output, tokens spent reasoning; null unless reported. */
  cachedTokens: number | null;
  reasoningTokens: number | null;
  /** An answer that should report its usage did not (a stream the client left, an upstream that reports none). */
  usageUnknown: boolean;
}
