import type { TLSSocket } from 'node:tls';
import { buildConnector, EnvHttpProxyAgent, Pool, ProxyAgent, type Dispatcher } from 'undici';
import { Http2UnavailableError, ProxyUnreachableError } from '../../errors/upstream.js';

/** How the gateway reaches one upstream origin through undici. */
export interface UndiciConnection {
  /** scheme://host[:port] */
  readonly origin: string;
  readonly connectTimeoutMs: number;
  /** How long an idle connection is kept; an upstream's Keep-Alive hint can only shorten it. */
  readonly keepAliveMs: number;
  /** Largest response head accepted. */
  readonly maxHeaderBytes: number;
  readonly tls: {
    /** PEM of the CA; null = the system's. */
    readonly ca: string | null;
    readonly rejectUnauthorized: boolean;
    /** SNI and the name to verify; null = the origin's host. */
    readonly servername: string | null;
    /** mTLS client certificate and key (PEM). */
    readonly clientCert: { readonly cert: string; readonly key: string } | null;
  };
  /** auto: h2 when an https upstream offers it (ALPN); on: h2 only (h2c with prior knowledge on http); off: HTTP/1.1. */
  readonly http2: 'auto' | 'on' | 'off';
  /** The upstream's own forward proxy: origin and Proxy-Authorization. */
  readonly proxy: { readonly url: string; readonly authorization: string | null } | null;
  /** The process's proxy variables (undici's EnvHttpProxyAgent applies NO_PROXY per origin). */
  readonly envProxy: { readonly httpProxy: string | null; readonly httpsProxy: string | null; readonly noProxy: string } | null;
}

type Connector = buildConnector.connector;

/**
 * The undici dispatcher for one upstream: a Pool, or behind a proxy a
 * ProxyAgent (CONNECT for https and for h2c; a forwarded request for plain
 * http, as curl does), or EnvHttpProxyAgent for the process's variables.
 * Connectors are undici's own (its TLS session cache gives resumption), with
 * two wraps: a failed connection to a proxy becomes ProxyUnreachableError,
 * and `http2: on` insists on h2.
 */
export function createDispatcher(connection: UndiciConnection): Dispatcher {
  const https = connection.origin.startsWith('https:');
  const mode = connection.http2;
  const allowH2 = mode === 'on' || (mode === 'auto' && https);
  const tls = connection.tls;
  const requestTls = {
    ...(tls.ca === null ? {} : { ca: tls.ca }),
    rejectUnauthorized: tls.rejectUnauthorized,
    ...(tls.servername === null ? {} : { servername: tls.servername }),
    ...(tls.clientCert === null ? {} : { cert: tls.clientCert.cert, key: tls.clientCert.key }),
    allowH2,
    preferH2: allowH2,
  };
  const poolOptions = {
    keepAliveTimeout: connection.keepAliveMs,
    keepAliveMaxTimeout: connection.keepAliveMs,
    maxHeaderSize: connection.maxHeaderBytes,
    allowH2,
  };
  const direct = buildConnector({ ...requestTls, timeout: connection.connectTimeoutMs });
  if (connection.proxy === null && connection.envProxy === null) {
    return new Pool(connection.origin, { ...poolOptions, connect: http2Gate(direct, mode) });
  }

  const proxyOrigins = new Set<string>();
  for (const url of [connection.proxy?.url, connection.envProxy?.httpProxy, connection.envProxy?.httpsProxy]) {
    if (url !== undefined && url !== null) proxyOrigins.add(new URL(url).origin);
  }
  const agentOptions = {
    ...poolOptions,
    requestTls,
    connectTimeout: connection.connectTimeoutMs,
    // h2c has no forwarded form: through a proxy it needs a tunnel.
    ...(mode === 'on' && !https ? { proxyTunnel: true } : {}),
    // The proxy's own connection (a tunnel's CONNECT).
    clientFactory: (origin: URL, options: object): Dispatcher => proxyPool(origin, options),
    // Pools per origin: to the proxy for forwarded requests, else to the upstream (through a tunnel, or direct).
    factory: (origin: string | URL, options: object): Dispatcher => {
      const url = new URL(origin);
      if (proxyOrigins.has(url.origin)) return proxyPool(url, { ...poolOptions, allowH2: false, ...options });
      const { connect, ...rest } = options as { connect?: Connector };
      return new Pool(url, { ...rest, connect: http2Gate(connect ?? direct, mode) });
    },
  };
  if (connection.proxy !== null) {
    return new ProxyAgent({
      ...agentOptions,
      uri: connection.proxy.url,
      ...(connection.proxy.authorization === null ? {} : { token: connection.proxy.authorization }),
    });
  }
  const env = connection.envProxy!;
  // '' rather than undefined: undici would fall back to process.env, and the gateway's env is its options'.
  return new EnvHttpProxyAgent({ ...agentOptions, connect: direct, httpProxy: env.httpProxy ?? '', httpsProxy: env.httpsProxy ?? '', noProxy: env.noProxy });
}

/** A pool to the proxy itself, whose failures to connect say so. */
function proxyPool(origin: URL, options: object): Dispatcher {
  const { connect, ...rest } = options as { connect: Connector };
  return new Pool(origin, {
    ...rest,
    connect: (connectOptions, callback) => {
      connect(connectOptions, (...args) => {
        if (args[0] === null) callback(...args);
        else callback(new ProxyUnreachableError(args[0]), null);
      });
    },
  });
}

/** `http2: on`: a TLS connection must have agreed on h2; a plain one speaks h2 with prior knowledge (h2c). */
function http2Gate(connect: Connector, mode: 'auto' | 'on' | 'off'): Connector {
  if (mode !== 'on') return connect;
  return (options, callback) => {
    connect(options, (...args) => {
      if (args[0] !== null) {
        callback(...args);
        return;
      }
      const socket = args[1] as TLSSocket;
      if (socket.encrypted !== true) {
        socket.alpnProtocol = 'h2'; // undici's own h2c switch (useH2c) sets the same
      } else if (socket.alpnProtocol !== 'h2') {
        socket.destroy();
        callback(new Http2UnavailableError(socket.alpnProtocol || 'no protocol'), null);
        return;
      }
      callback(null, socket);
    });
  };
}
