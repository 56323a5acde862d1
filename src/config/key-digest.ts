import { hash } from 'node:crypto';

/** The lookup form of a client key: hex SHA-256. Lookups by digest leak nothing about the key's bytes through timing. */
export function keyDigest(key: string): string {
  return hash('sha256', key, 'hex');
}
