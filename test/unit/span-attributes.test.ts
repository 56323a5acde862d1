import type { RequestRecord } from '../../src/pipeline/request-record.js';
import { testRecord } from '../support/request-record.js';
import { operationName, providerName, requestOutcome, serverAttributes, spanName } from '../../src/observability/tracing/span-attributes.js';

/** A non-streamed request by default. */
const record = (overrides: Partial<RequestRecord> = {}): RequestRecord => testRecord({ ttfbMs: 1, stream: false, ...overrides });

test('GenAI operation names and span names', () => {
  expect(operationName('chat_completions')).toBe('chat');
  expect(operationName('completions')).toBe('text_completion');
  expect(operationName('embeddings')).toBe('embeddings');
  expect(operationName('models')).toBeNull();
  expect(spanName('POST', '/v1/chat/completions', 'chat', 'gpt-4')).toBe('chat gpt-4');
  expect(spanName('POST', '/v1/chat/completions', 'chat', null)).toBe('POST /v1/chat/completions');
  expect(spanName('GET', '/v1/models/gpt-4', null, null)).toBe('GET');
});

test('gen_ai.provider.name from the hosts the conventions name; none for the rest', () => {
  expect(providerName('api.openai.com')).toBe('openai');
  expect(providerName('my-resource.openai.azure.com')).toBe('azure.ai.openai');
  expect(providerName('bedrock-runtime.us-east-1.amazonaws.com')).toBe('aws.bedrock');
  expect(providerName('s3.amazonaws.com')).toBeNull();
  expect(providerName('notapi.openai.com.evil.example')).toBeNull();
  expect(providerName('vllm.inference.svc')).toBeNull();
  expect(providerName('127.0.0.1')).toBeNull();
});

test('usage and the response model become gen_ai attributes when the record has them, and only then', () => {
  expect(serverAttributes(record())).not.toHaveProperty('gen_ai.usage.input_tokens');
  expect(serverAttributes(record())).not.toHaveProperty('gen_ai.response.model');
  expect(serverAttributes(record({ inputTokens: 12, outputTokens: 34, responseModel: 'gpt-4o-2024-08-06' }))).toMatchObject({
    'gen_ai.usage.input_tokens': 12,
    'gen_ai.usage.output_tokens': 34,
    'gen_ai.response.model': 'gpt-4o-2024-08-06',
    'gen_ai.request.model': 'gpt-4',
    'gen_ai.operation.name': 'chat',
    'apiproxy.key_id': 'team-a',
    'apiproxy.consumer': 'team-a',
  });
});

test('outcome: error.type is the gateway code; only 5xx make the server span an error', () => {
  expect(requestOutcome(record())).toEqual({ errorType: null, error: false, message: undefined });
  expect(requestOutcome(record({ errorCode: 'upstream_timeout', status: 504 }))).toEqual({
    errorType: 'upstream_timeout',
    error: true,
    message: 'The upstream did not answer in time.',
  });
  expect(requestOutcome(record({ errorCode: 'invalid_api_key', status: 401 }))).toMatchObject({ errorType: 'invalid_api_key', error: false });
  expect(requestOutcome(record({ status: 429 }))).toMatchObject({ errorType: '429', error: false });
  expect(requestOutcome(record({ status: 500 }))).toMatchObject({ errorType: '500', error: true });
  expect(requestOutcome(record({ clientAborted: true, status: 499 }))).toMatchObject({ errorType: 'client_closed_request', error: false });
});
