import type { RequestRecord } from '../pipeline/request-record.js';

/** Printable ASCII without `"` and `\`: what a JSON string holds unescaped. Ids, methods and most paths and models are. */
const PLAIN = /^[\x20\x21\x23-\x5b\x5d-\x7e]*$/;

/** A JSON string, or null; escapes everything a client controls (model, path). */
function text(value: string | null): string {
  if (value === null) return 'null';
  return PLAIN.test(value) ? '"' + value + '"' : JSON.stringify(value);
}

/** Milliseconds to three decimals, from integers (a float's own formatting costs several times more). */
function millis(ms: number): string {
  if (ms < 0) return 'null';
  const micros = Math.round(ms * 1e3);
  const fraction = micros % 1000;
  return (micros - fraction) / 1000 + (fraction < 10 ? '.00' : fraction < 100 ? '.0' : '.') + fraction;
}

/** The logger's base fields as pino renders them (`,"service":"api-proxy"`, plus `"worker"` in a cluster). */
export const SERVICE_BINDINGS = ',"service":"api-proxy"';

let isoMillis = -1;
let isoText = '';

/** Under load many lines share a millisecond: format its ISO time once. */
function isoNow(): string {
  const now = Date.now();
  if (now !== isoMillis) {
    isoMillis = now;
    isoText = new Date(now).toISOString();
  }
  return isoText;
}

/**
 * One access log line, in the logger's own format (level label, ISO time,
 * base bindings, fields, msg). Built by hand rather than by pino's generic
 * serialisation (docs/performance.md, "Hand-written where a library exists").
 */
export function accessLine(record: RequestRecord, latencyMs: number, bindings = SERVICE_BINDINGS): string {
  return (
    '{"level":"info","time":"' +
    isoNow() +
    '"' +
    bindings +
    ',"req_id":' +
    text(record.id) +
    ',"key_id":' +
    text(record.keyId) +
    ',"consumer":' +
    text(record.consumer) +
    ',"method":' +
    text(record.method) +
    ',"path":' +
    text(record.path) +
    ',"model":' +
    text(record.model) +
    ',"target_model":' +
    text(record.targetModel) +
    ',"upstream":' +
    text(record.upstream) +
    ',"attempts":' +
    record.attempts +
    ',"status":' +
    record.status +
    ',"latency_ms":' +
    millis(latencyMs) +
    ',"ttfb_ms":' +
    millis(record.ttfbMs) +
    ',"bytes_in":' +
    record.bytesIn +
    ',"bytes_out":' +
    record.bytesOut +
    ',"prompt_tokens":' +
    record.inputTokens +
    ',"completion_tokens":' +
    record.outputTokens +
    (record.usageUnknown ? ',"usage":"unknown"' : '') +
    ',"stream":' +
    record.stream +
    ',"error":' +
    text(record.errorCode) +
    (record.clientAborted ? ',"client_aborted":true' : '') +
    ',"msg":"request"}\n'
  );
}
