import type { IncomingHttpHeaders, OutgoingHttpHeaders } from 'node:http';

/** Headers that describe one connection, never forwarded (RFC 9110 7.6.1), plus ones the gateway sets itself. */
const REQUEST_DROPPED = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'proxy-authorization',
  'proxy-authenticate',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
  'host',
  'authorization',
  'content-length',
  'expect',
  'http2-settings',
  'x-apiproxy-deadline-ms', // the client's deadline is the gateway's business (pipeline/deadline.ts)
]);

const RESPONSE_DROPPED = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'proxy-authenticate',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
  'http2-settings',
]);

/** Client headers as sent upstream: hop-by-hop and credentials removed, the upstream's own key set. */
export function upstreamRequestHeaders(
  incoming: IncomingHttpHeaders,
  authorization: string | null,
  contentLength: number | null,
  requestId: string,
): Record<string, string | string[]> {
  const connectionTokens = listedInConnection(incoming.connection);
  const headers: Record<string, string | string[]> = {};
  for (const name in incoming) {
    if (REQUEST_DROPPED.has(name) || (connectionTokens !== null && connectionTokens.has(name))) continue;
    const value = incoming[name];
    if (value !== undefined) headers[name] = value;
  }
  headers['x-request-id'] = requestId;
  if (authorization !== null) headers['authorization'] = authorization;
  if (contentLength !== null) headers['content-length'] = String(contentLength);
  return headers;
}

/** Upstream response headers as relayed to the client. */
export function clientResponseHeaders(upstream: IncomingHttpHeaders, requestId: string): OutgoingHttpHeaders {
  const connectionTokens = listedInConnection(upstream.connection);
  const headers: OutgoingHttpHeaders = {};
  for (const name in upstream) {
    if (RESPONSE_DROPPED.has(name) || (connectionTokens !== null && connectionTokens.has(name))) continue;
    const value = upstream[name];
    if (value !== undefined) headers[name] = value;
  }
  headers['x-request-id'] = requestId;
  return headers;
}

/** The usual Connection values, parsed once: nearly every message carries one of them. */
const KEEP_ALIVE: ReadonlySet<string> = new Set(['keep-alive']);
const CLOSE: ReadonlySet<string> = new Set(['close']);

/** The header names a Connection header lists: they describe this hop only and go no further (RFC 9110 7.6.1). */
function listedInConnection(value: string | string[] | undefined): ReadonlySet<string> | null {
  if (value === undefined) return null;
  const text = Array.isArray(value) ? value.join(',') : value;
  if (text === 'keep-alive') return KEEP_ALIVE;
  if (text === 'close') return CLOSE;
  return new Set(text.split(',').map((token) => token.trim().toLowerCase()));
}
