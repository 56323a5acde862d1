/**
 * Upstream connection settings, from the file to what the transport gets:
 * proxies (their credentials never in a URL, redacted from answers), the
 * process's proxy variables, HTTP/2, servername and client certificates,
 * which client serves which upstream, and the error codes of a proxy's
 * refusals. (A client certificate and key are checked as a pair at load:
 * test/integration/tls-upstream.test.ts.)
 */
import { errors } from 'undici';
import { ConfigError, envProxy, parseConfigText, toInputs } from '../../src/config/load-file.js';
import type { KubeInputs, UpstreamSpec } from '../../src/config/model.js';
import { buildSnapshot } from '../../src/config/snapshot.js';
import { compileUpstream } from '../../src/config/upstream.js';
import { fromUpstreamError, ProxyRefusedError } from '../../src/errors/upstream.js';
import { referencedSecrets } from '../../src/sources/kube/upstream-key-watches.js';
import { nativeClientServes } from '../../src/transport/transports.js';
import { toUpstreamError } from '../../src/transport/undici/undici-errors.js';

/** Secrets read by name: "file:<path>" and "env:<name>" stand for what the file or variable holds. */
const readSecret = (_field: string, inline: string | undefined, variable: string | undefined, file: string | undefined): string | null =>
  inline ?? (variable !== undefined ? `env:${variable}` : file !== undefined ? `file:${file}` : null);

function upstream(yaml: string, env: Record<string, string> = {}): UpstreamSpec {
  return toInputs(parseConfigText(`upstreams:\n  default:\n${yaml}`, 'c.yaml'), readSecret, env).upstreams[0]!;
}

const NO_KUBE: KubeInputs = { routes: [], consumers: [], policies: [], upstreamKeys: new Map() };

describe('the config file', () => {
  test('proxy, http2 and servername, as the transport needs them', () => {
    const spec = upstream(
      [
        '    url: https://api.example.com/v1',
        '    http2: off',
        '    proxy: { url: "http://proxy.corp:3128", username: gw, password_file: /run/proxy/password }',
        '    tls: { servername: api.internal }',
      ].join('\n'),
    );
    expect(spec).toMatchObject({
      http2: 'off',
      proxy: { url: 'http://proxy.corp:3128', username: 'gw', password: 'file:/run/proxy/password', passwordSecret: null },
      envProxy: null,
      tlsServername: 'api.internal',
      tlsClientCertSecret: null,
    });
  });

  test('defaults: http2 auto, no proxy of its own, the process proxy variables when set', () => {
    expect(upstream('    url: https://a.example/v1')).toMatchObject({ http2: 'auto', proxy: null, envProxy: null, tlsServername: null, tlsClientCert: null });
    expect(upstream('    url: https://a.example/v1', { HTTPS_PROXY: 'http://p:8080', NO_PROXY: '.svc' }).envProxy).toEqual({
      httpProxy: null,
      httpsProxy: 'http://p:8080',
      noProxy: '.svc',
    });
    // An upstream with a proxy of its own ignores them.
    expect(upstream('    url: https://a.example/v1\n    proxy: { url: "http://mine:1" }', { HTTPS_PROXY: 'http://p:8080' }).envProxy).toBeNull();
  });

  test('a client certificate from a kubernetes.io/tls Secret, a proxy password from a Secret', () => {
    const spec = upstream(
      [
        '    url: https://a.example/v1',
        '    proxy: { url: "http://p:1", username: gw, password_secret: { name: egress, key: password } }',
        '    tls: { client_cert_secret: { name: mtls, namespace: certs } }',
      ].join('\n'),
    );
    expect(spec.proxy).toEqual({ url: 'http://p:1', username: 'gw', password: null, passwordSecret: { namespace: null, name: 'egress', key: 'password' } });
    expect(spec.tlsClientCertSecret).toEqual({ namespace: 'certs', name: 'mtls' });
  });

  test.each([
    ['credentials in the proxy URL', '    proxy: { url: "http://user:pw@p:1" }', 'no credentials in the proxy URL'],
    ['a path in the proxy URL', '    proxy: { url: "http://p:1/path" }', 'a proxy URL has no path'],
    ['a socks proxy', '    proxy: { url: "socks5://p:1" }', 'expected an http(s) URL of the proxy'],
    ['a password without a user', '    proxy: { url: "http://p:1", password_env: X }', 'a proxy password needs a username'],
    ['two password sources', '    proxy: { url: "http://p:1", username: u, password_env: X, password_file: /f }', 'give at most one of password_file'],
    ['an inline password', '    proxy: { url: "http://p:1", password: inline }', 'password'],
    ['an unknown http2 mode', '    http2: sometimes', 'http2'],
    ['a certificate file without its key', '    tls: { client_cert_file: /c }', 'give client_cert_file and client_key_file together'],
    ['certificate files and a Secret', '    tls: { client_cert_file: /c, client_key_file: /k, client_cert_secret: { name: s } }', 'not both'],
    ['a servername that is no host name', '    tls: { servername: "bad name" }', 'expected a host name'],
  ])('refused: %s', (_name, yaml, message) => {
    const text = `    url: https://a/v1\n${yaml}`;
    expect(() => upstream(text)).toThrow(ConfigError);
    expect(() => upstream(text)).toThrow(message);
  });
});

