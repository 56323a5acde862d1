import type { IncomingHttpHeaders } from 'node:http';
import type { Upstream } from '../../config/upstream.js';
import type { RequestRecord } from '../../pipeline/request-record.js';

/**
 * What the request path knows of tracing: these interfaces and a null check.
 * The OpenTelemetry SDK behind them (otel-tracer.ts) is loaded only when
 * tracing is on.
 */

/** Opens one trace per request. */
export interface RequestTracer {
  /** The request's server span, continuing the client's `traceparent`/`tracestate` when they are valid. */
  startRequest(headers: IncomingHttpHeaders, record: RequestRecord): RequestTrace;
}

/** One request's server span. */
export interface RequestTrace {
  /**
   * An upstream attempt starts: its client span, a child of the server span
   * (attempts of one request are siblings). Writes the attempt's trace
   * context into `headers`, the upstream request's.
   */
  attemptStarted(upstream: Upstream, record: RequestRecord, headers: Record<string, string | string[]>): AttemptTrace;
  /** The request's record is complete: the server span ends. */
  completed(record: RequestRecord): void;
}

/** One upstream attempt's client span. */
export interface AttemptTrace {
  /** The upstream's response head: its status, and whether the answer is an event stream. */
  responded(status: number, stream: boolean): void;
  /** The first bytes of an event stream's body: the time to first token. */
  firstChunk(): void;
  /** The exchange is over; `errorCode` (a gateway error code) when it failed. */
  ended(errorCode: string | null): void;
}

/** Where the request path finds the tracer: null while tracing is off (or not yet started). */
export interface TracerRef {
  tracer: RequestTracer | null;
}
