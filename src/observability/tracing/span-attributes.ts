import { ERROR_CODES } from '../../errors/codes.js';
import type { RequestRecord } from '../../pipeline/request-record.js';
import type { RouteLabel } from '../metrics.js';

/**
 * Names and attributes of the gateway's spans, after the OpenTelemetry
 * semantic conventions: GenAI (gen_ai.*) where the request is a model call,
 * HTTP (http.*, url.*, server.*) for the exchange, `apiproxy.*` for the
 * gateway's own. Plain data; no OpenTelemetry code.
 */

/** gen_ai.operation.name by route; routes that are not a model call have none. */
const OPERATIONS: Partial<Record<RouteLabel, string>> = {
  chat_completions: 'chat',
  responses: 'chat',
  completions: 'text_completion',
  embeddings: 'embeddings',
};

export function operationName(route: RouteLabel): string | null {
  return OPERATIONS[route] ?? null;
}

/** http.route for the paths whose template is the path itself. */
const ROUTES = new Set(['/v1/chat/completions', '/v1/completions', '/v1/embeddings', '/v1/responses', '/v1/models']);

export function httpRoute(path: string): string | null {
  return ROUTES.has(path) ? path : null;
}

/** gen_ai.provider.name for the providers the conventions name, known by their API's host. */
const PROVIDER_HOSTS: readonly (readonly [suffix: string, provider: string])[] = [
  ['api.openai.com', 'openai'],
  ['.openai.azure.com', 'azure.ai.openai'],
  ['.services.ai.azure.com', 'azure.ai.inference'],
  ['api.anthropic.com', 'anthropic'],
  ['api.mistral.ai', 'mistral_ai'],
  ['api.groq.com', 'groq'],
  ['api.deepseek.com', 'deepseek'],
  ['api.x.ai', 'x_ai'],
  ['api.perplexity.ai', 'perplexity'],
  ['api.cohere.com', 'cohere'],
  ['generativelanguage.googleapis.com', 'gcp.gemini'],
  ['aiplatform.googleapis.com', 'gcp.vertex_ai'],
  ['amazonaws.com', 'aws.bedrock'],
];

/** The provider behind an upstream origin, or null for one the conventions do not name (an in-cluster vLLM, a proxy). */
export function providerName(hostname: string): string | null {
  for (const [suffix, provider] of PROVIDER_HOSTS) {
    if (hostname === suffix || (suffix.startsWith('.') ? hostname.endsWith(suffix) : hostname.endsWith(`.${suffix}`))) {
      if (provider === 'aws.bedrock' && !hostname.startsWith('bedrock')) continue;
      return provider;
    }
  }
  return null;
}

/** `{gen_ai.operation.name} {model}` for a model call (the GenAI convention), else `{method} {http.route}` or the method (HTTP's). */
export function spanName(method: string, path: string, operation: string | null, model: string | null): string {
  if (operation !== null && model !== null) return `${operation} ${model}`;
  const route = httpRoute(path);
  return route === null ? method : `${method} ${route}`;
}

export type Attributes = Record<string, string | number | boolean>;

/** How a request ended, for the server span: error.type and whether the span's status is an error. */
export function requestOutcome(record: RequestRecord): { errorType: string | null; error: boolean; message: string | undefined } {
  const code = record.errorCode;
  if (code !== null) {
    const entry = (ERROR_CODES as Record<string, { status: number; message: string } | undefined>)[code];
    // Server spans mark 5xx as errors; a 4xx is the client's doing (the HTTP conventions' rule).
    return { errorType: code, error: (entry?.status ?? 500) >= 500, message: entry?.message };
  }
  if (record.clientAborted) return { errorType: 'client_closed_request', error: false, message: undefined };
  if (record.status >= 400) return { errorType: String(record.status), error: record.status >= 500, message: undefined };
  return { errorType: null, error: false, message: undefined };
}

/** The server span's attributes once the request is over. Never a key, a prompt or a completion. */
export function serverAttributes(record: RequestRecord): Attributes {
  const attributes: Attributes = {
    'http.response.status_code': record.status,
    'apiproxy.request_id': record.id,
    'apiproxy.route': record.route,
  };
  const route = httpRoute(record.path);
  if (route !== null) attributes['http.route'] = route;
  const operation = operationName(record.route);
  if (operation !== null) attributes['gen_ai.operation.name'] = operation;
  if (record.keyId !== null) attributes['apiproxy.key_id'] = record.keyId;
  if (record.consumer !== null) attributes['apiproxy.consumer'] = record.consumer;
  if (record.model !== null) attributes['gen_ai.request.model'] = record.model;
  if (record.targetModel !== null) attributes['apiproxy.target_model'] = record.targetModel;
  if (record.upstream !== null) attributes['apiproxy.upstream'] = record.upstream;
  if (record.responseModel !== null) attributes['gen_ai.response.model'] = record.responseModel;
  if (record.inputTokens !== null) attributes['gen_ai.usage.input_tokens'] = record.inputTokens;
  if (record.outputTokens !== null) attributes['gen_ai.usage.output_tokens'] = record.outputTokens;
  if (record.stream) attributes['apiproxy.stream'] = true;
  if (record.clientAborted) attributes['apiproxy.client_aborted'] = true;
  return attributes;
}