describe('the process proxy variables', () => {
  test('lower case first, an empty value is unset, NO_PROXY kept as given', () => {
    expect(envProxy({})).toBeNull();
    expect(envProxy({ HTTP_PROXY: '', https_proxy: '' })).toBeNull();
    expect(envProxy({ http_proxy: 'http://low:1', HTTP_PROXY: 'http://up:1', no_proxy: 'a,b' })).toEqual({
      httpProxy: 'http://low:1',
      httpsProxy: null,
      noProxy: 'a,b',
    });
  });

  test('a value that is not an http(s) URL fails the config without quoting it (it may hold a password)', () => {
    expect(() => envProxy({ HTTPS_PROXY: 'not a url with s3cret' })).toThrow(ConfigError);
    expect(() => envProxy({ HTTPS_PROXY: 'not a url with s3cret' })).toThrow(/^HTTPS_PROXY/);
    try {
      envProxy({ HTTPS_PROXY: 'ftp://u:s3cret@p' });
    } catch (error) {
      expect((error as Error).message).not.toContain('s3cret');
    }
  });
});

describe('the compiled upstream', () => {
  const spec = (yaml: string, env: Record<string, string> = {}): UpstreamSpec => upstream(`    url: https://a.example/v1\n${yaml}`, env);

  test('proxy credentials: the Basic value, and the password and its token among the secrets the relay redacts', () => {
    const compiled = compileUpstream(
      {
        ...spec('    proxy: { url: "http://p:1", username: gateway }'),
        proxy: { ...spec('    proxy: { url: "http://p:1", username: gateway }').proxy!, password: 'long-enough-password' },
      },
      null,
      'ns',
    );
    const token = Buffer.from('gateway:long-enough-password').toString('base64');
    expect(compiled.proxyAuthorization).toBe(`Basic ${token}`);
    expect(compiled.secrets).toEqual(['long-enough-password', token]);
  });

  test('a short proxy password is not redacted (it would match ordinary text); its token still is', () => {
    const base = spec('    proxy: { url: "http://p:1", username: gateway }');
    const compiled = compileUpstream({ ...base, proxy: { ...base.proxy!, password: 'pw' } }, null, 'ns');
    expect(compiled.secrets).toEqual([Buffer.from('gateway:pw').toString('base64')]);
  });

  test('credentials in HTTPS_PROXY are redacted too', () => {
    const compiled = compileUpstream(spec('', { HTTPS_PROXY: 'http://alice:env-proxy-secret@p:1' }), null, 'ns');
    expect(compiled.secrets).toEqual(['env-proxy-secret', Buffer.from('alice:env-proxy-secret').toString('base64')]);
  });

  test('a proxy password from a Secret, resolved from the watched entries; missing: no credentials, the proxy says 407', () => {
    const base = spec('    proxy: { url: "http://p:1", username: gw, password_secret: { name: egress, key: password } }');
    const kube: KubeInputs = { ...NO_KUBE, upstreamKeys: new Map([['ns/egress/password', 'from-the-secret']]) };
    expect(compileUpstream(base, kube, 'ns').proxyAuthorization).toBe(`Basic ${Buffer.from('gw:from-the-secret').toString('base64')}`);
    expect(compileUpstream(base, NO_KUBE, 'ns').proxyAuthorization).toBe(`Basic ${Buffer.from('gw:').toString('base64')}`);
  });

  test('a client certificate Secret that does not hold a usable pair leaves the upstream without one', () => {
    const base = spec('    tls: { client_cert_secret: { name: mtls } }');
    const kube: KubeInputs = {
      ...NO_KUBE,
      upstreamKeys: new Map([
        ['ns/mtls/tls.crt', 'not a certificate'],
        ['ns/mtls/tls.key', 'not a key'],
      ]),
    };
    expect(compileUpstream(base, kube, 'ns').clientCert).toBeNull();
    expect(compileUpstream(base, NO_KUBE, 'ns').clientCert).toBeNull();
  });

  test('the pool key changes with the proxy, its credentials, http2, servername; not with the API key', () => {
    const key = (yaml: string): string => compileUpstream(spec(yaml), null, 'ns').poolKey;
    const plain = key('');
    expect(key('    api_key: other')).toBe(plain);
    for (const yaml of [
      '    proxy: { url: "http://p:1" }',
      '    proxy: { url: "http://p:1", username: u }',
      '    http2: off',
      '    tls: { servername: other.example }',
    ]) {
      expect(key(yaml)).not.toBe(plain);
    }
    expect(key('    proxy: { url: "http://p:1", username: u }')).not.toBe(key('    proxy: { url: "http://p:1", username: v }'));
  });

  test('the Secrets a snapshot names: API keys, proxy passwords, client certificates', () => {
    const inputs = toInputs(
      parseConfigText(
        [
          'upstreams:',
          '  default: { url: "https://a/v1", api_key_secret: { name: keys, key: k } }',
          '  b: { url: "https://b/v1", proxy: { url: "http://p:1", username: u, password_secret: { name: egress, key: pw, namespace: net } } }',
          '  c: { url: "https://c/v1", tls: { client_cert_secret: { name: mtls } } }',
        ].join('\n'),
        'c.yaml',
      ),
      readSecret,
    );
    const snapshot = buildSnapshot({ file: inputs, kube: null, namespace: 'ns', version: 1 });
    expect([...referencedSecrets(snapshot, 'ns')].sort()).toEqual(['net/egress', 'ns/keys', 'ns/mtls']);
  });
});

