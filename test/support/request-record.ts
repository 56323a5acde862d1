import type { RequestRecord } from '../../src/pipeline/request-record.js';

/** A finished request's record (a streamed chat completion answered 200 on its first attempt), with `overrides`. */
export function testRecord(overrides: Partial<RequestRecord> = {}): RequestRecord {
  return {
    id: 'req-1',
    startedAt: 0,
    method: 'POST',
    path: '/v1/chat/completions',
    route: 'chat_completions',
    keyId: 'team-a',
    consumer: 'team-a',
    model: 'gpt-4',
    targetModel: 'gpt-4o',
    upstream: 'default',
    status: 200,
    ttfbMs: 1.23456,
    bytesIn: 10,
    bytesOut: 20,
    stream: true,
    errorCode: null,
    clientAborted: false,
    attempts: 1,
    responseModel: null,
    inputTokens: null,
    outputTokens: null,
    cachedTokens: null,
    reasoningTokens: null,
    usageUnknown: false,
    ...overrides,
  };
}
