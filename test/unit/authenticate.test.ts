/**
 * `Authorization: Bearer <key>` against the snapshot's key digests, without
 * a server: which header is which refusal, that only the exact key is
 * accepted, and that no keys at all means no access (auth fails closed).
 * The same through a whole gateway: test/security/auth.test.ts.
 */
import { keyDigest } from '../../src/config/key-digest.js';
import type { RoutingSnapshot } from '../../src/config/snapshot.js';
import { GatewayError } from '../../src/errors/gateway-error.js';
import { authenticate } from '../../src/pipeline/authenticate.js';
import type { Principal } from '../../src/policy/types.js';

const KEY = 'sk-client-0123456789';
const withKeys = (keys: Record<string, string>): RoutingSnapshot =>
  ({
    keys: new Map(Object.entries(keys).map(([key, id]) => [keyDigest(key), { keyId: id, consumer: id, namespace: null, policy: null } satisfies Principal])),
  }) as unknown as RoutingSnapshot;
const snapshot = withKeys({ [KEY]: 'team-a', 'sk-other-key-000': 'team-b' });

/** The refusal `authenticate` answers `header` with: its code and message, or the key id when accepted. */
function outcome(header: string | undefined, on: RoutingSnapshot = snapshot): string | { code: string; message: string } {
  try {
    return authenticate(header, on).keyId;
  } catch (error) {
    if (!(error instanceof GatewayError)) throw error;
    return { code: error.code, message: error.message };
  }
}

const MISSING = { code: 'missing_api_key', message: 'Missing API key. Send it as "Authorization: Bearer <key>".' };
const NOT_BEARER = { code: 'invalid_api_key', message: 'The Authorization header must be "Bearer <key>".' };
const UNKNOWN = { code: 'invalid_api_key', message: 'Invalid API key.' };

test.each([
  ['no header', undefined, MISSING],
  ['an empty header', '', MISSING],
  ['the scheme alone', 'Bearer', NOT_BEARER],
  ['the scheme and a space', 'Bearer ', NOT_BEARER],
  ['the key alone', KEY, NOT_BEARER],
  ['another scheme', `Basic ${KEY}`, NOT_BEARER],
  ['a scheme that ends in bearer', `XBearer ${KEY}`, NOT_BEARER],
  ['no space after the scheme', `Bearer${KEY}`, NOT_BEARER],
  ['a tab after the scheme', `Bearer\t${KEY}`, NOT_BEARER],
  ['two keys', `Bearer ${KEY} ${KEY}`, NOT_BEARER],
  ['a key with a line break inside', `Bearer ${KEY.slice(0, 5)}\n${KEY.slice(5)}`, NOT_BEARER],
  ['a key with a trailing newline', `Bearer ${KEY}\n`, NOT_BEARER],
  ['a key with a trailing tab', `Bearer ${KEY}\t`, NOT_BEARER],
  ['a space before the scheme', ` Bearer ${KEY}`, NOT_BEARER],
  ['an unknown key', 'Bearer sk-unknown', UNKNOWN],
  ['a prefix of the key', `Bearer ${KEY.slice(0, -1)}`, UNKNOWN],
  ['the key and one more character', `Bearer ${KEY}x`, UNKNOWN],
  ['the key in upper case', `Bearer ${KEY.toUpperCase()}`, UNKNOWN],
  ['a key followed by a non-breaking space', `Bearer ${KEY}\u00a0`, NOT_BEARER],
])('%s: refused', (_name, header, refusal) => {
  expect(outcome(header)).toEqual(refusal);
});

test.each([
  ['Bearer', `Bearer ${KEY}`],
  ['bearer', `bearer ${KEY}`],
  ['BEARER', `BEARER ${KEY}`],
  ['several spaces after the scheme', `Bearer    ${KEY}`],
  ['trailing spaces', `Bearer ${KEY}   `],
])('%s: the key id', (_name, header) => {
  expect(outcome(header)).toBe('team-a');
});

test('each key yields its own id', () => {
  expect(outcome('Bearer sk-other-key-000')).toBe('team-b');
});

test('no keys configured: every key is refused, also one that was a key before', () => {
  const none = withKeys({});
  for (const header of [`Bearer ${KEY}`, 'Bearer x', 'Bearer anything-at-all']) expect(outcome(header, none)).toEqual(UNKNOWN);
  expect(outcome(undefined, none)).toEqual(MISSING);
});

test("an accepted key is the snapshot's own Principal (consumer, tenant, policy), not a copy", () => {
  expect(authenticate(`Bearer ${KEY}`, snapshot)).toBe(snapshot.keys.get(keyDigest(KEY)));
});