describe('which client carries an upstream', () => {
  const compiled = (yaml: string, env: Record<string, string> = {}) => compileUpstream(upstream(yaml, env), null, 'ns');
  test.each([
    ['plain http, HTTP/1.1, no proxy: the native client', '    url: http://vllm:8000/v1', {}, true],
    ['https: undici', '    url: https://api.example/v1', {}, false],
    ['h2c (http2: on): undici', '    url: http://vllm:8000/v1\n    http2: on', {}, false],
    ['a proxy of its own: undici', '    url: http://vllm:8000/v1\n    proxy: { url: "http://p:1" }', {}, false],
    ['HTTP_PROXY set: undici (it applies NO_PROXY)', '    url: http://vllm:8000/v1', { HTTP_PROXY: 'http://p:1' }, false],
    ['only HTTPS_PROXY set: a plain-http upstream stays native', '    url: http://vllm:8000/v1', { HTTPS_PROXY: 'http://p:1' }, true],
  ])('%s', (_name, yaml, env, native) => {
    expect(nativeClientServes(compiled(yaml, env))).toBe(native);
  });
});

describe("a proxy's refusals, as the client sees them", () => {
  const code = (error: Error): string => fromUpstreamError(toUpstreamError(error)).code;

  test('407 to a forwarded request (undici reports it as an invalid argument): upstream_proxy_auth', () => {
    expect(code(new errors.InvalidArgumentError('Proxy Authentication Required (407)'))).toBe('upstream_proxy_auth');
    // Any other invalid argument is the gateway's own fault.
    expect(code(new errors.InvalidArgumentError('invalid header'))).toBe('internal_error');
  });

  test.each([
    [407, 'upstream_proxy_auth'],
    [401, 'upstream_proxy_auth'],
    [403, 'upstream_proxy_refused'],
    [400, 'upstream_proxy_refused'],
    [502, 'upstream_unreachable'],
    [503, 'upstream_unreachable'],
    [504, 'upstream_unreachable'],
  ])('CONNECT answered %i: %s', (status, expected) => {
    expect(code(new errors.RequestAbortedError(`Proxy response (${status}) !== 200 when HTTP Tunneling`))).toBe(expected);
  });

  test('a refusal names the proxy status in its message', () => {
    expect(fromUpstreamError(new ProxyRefusedError(403)).message).toContain('(403)');
  });

  test('an aborted request that is not a tunnel refusal stays what it was', () => {
    const aborted = new errors.RequestAbortedError();
    expect(toUpstreamError(aborted)).toBe(aborted);
  });

  test("undici's timeouts and response errors map like the native client's", () => {
    expect(fromUpstreamError(new errors.ConnectTimeoutError()).code).toBe('upstream_timeout');
    expect(fromUpstreamError(new errors.HeadersTimeoutError()).code).toBe('upstream_timeout');
    expect(fromUpstreamError(new errors.BodyTimeoutError()).code).toBe('upstream_timeout');
    expect(fromUpstreamError(new errors.SocketError('other side closed')).code).toBe('upstream_reset');
    expect(fromUpstreamError(new errors.ResponseContentLengthMismatchError()).code).toBe('upstream_bad_response');
    expect(fromUpstreamError(new errors.HeadersOverflowError()).code).toBe('upstream_bad_response');
    expect(fromUpstreamError(toUpstreamError(new errors.HTTPParserError('Invalid character'))).code).toBe('upstream_bad_response');
  });
});
