import { keyDigest } from '../config/key-digest.js';
import type { RoutingSnapshot } from '../config/snapshot.js';
import { GatewayError } from '../errors/gateway-error.js';
import type { Principal } from '../policy/types.js';

const BEARER = /^bearer +([^\s]+) *$/i;

/** Resolves `Authorization: Bearer <key>` by the key's digest to who the request is; throws 401 otherwise. */
export function authenticate(header: string | undefined, snapshot: RoutingSnapshot): Principal {
  if (header === undefined || header === '') throw new GatewayError('missing_api_key');
  const match = BEARER.exec(header);
  if (match === null) {
    throw new GatewayError('invalid_api_key', 'The Authorization header must be "Bearer <key>".');
  }
  const principal = snapshot.keys.get(keyDigest(match[1]!));
  if (principal === undefined) throw new GatewayError('invalid_api_key');
  return principal;
}
