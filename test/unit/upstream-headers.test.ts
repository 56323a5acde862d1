/**
 * Header rules, both directions: every hop-by-hop header (RFC 9110 7.6.1,
 * RFC 9113 for HTTP2-Settings) and every header a Connection header names
 * stays on its hop; the client's credentials and framing never go upstream;
 * everything else passes unchanged.
 */
import type { IncomingHttpHeaders } from 'node:http';
import { clientResponseHeaders, upstreamRequestHeaders } from '../../src/pipeline/upstream-headers.js';

/** Headers that describe one connection: never forwarded, in either direction. */
const HOP_BY_HOP = ['connection', 'keep-alive', 'proxy-connection', 'proxy-authenticate', 'te', 'trailer', 'transfer-encoding', 'upgrade', 'http2-settings'];

/** What a client sends that the gateway replaces or must not pass on: its credentials, its host, its framing, its deadline. */
const CLIENT_ONLY = ['proxy-authorization', 'host', 'authorization', 'content-length', 'expect', 'x-apiproxy-deadline-ms'];

const END_TO_END: IncomingHttpHeaders = {
  'content-type': 'application/json',
  accept: 'text/event-stream',
  'openai-organization': 'org-1',
  'x-custom': 'kept',
  'set-cookie': ['a=1', 'b=2'],
};

function every(names: readonly string[]): IncomingHttpHeaders {
  return Object.fromEntries(names.map((name) => [name, name === 'connection' ? 'keep-alive' : `value of ${name}`]));
}

describe('request headers, client to upstream', () => {
  test('every hop-by-hop header and the client-only ones are dropped; the rest kept as they are', () => {
    const sent = upstreamRequestHeaders({ ...every(HOP_BY_HOP), ...every(CLIENT_ONLY), ...END_TO_END }, 'Bearer up', 17, 'req-1');
    expect(sent).toEqual({ ...END_TO_END, 'x-request-id': 'req-1', authorization: 'Bearer up', 'content-length': '17' });
  });

  test.each(HOP_BY_HOP.concat(CLIENT_ONLY))('%s alone is dropped', (name) => {
    const sent = upstreamRequestHeaders({ [name]: 'x', accept: 'a' }, null, null, 'r');
    expect(sent).toEqual({ accept: 'a', 'x-request-id': 'r' });
  });

  test("the headers a Connection header names go no further, whatever the token's case and spacing", () => {
    const sent = upstreamRequestHeaders({ connection: 'Keep-Alive, X-Hop ,x-other-hop', 'x-hop': '1', 'x-other-hop': '2', 'x-end': '3' }, null, null, 'r');
    expect(sent).toEqual({ 'x-end': '3', 'x-request-id': 'r' });
  });

  test('a Connection header sent twice counts every token', () => {
    const sent = upstreamRequestHeaders({ connection: ['x-a', 'x-b'] as unknown as string, 'x-a': '1', 'x-b': '2', 'x-c': '3' }, null, null, 'r');
    expect(sent).toEqual({ 'x-c': '3', 'x-request-id': 'r' });
  });

  test.each(['close', 'keep-alive'])('Connection: %s names itself: a header of that name is dropped too', (option) => {
    const sent = upstreamRequestHeaders({ connection: option, [option]: 'x', close: 'y', 'x-end': '1' }, null, null, 'r');
    expect(sent).toEqual(option === 'close' ? { 'x-end': '1', 'x-request-id': 'r' } : { close: 'y', 'x-end': '1', 'x-request-id': 'r' });
  });

  test('an empty Connection header names nothing: a header called close passes', () => {
    const sent = upstreamRequestHeaders({ connection: '', close: 'y', 'x-end': '1' }, null, null, 'r');
    expect(sent).toEqual({ close: 'y', 'x-end': '1', 'x-request-id': 'r' });
  });

  test('a header without a value is not sent (Node refuses to send undefined)', () => {
    const sent = upstreamRequestHeaders({ 'x-none': undefined, accept: 'a' }, null, null, 'r');
    expect(sent).toStrictEqual({ accept: 'a', 'x-request-id': 'r' });
  });

  test("no upstream key: no Authorization at all, never the client's", () => {
    const sent = upstreamRequestHeaders({ authorization: 'Bearer client-key', accept: 'a' }, null, null, 'r');
    expect(sent).toEqual({ accept: 'a', 'x-request-id': 'r' });
  });

  test("the gateway's request id replaces the client's; a length of 0 is still a length", () => {
    const sent = upstreamRequestHeaders({ 'x-request-id': 'from-client' }, null, 0, 'req-2');
    expect(sent).toEqual({ 'x-request-id': 'req-2', 'content-length': '0' });
  });
});

describe('response headers, upstream to client', () => {
  test('every hop-by-hop header is dropped; the rest kept as they are, the request id set', () => {
    const relayed = clientResponseHeaders({ ...every(HOP_BY_HOP), ...END_TO_END, 'content-length': '12' }, 'req-3');
    expect(relayed).toEqual({ ...END_TO_END, 'content-length': '12', 'x-request-id': 'req-3' });
  });

  test.each(HOP_BY_HOP)('%s alone is dropped', (name) => {
    expect(clientResponseHeaders({ [name]: 'x', 'content-type': 'a' }, 'r')).toEqual({ 'content-type': 'a', 'x-request-id': 'r' });
  });

  test("the headers the upstream's Connection header names go no further", () => {
    const relayed = clientResponseHeaders({ connection: 'close, X-Upstream-Hop', 'x-upstream-hop': '1', close: '2', 'x-end': '3' }, 'r');
    expect(relayed).toEqual({ 'x-end': '3', 'x-request-id': 'r' });
  });

  test('an empty Connection header names nothing; a header without a value is not relayed', () => {
    expect(clientResponseHeaders({ connection: '', close: 'y', 'x-none': undefined }, 'r')).toStrictEqual({ close: 'y', 'x-request-id': 'r' });
  });

  test("the upstream's own request id is replaced by the gateway's", () => {
    expect(clientResponseHeaders({ 'x-request-id': 'upstream-id' }, 'gateway-id')).toEqual({ 'x-request-id': 'gateway-id' });
  });
});
