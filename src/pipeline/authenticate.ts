import { keyDigest } from '../config/key-digest.js';
import type { RoutingSnapshot } from '../config/snapshot.js';
import { GatewayError } from '../errors/gateway-error.js';

const BEARER = /^bearer +([^\s]+) *$/i;

/** Resolves `Authorization: Bearer <key>` to a key id by the key's digest; throws 401 otherwise. */
export function authenticate(header: string | undefined, snapshot: RoutingSnapshot): string {
  if (header === undefined || header === '') throw new GatewayError('missing_api_key');
  const match = BEARER.exec(header);
  if (match === null) {
    throw new GatewayError('invalid_api_key', 'The Authorization header must be "Bearer <key>".');
  }
  const keyId = snapshot.keys.get(keyDigest(match[1]!));
  if (keyId === undefined) throw new GatewayError('invalid_api_key');
  return keyId;
}
