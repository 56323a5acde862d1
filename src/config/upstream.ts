import { clientCertificateProblem } from './client-certificate.js';
import { keyDigest } from './key-digest.js';
import type { ClientCertificate, EnvProxy, KubeInputs, SecretRef, UpstreamSpec } from './model.js';

/** An upstream ready for the request path: its key resolved, the Authorization header precomputed. */
export interface Upstream extends UpstreamSpec {
  readonly authorization: string | null;
  /**
   * Values that must never reach a client, redacted from its answers' headers
   * and bodies: compileUpstream lists the upstream's own (its key, its proxy's
   * credentials); the snapshot widens the list to every secret the config holds.
   */
  readonly secrets: readonly string[];
  /** The cap on requests in flight and the queue's timeout, one object per snapshot. */
  readonly admission: { readonly maxInFlight: number | null; readonly queueTimeoutMs: number };
  /** mTLS: the client certificate in use, from files or the Secret; null without one. */
  readonly clientCert: ClientCertificate | null;
  /** `Basic <credentials>` for the upstream's own proxy; null without credentials. */
  readonly proxyAuthorization: string | null;
  /** Upstreams with equal pool keys share one transport (connection pool) across snapshots. */
  readonly poolKey: string;
  /** `retry.conditions` as the attempt loop reads them. */
  readonly retryOn: RetryOn;
}

/** The retry conditions, one flag per kind of failure and the statuses. */
export interface RetryOn {
  readonly connectFailure: boolean;
  readonly headersTimeout: boolean;
  readonly reset: boolean;
  readonly statuses: ReadonlySet<number>;
}

function retryOn(conditions: UpstreamSpec['retry']['conditions']): RetryOn {
  const statuses = new Set<number>();
  for (const condition of conditions) if (typeof condition === 'number') statuses.add(condition);
  return {
    connectFailure: conditions.includes('connect_failure'),
    headersTimeout: conditions.includes('headers_timeout'),
    reset: conditions.includes('reset'),
    statuses,
  };
}

/** The client certificate entries of a kubernetes.io/tls Secret. */
export const TLS_CERT_ENTRY = 'tls.crt';
export const TLS_KEY_ENTRY = 'tls.key';

/** Resolves an upstream's secrets (inline, from files, or from watched Secrets) and precomputes what requests need. */
export function compileUpstream(spec: UpstreamSpec, kube: KubeInputs | null, namespace: string): Upstream {
  const fromSecret = (ref: SecretRef): string | null => kube?.upstreamKeys.get(`${ref.namespace ?? namespace}/${ref.name}/${ref.key}`) ?? null;
  const apiKey = spec.apiKeySecret === null ? spec.apiKey : fromSecret(spec.apiKeySecret);
  const hasKey = apiKey !== null && apiKey !== '';
  const secrets: string[] = hasKey ? [apiKey] : [];

  let clientCert = spec.tlsClientCert;
  const certSecret = spec.tlsClientCertSecret;
  if (certSecret !== null) {
    const cert = fromSecret({ ...certSecret, key: TLS_CERT_ENTRY });
    const key = fromSecret({ ...certSecret, key: TLS_KEY_ENTRY });
    // A Secret without a usable pair leaves the upstream without a certificate, as a missing key leaves it without a key.
    clientCert = cert !== null && key !== null && clientCertificateProblem({ cert, key }) === null ? { cert, key } : null;
  }

  let proxyAuthorization: string | null = null;
  const proxy = spec.proxy;
  if (proxy !== null && proxy.username !== null) {
    const password = proxy.passwordSecret === null ? proxy.password : fromSecret(proxy.passwordSecret);
    proxyAuthorization = basicCredentials(proxy.username, password ?? '');
    secrets.push(...redactable([password ?? '', proxyAuthorization.slice('Basic '.length)]));
  }
  if (spec.envProxy !== null) secrets.push(...redactable(envProxySecrets(spec.envProxy)));

  return {
    ...spec,
    apiKey,
    authorization: hasKey ? `Bearer ${apiKey}` : null,
    secrets,
    admission: { maxInFlight: spec.maxConnections, queueTimeoutMs: spec.queueTimeoutMs },
    retryOn: retryOn(spec.retry.conditions),
    clientCert,
    proxyAuthorization,
    // A changed CA, certificate, proxy or other connection setting needs a new pool; a changed key or timeout does not.
    poolKey: [
      spec.origin,
      spec.connectTimeoutMs,
      spec.maxIdleConnections,
      spec.tlsInsecureSkipVerify,
      spec.tlsCa === null ? '' : keyDigest(spec.tlsCa),
      spec.tlsServername ?? '',
      clientCert === null ? '' : keyDigest(`${clientCert.cert}\n${clientCert.key}`),
      spec.http2,
      proxy?.url ?? '',
      proxyAuthorization === null ? '' : keyDigest(proxyAuthorization),
      spec.envProxy === null ? '' : keyDigest(JSON.stringify(spec.envProxy)),
    ].join('|'),
  };
}

/**
 * Proxy credentials worth redacting: a short password (unlike an API key)
 * would match ordinary text in every answer and mangle it.
 */
const MIN_REDACTED_LENGTH = 8;

function redactable(values: readonly string[]): string[] {
  return values.filter((value) => value.length >= MIN_REDACTED_LENGTH);
}

/** The Proxy-Authorization value for Basic credentials (RFC 7617). */
function basicCredentials(username: string, password: string): string {
  return `Basic ${Buffer.from(`${username}:${password}`, 'utf8').toString('base64')}`;
}

/** Credentials in the proxy variables' URLs (a user may put them there): the password and the Basic token undici sends. */
function envProxySecrets(proxy: EnvProxy): string[] {
  const secrets: string[] = [];
  for (const value of [proxy.httpProxy, proxy.httpsProxy]) {
    if (value === null) continue;
    const url = new URL(value);
    if (url.username === '') continue;
    const password = decodeURIComponent(url.password);
    secrets.push(password, basicCredentials(decodeURIComponent(url.username), password).slice('Basic '.length));
  }
  return secrets;
}
