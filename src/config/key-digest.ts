import { hash } from 'node:crypto';

/** The lookup form of a client key: hex SHA-256. Lookups by digest leak nothing about the key's bytes through timing. */
export function keyDigest(key: string): string {
  return hash('sha256', key, 'hex');
}

const HASHED_PREFIX = 'sha256:';
const HEX_DIGEST = /^[0-9a-f]{64}$/i;

/**
 * The digest of a client key as a source holds it: the key itself, or, so
 * that the key need not sit in etcd or a ConfigMap, `sha256:<64 hex>`, its
 * digest already (`printf %s "$KEY" | sha256sum`).
 */
export function clientKeyDigest(value: string): string {
  if (value.length === HASHED_PREFIX.length + 64 && value.startsWith(HASHED_PREFIX)) {
    const hex = value.slice(HASHED_PREFIX.length);
    if (HEX_DIGEST.test(hex)) return hex.toLowerCase();
  }
  return keyDigest(value);
}
