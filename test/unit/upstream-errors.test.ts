/**
 * Error mapping: how an upstream exchange's failure becomes the answer a
 * client gets (fromUpstreamError), and how that answer is written
 * (writeError): status, OpenAI envelope, headers, framing.
 */
import { IncomingMessage, ServerResponse } from 'node:http';
import { Socket } from 'node:net';
import { ERROR_CODES } from '../../src/errors/codes.js';
import { GatewayError } from '../../src/errors/gateway-error.js';
import {
  attemptFailure,
  BadResponseError,
  errorCode,
  BodyTimeoutError,
  ConnectFailedError,
  ConnectTimeoutError,
  fromUpstreamError,
  HeadersTimeoutError,
  Http2UnavailableError,
  InvalidHeaderError,
  NoResponseError,
  PoolClosedError,
  ProxyAuthError,
  ProxyRefusedError,
  ProxyUnreachableError,
  StaleConnectionError,
  timeoutPhase,
  UpstreamClosedError,
} from '../../src/errors/upstream.js';
import { writeError } from '../../src/errors/write-error.js';

const coded = (code: string, message = 'x'): Error => Object.assign(new Error(message), { code });

/** Table rows titled by the error's code (an error printed whole is its stack). */
const titled = <T>(rows: readonly (readonly [unknown, T])[]): (readonly [string, T, unknown])[] =>
  rows.map(([error, expected]) => [errorCode(error) ?? String(error), expected, error] as const);

