import { errors } from 'undici';
import { BadResponseError, ProxyAuthError, ProxyRefusedError } from '../../errors/upstream.js';

/*
 * undici reports a proxy's refusals as generic errors, told apart only by
 * their messages (lib/dispatcher/proxy-agent.js, undici 8): a 407 to a
 * forwarded request as an invalid-argument error, any other answer than 200
 * to a CONNECT as an aborted request. The version is pinned; the proxy tests
 * (test/integration/egress-proxy.test.ts) fail should the messages change.
 */
const FORWARDED_407 = 'Proxy Authentication Required (407)';
const TUNNEL_REFUSED_PREFIX = 'Proxy response (';
const TUNNEL_REFUSED_SUFFIX = ') !== 200 when HTTP Tunneling';

/**
 * undici's error as one of the gateway's, where undici's says too little by
 * its code: a proxy's refusal (ProxyAuthError, ProxyRefusedError), a response
 * its parser refused without a code (BadResponseError); else `error` as it is.
 */
export function toUpstreamError(error: Error): Error {
  if (error instanceof errors.HTTPParserError && (error as { code?: unknown }).code === undefined) return new BadResponseError(error.message);
  const code = (error as { code?: unknown }).code;
  if (code === 'UND_ERR_INVALID_ARG' && error.message === FORWARDED_407) return new ProxyAuthError();
  if (code !== 'UND_ERR_ABORTED') return error;
  const message = error.message;
  if (!message.startsWith(TUNNEL_REFUSED_PREFIX) || !message.endsWith(TUNNEL_REFUSED_SUFFIX)) return error;
  const status = Number(message.slice(TUNNEL_REFUSED_PREFIX.length, message.length - TUNNEL_REFUSED_SUFFIX.length));
  if (!Number.isInteger(status)) return error;
  // 401: tinyproxy's answer to wrong credentials (407 is for none).
  return status === 407 || status === 401 ? new ProxyAuthError() : new ProxyRefusedError(status);
}
