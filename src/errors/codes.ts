/**
 * Every error the gateway itself answers with, in one table: a stable code, its
 * HTTP status, the OpenAI error type and a default message. The README's error
 * table is checked against this by a test.
 */
export const ERROR_CODES = {
  invalid_json: { status: 400, type: 'invalid_request_error', message: 'The request body is not valid JSON.' },
  invalid_body: { status: 400, type: 'invalid_request_error', message: 'The request body must be a JSON object.' },
  invalid_utf8: { status: 400, type: 'invalid_request_error', message: 'The request body is not valid UTF-8.' },
  invalid_deadline: {
    status: 400,
    type: 'invalid_request_error',
    message: 'The x-apiproxy-deadline-ms header must be a whole number of milliseconds from 1 to 86400000.',
  },
  missing_model: { status: 400, type: 'invalid_request_error', message: "The request body must contain a string 'model' field." },
  duplicate_model: { status: 400, type: 'invalid_request_error', message: "The request body names 'model' more than once." },
  invalid_multipart: { status: 400, type: 'invalid_request_error', message: 'The multipart/form-data body is malformed.' },
  missing_api_key: {
    status: 401,
    type: 'invalid_request_error',
    message: 'Missing API key. Send it as "Authorization: Bearer <key>".',
  },
  invalid_api_key: { status: 401, type: 'invalid_request_error', message: 'Invalid API key.' },
  model_not_allowed: { status: 403, type: 'invalid_request_error', message: 'This key may not use the requested model.' },
  not_found: { status: 404, type: 'invalid_request_error', message: 'Unknown path.' },
  model_not_found: { status: 404, type: 'invalid_request_error', message: 'The model does not exist or is not routed by this gateway.' },
  method_not_allowed: { status: 405, type: 'invalid_request_error', message: 'Method not allowed for this path.' },
  body_too_large: { status: 413, type: 'invalid_request_error', message: 'The request body is larger than the gateway allows.' },
  rate_limit_exceeded: { status: 429, type: 'requests', message: "Rate limit reached for the consumer's policy." },
  internal_error: { status: 500, type: 'server_error', message: 'The gateway failed to handle the request.' },
  upstream_unreachable: { status: 502, type: 'upstream_error', message: 'The upstream could not be reached.' },
  upstream_reset: { status: 502, type: 'upstream_error', message: 'The upstream closed the connection before answering.' },
  upstream_bad_response: { status: 502, type: 'upstream_error', message: 'The upstream sent a response that is not valid HTTP.' },
  upstream_tls: {
    status: 502,
    type: 'upstream_error',
    message: "The TLS handshake with the upstream failed: its certificate is not trusted, or it refused the gateway's (see the upstream's tls settings).",
  },
  upstream_http2_unavailable: { status: 502, type: 'upstream_error', message: 'The upstream did not agree to HTTP/2, which its http2 setting requires.' },
  upstream_proxy_unreachable: { status: 502, type: 'upstream_error', message: 'The egress proxy could not be reached.' },
  upstream_proxy_auth: {
    status: 502,
    type: 'upstream_error',
    message: "The egress proxy asked for credentials or refused the gateway's (407; see the upstream's proxy settings).",
  },
  upstream_proxy_refused: { status: 502, type: 'upstream_error', message: 'The egress proxy refused to connect to the upstream.' },
  upstream_unknown: { status: 502, type: 'upstream_error', message: 'The route names an upstream that is not configured.' },
  upstream_saturated: {
    status: 503,
    type: 'server_error',
    message: 'The upstream is at its limit of requests in flight and no slot freed in time.',
  },
  upload_spool_failed: {
    status: 503,
    type: 'server_error',
    message: 'The gateway could not buffer the upload while looking for its model; try again.',
  },
  not_ready: { status: 503, type: 'server_error', message: 'The gateway is not ready.' },
  rate_limit_unavailable: {
    status: 503,
    type: 'server_error',
    message: 'The rate limiter cannot reach its Redis and is set to refuse requests meanwhile (rate_limits.fail_open: false).',
  },
  upstream_timeout: { status: 504, type: 'upstream_error', message: 'The upstream did not answer in time.' },
} as const satisfies Record<string, { status: number; type: string; message: string }>;

export type ErrorCode = keyof typeof ERROR_CODES;