describe('fromUpstreamError', () => {
  test.each(
    titled([
      [new ConnectTimeoutError(5), 'upstream_timeout'],
      [new HeadersTimeoutError(5), 'upstream_timeout'],
      [new BodyTimeoutError(5), 'upstream_timeout'],
      [coded('ETIMEDOUT'), 'upstream_timeout'],
      [coded('UND_ERR_CONNECT_TIMEOUT'), 'upstream_timeout'],
      [coded('UND_ERR_HEADERS_TIMEOUT'), 'upstream_timeout'],
      [coded('UND_ERR_BODY_TIMEOUT'), 'upstream_timeout'],
      [coded('DEPTH_ZERO_SELF_SIGNED_CERT'), 'upstream_tls'],
      [coded('SELF_SIGNED_CERT_IN_CHAIN'), 'upstream_tls'],
      [coded('UNABLE_TO_VERIFY_LEAF_SIGNATURE'), 'upstream_tls'],
      [coded('CERT_HAS_EXPIRED'), 'upstream_tls'],
      [coded('ERR_TLS_CERT_ALTNAME_INVALID'), 'upstream_tls'],
      [coded('ERR_SSL_WRONG_VERSION_NUMBER'), 'upstream_tls'],
      [coded('HOSTNAME_MISMATCH'), 'upstream_tls'],
      [coded('ERR_OSSL_PEM_NO_START_LINE'), 'upstream_tls'],
      [new BadResponseError('a bad status line'), 'upstream_bad_response'],
      [coded('HPE_INVALID_CONSTANT'), 'upstream_bad_response'],
      [coded('UND_ERR_HEADERS_OVERFLOW'), 'upstream_bad_response'],
      [coded('UND_ERR_RES_CONTENT_LENGTH_MISMATCH'), 'upstream_bad_response'],
      [coded('UND_ERR_RES_EXCEEDED_MAX_SIZE'), 'upstream_bad_response'],
      [coded('UND_ERR_INFO'), 'upstream_bad_response'],
      [coded('ERR_HTTP2_PROTOCOL_ERROR'), 'upstream_bad_response'],
      [coded('ERR_HTTP2_ERROR'), 'upstream_bad_response'],
      [new InvalidHeaderError('authorization'), 'internal_error'],
      [coded('UND_ERR_INVALID_ARG'), 'internal_error'],
      [coded('UND_ERR_REQ_CONTENT_LENGTH_MISMATCH'), 'internal_error'],
      [new ProxyUnreachableError(coded('ECONNREFUSED')), 'upstream_proxy_unreachable'],
      [coded('UND_ERR_PRX_CONN'), 'upstream_proxy_unreachable'],
      [coded('UND_ERR_PRX_TLS'), 'upstream_proxy_unreachable'],
      [new ProxyAuthError(), 'upstream_proxy_auth'],
      [new Http2UnavailableError('http/1.1'), 'upstream_http2_unavailable'],
      [new ConnectFailedError(new Error('no route')), 'upstream_unreachable'],
      [coded('ECONNREFUSED'), 'upstream_unreachable'],
      [coded('ENOTFOUND'), 'upstream_unreachable'],
      [coded('EAI_AGAIN'), 'upstream_unreachable'],
      [coded('EHOSTUNREACH'), 'upstream_unreachable'],
      [coded('ENETUNREACH'), 'upstream_unreachable'],
      [coded('EADDRNOTAVAIL'), 'upstream_unreachable'],
      [coded('ECONNRESET'), 'upstream_reset'],
      [coded('EPIPE'), 'upstream_reset'],
      [new UpstreamClosedError(), 'upstream_reset'],
      [new PoolClosedError(), 'upstream_reset'],
      [new Error('no code at all'), 'upstream_reset'],
      ['a string thrown', 'upstream_reset'],
      [null, 'upstream_reset'],
      // A code must be one of these, not merely contain one.
      [coded('XECONNREFUSED'), 'upstream_reset'],
      [coded('X_ERR_TLS_'), 'upstream_reset'],
      [coded('ETIMEDOUTX'), 'upstream_reset'],
      [coded('X_HPE_'), 'upstream_reset'],
    ]),
  )('%s -> %s, with the error as its cause', (_title, code, error) => {
    const mapped = fromUpstreamError(error);
    expect(mapped).toBeInstanceOf(GatewayError);
    expect({ code: mapped.code, status: mapped.status, cause: mapped.cause }).toEqual({
      code,
      status: ERROR_CODES[code as keyof typeof ERROR_CODES].status,
      cause: error,
    });
  });

  test("a proxy's refusal of the tunnel: 502/503/504 say the upstream is out of its reach, any other status that the proxy refuses; the status is named", () => {
    const answers = [502, 503, 504, 403, 500].map((status) => {
      const error = new ProxyRefusedError(status);
      const mapped = fromUpstreamError(error);
      expect(mapped.cause).toBe(error);
      return [status, mapped.code, mapped.status, mapped.message];
    });
    expect(answers).toEqual([
      [502, 'upstream_unreachable', 502, 'The upstream could not be reached (the egress proxy answered 502).'],
      [503, 'upstream_unreachable', 502, 'The upstream could not be reached (the egress proxy answered 503).'],
      [504, 'upstream_unreachable', 502, 'The upstream could not be reached (the egress proxy answered 504).'],
      [403, 'upstream_proxy_refused', 502, 'The egress proxy refused to connect to the upstream (403).'],
      [500, 'upstream_proxy_refused', 502, 'The egress proxy refused to connect to the upstream (500).'],
    ]);
  });

  test('a gateway error (a streamed upload over the limit) passes through as it is', () => {
    const error = new GatewayError('body_too_large');
    expect(fromUpstreamError(error)).toBe(error);
  });

  test('the first code on the cause chain decides, up to four errors deep', () => {
    const chain = (depth: number, code: string): unknown => {
      let error: unknown = coded(code);
      for (let i = 1; i < depth; i++) error = new Error('wrapped', { cause: error });
      return error;
    };
    expect(fromUpstreamError(chain(2, 'ECONNREFUSED')).code).toBe('upstream_unreachable');
    expect(fromUpstreamError(chain(4, 'ETIMEDOUT')).code).toBe('upstream_timeout');
    expect(fromUpstreamError(chain(5, 'ETIMEDOUT')).code).toBe('upstream_reset');
    const outer = Object.assign(new Error('outer', { cause: coded('ECONNREFUSED') }), { code: 'ETIMEDOUT' });
    expect(fromUpstreamError(outer).code).toBe('upstream_timeout');
    // A code that is not a string is no code: the search goes on down the chain.
    expect(fromUpstreamError(Object.assign(new Error('numeric', { cause: coded('ECONNREFUSED') }), { code: 42 })).code).toBe('upstream_unreachable');
  });

  test('each upstream failure has a stable code and a message that says what happened', () => {
    expect([new ConnectTimeoutError(1500), new HeadersTimeoutError(2500), new BodyTimeoutError(3500)].map((e) => [e.code, e.name, e.message])).toEqual([
      ['UPSTREAM_CONNECT_TIMEOUT', 'ConnectTimeoutError', 'no connection to the upstream within 1500 ms'],
      ['UPSTREAM_HEADERS_TIMEOUT', 'HeadersTimeoutError', 'no response headers from the upstream within 2500 ms'],
      ['UPSTREAM_BODY_TIMEOUT', 'BodyTimeoutError', 'the upstream sent no body bytes for 3500 ms'],
    ]);
    expect(
      [new UpstreamClosedError(), new BadResponseError('why'), new PoolClosedError(), new InvalidHeaderError('x-h')].map((e) => [e.code, e.name, e.message]),
    ).toEqual([
      ['UPSTREAM_CLOSED', 'UpstreamClosedError', 'the upstream closed the connection before the response was complete'],
      ['UPSTREAM_BAD_RESPONSE', 'BadResponseError', 'invalid response from the upstream: why'],
      ['UPSTREAM_POOL_CLOSED', 'PoolClosedError', 'the upstream connection pool was closed'],
      ['UPSTREAM_INVALID_HEADER', 'InvalidHeaderError', "the value of header 'x-h' contains a line break or NUL"],
    ]);
    const cause = new Error('socket hang up');
    expect(
      [
        new NoResponseError(cause),
        new StaleConnectionError(cause),
        new ConnectFailedError(cause),
        new ProxyUnreachableError(cause),
        new ProxyAuthError(),
        new ProxyRefusedError(403),
        new Http2UnavailableError('http/1.1'),
      ].map((e) => [e.code, e.name, e.message, e.cause]),
    ).toEqual([
      ['UPSTREAM_NO_RESPONSE', 'NoResponseError', 'the upstream closed the connection before any byte of its response', cause],
      ['UPSTREAM_STALE_CONNECTION', 'StaleConnectionError', 'the reused upstream connection was closed before any byte of the response', cause],
      ['UPSTREAM_CONNECT_FAILED', 'ConnectFailedError', 'the connection to the upstream could not be made', cause],
      ['UPSTREAM_PROXY_UNREACHABLE', 'ProxyUnreachableError', 'the egress proxy could not be reached', cause],
      ['UPSTREAM_PROXY_AUTH', 'ProxyAuthError', 'the egress proxy wants other credentials (407)', undefined],
      ['UPSTREAM_PROXY_REFUSED', 'ProxyRefusedError', 'the egress proxy answered the tunnel request with 403', undefined],
      ['UPSTREAM_NO_HTTP2', 'Http2UnavailableError', 'the upstream chose http/1.1 over h2 in the TLS handshake', undefined],
    ]);
    expect(new ProxyRefusedError(403).status).toBe(403);
    // Without a cause, none is set (an own `cause` property, even undefined, would show in logs).
    expect([new NoResponseError(), new StaleConnectionError()].map((e) => Object.hasOwn(e, 'cause'))).toEqual([false, false]);
  });
});

