import type { OutgoingHttpHeaders, ServerResponse } from 'node:http';
import { errorBody, type GatewayError } from './gateway-error.js';

/**
 * Writes a gateway error as the OpenAI error envelope: the one writer of the
 * gateway's own error answers, for every path. `closeConnection` when the
 * request was not read to its end (the rest of it must not be taken for the
 * next request).
 */
export function writeError(
  res: ServerResponse,
  error: GatewayError,
  requestId: string,
  options: { head: boolean; closeConnection: boolean; attempts?: number },
): void {
  const body = errorBody(error);
  const headers: OutgoingHttpHeaders = {
    'content-type': 'application/json; charset=utf-8',
    'content-length': Buffer.byteLength(body),
    'x-request-id': requestId,
    ...error.headers,
  };
  if (options.closeConnection) headers['connection'] = 'close';
  // Upstream attempts made before the gateway gave up, as on every answer relayed from an upstream.
  if ((options.attempts ?? 0) > 0) headers['x-apiproxy-attempts'] = options.attempts;
  res.writeHead(error.status, headers);
  if (options.head) res.end();
  else res.end(body);
}
