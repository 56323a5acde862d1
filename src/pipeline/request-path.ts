import { GatewayError } from '../errors/gateway-error.js';

const DOT_SEGMENT = /(^|\/)(\.|%2e){1,2}(\/|$)/i;
const ENCODED_SLASH = /%2f|%5c|\\/i;
const ALLOWED_METHODS = new Set(['GET', 'HEAD', 'POST', 'DELETE']);
const METHOD_NOT_ALLOWED = new GatewayError('method_not_allowed', undefined, { headers: { allow: 'GET, HEAD, POST, DELETE' } });

/** `/v1/...` paths, spelled exactly (the path is case-sensitive). */
export function isV1Path(url: string | undefined): boolean {
  return url !== undefined && url.startsWith('/v1/');
}

/** 405 for a method no `/v1` endpoint takes. */
export function checkMethod(method: string): void {
  if (!ALLOWED_METHODS.has(method)) throw METHOD_NOT_ALLOWED;
}

/** 404 for dot segments and encoded slashes: a path the upstream could read differently from the gateway. */
export function checkPath(path: string): void {
  if (DOT_SEGMENT.test(path) || ENCODED_SLASH.test(path)) throw new GatewayError('not_found');
}