describe('attemptFailure: how an attempt that ended before its answer ended, for the failover loop', () => {
  test.each(
    titled([
      [coded('CLIENT_GONE'), 'client_gone'],
      [coded('ECONNREFUSED'), 'connect_failure'],
      [coded('ENOTFOUND'), 'connect_failure'],
      [coded('EAI_AGAIN'), 'connect_failure'],
      [coded('EHOSTUNREACH'), 'connect_failure'],
      [coded('ENETUNREACH'), 'connect_failure'],
      [coded('EADDRNOTAVAIL'), 'connect_failure'],
      [new ConnectFailedError(new Error('x')), 'connect_failure'],
      [new ConnectTimeoutError(5), 'connect_failure'],
      [coded('UND_ERR_CONNECT_TIMEOUT'), 'connect_failure'],
      [coded('CERT_HAS_EXPIRED'), 'connect_failure'],
      [coded('ERR_TLS_CERT_ALTNAME_INVALID'), 'connect_failure'],
      [new HeadersTimeoutError(5), 'timeout'],
      [coded('UND_ERR_HEADERS_TIMEOUT'), 'timeout'],
      [new NoResponseError(), 'reset'],
      [coded('UND_ERR_SOCKET'), 'reset'],
      [new StaleConnectionError(), 'stale_connection'],
      // Not retried on these grounds: a body timeout, a broken answer, anything else, no code.
      [new BodyTimeoutError(5), 'error'],
      [new BadResponseError('x'), 'error'],
      [coded('ECONNRESET'), 'error'],
      [new Error('no code'), 'error'],
      [undefined, 'error'],
      // Wrapped: the code of the cause decides.
      [new Error('wrapped', { cause: new StaleConnectionError() }), 'stale_connection'],
    ]),
  )('%s -> %s', (_title, failure, error) => {
    expect(attemptFailure(error)).toBe(failure);
  });
});

describe('timeoutPhase: which of the timeouts fired', () => {
  test.each(
    titled([
      [new ConnectTimeoutError(5), 'connect'],
      [coded('UND_ERR_CONNECT_TIMEOUT'), 'connect'],
      [new HeadersTimeoutError(5), 'headers'],
      [coded('UND_ERR_HEADERS_TIMEOUT'), 'headers'],
      [new BodyTimeoutError(5), 'idle'],
      [coded('UND_ERR_BODY_TIMEOUT'), 'idle'],
      [coded('ETIMEDOUT'), null],
      [coded('ECONNREFUSED'), null],
      [new Error('no code'), null],
    ]),
  )('%s -> %s', (_title, phase, error) => {
    expect(timeoutPhase(error)).toBe(phase);
  });
});

/** What `writeError` put on the wire, read back from Node's own response (no socket: it keeps the bytes). */
function written(error: GatewayError, options: { head: boolean; closeConnection: boolean; attempts?: number }): { head: string; body: string } {
  const req = new IncomingMessage(new Socket());
  req.method = options.head ? 'HEAD' : 'POST';
  const res = new ServerResponse(req);
  res.shouldKeepAlive = true; // as the server sets it for a keep-alive client
  writeError(res, error, 'req-9', options);
  const wire = (res as unknown as { outputData: { data: string | Buffer }[] }).outputData.map((chunk) => String(chunk.data)).join('');
  const at = wire.indexOf('\r\n\r\n');
  return { head: wire.slice(0, at), body: wire.slice(at + 4) };
}

describe('writeError', () => {
  test('the OpenAI envelope with its status, a true length (multibyte message) and the request id', () => {
    const error = new GatewayError('invalid_api_key', 'Clé invalide: ü');
    const { head, body } = written(error, { head: false, closeConnection: false });
    expect(JSON.parse(body)).toEqual({ error: { message: 'Clé invalide: ü', type: 'invalid_request_error', param: null, code: 'invalid_api_key' } });
    expect(head.split('\r\n')).toEqual(
      expect.arrayContaining([
        'HTTP/1.1 401 Unauthorized',
        'content-type: application/json; charset=utf-8',
        `content-length: ${Buffer.byteLength(body)}`,
        'x-request-id: req-9',
      ]),
    );
    expect(Buffer.byteLength(body)).toBeGreaterThan(body.length);
    expect(head.toLowerCase()).not.toContain('connection: close');
    expect(head).toContain('Connection: keep-alive');
  });

  test("the error's own headers (Retry-After) go with it; closeConnection closes", () => {
    const error = new GatewayError('upstream_saturated', undefined, { headers: { 'retry-after': '3' } });
    const { head } = written(error, { head: false, closeConnection: true });
    expect(head.split('\r\n')).toEqual(expect.arrayContaining(['HTTP/1.1 503 Service Unavailable', 'retry-after: 3', 'connection: close']));
  });

  test('a HEAD request gets the head alone, its length the one a GET would have', () => {
    const error = new GatewayError('not_found');
    const { head, body } = written(error, { head: true, closeConnection: false });
    expect(body).toBe('');
    const full = written(error, { head: false, closeConnection: false });
    expect(head).toContain(`content-length: ${Buffer.byteLength(full.body)}`);
  });

  test('the upstream attempts made before the gateway gave up are counted in x-apiproxy-attempts; none made, no header', () => {
    const error = new GatewayError('upstream_unreachable');
    expect(written(error, { head: false, closeConnection: false, attempts: 3 }).head.split('\r\n')).toContain('x-apiproxy-attempts: 3');
    for (const attempts of [0, undefined]) {
      expect(written(error, { head: false, closeConnection: false, attempts }).head.toLowerCase()).not.toContain('x-apiproxy-attempts');
    }
  });

  test('a param is named in the envelope', () => {
    const { body } = written(new GatewayError('missing_model', undefined, { param: 'model' }), { head: false, closeConnection: false });
    expect(JSON.parse(body)).toEqual({ error: expect.objectContaining({ param: 'model', code: 'missing_model' }) });
  });
});
