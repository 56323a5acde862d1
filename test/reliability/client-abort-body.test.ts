/**
 * A client that goes away while its request body is still being read (a
 * disconnect mid-upload, or a slowloris body cut off by requestTimeout) is a
 * client abort: status 499 in the access line and metrics, like a disconnect
 * at any other moment; not a gateway bug. It must not be logged as an
 * 'the gateway failed to handle the request' nor counted as a 500 internal_error.
 * (readBody() rejects with ClientGoneError, which the error writer answers
 * by closing, and the record settles as 499.)
 */
import { connect } from 'node:net';
import type { FakeUpstream } from '../support/fake-upstream.js';
import { baseConfig, CLIENT_KEY, startGatewayWithUpstream, type TestGateway } from '../support/gateway-harness.js';
import { expectIdleAndHealthy, movement, prometheus, waitFor } from './helpers.js';

let upstream: FakeUpstream;
let gw: TestGateway;
let stop: () => Promise<void>;

beforeAll(async () => ({ upstream, gw, stop } = await startGatewayWithUpstream((url) => baseConfig(url))));
afterAll(() => stop());

test('a client that disconnects mid-upload is a 499 client abort, not an unhandled error or a 500', async () => {
  const before = await prometheus(gw.url);
  const linesBefore = gw.logs.lines.length;
  const socket = connect(gw.gateway.port, '127.0.0.1');
  await new Promise((resolve) => socket.once('connect', resolve));
  socket.write(
    `POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\nauthorization: Bearer ${CLIENT_KEY}\r\ncontent-type: application/json\r\nx-request-id: gone-mid-upload\r\ncontent-length: 100000\r\n\r\n{"model":"gpt-4","messages":[`,
  );
  await new Promise((resolve) => setTimeout(resolve, 100));
  socket.destroy();
  await waitFor(() => gw.logs.lines.slice(linesBefore).some((line) => line.includes('gone-mid-upload')), 3000, 'the access line');
  await expectIdleAndHealthy(gw.url);
  const lines = gw.logs.entries.slice(linesBefore);
  expect(lines.filter((entry) => entry['msg'] === 'the gateway failed to handle the request')).toEqual([]);
  expect(lines.find((entry) => entry['req_id'] === 'gone-mid-upload')).toMatchObject({ status: 499, client_aborted: true });
  const after = await prometheus(gw.url);
  const internal = { route: 'chat_completions', status: '500' };
  expect(movement(before, after, 'apiproxy_requests_total', internal)).toBe('unchanged');
  expect(upstream.requests.some((r) => r.headers['x-request-id'] === 'gone-mid-upload')).toBe(false);
});

test('a request whose chunked body breaks the parser after the headers (a smuggling attempt) is not an unhandled error either', async () => {
  const linesBefore = gw.logs.lines.length;
  const body = '{"model":"gpt-4"}';
  const socket = connect(gw.gateway.port, '127.0.0.1');
  await new Promise((resolve) => socket.once('connect', resolve));
  socket.on('data', () => undefined);
  socket.write(
    `POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\nauthorization: Bearer ${CLIENT_KEY}\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n${body.length.toString(16)}\n${body}\r\n0\r\n\r\n`,
  );
  await new Promise((resolve) => socket.once('close', resolve));
  await expectIdleAndHealthy(gw.url);
  expect(gw.logs.entries.slice(linesBefore).filter((entry) => entry['msg'] === 'the gateway failed to handle the request')).toEqual([]);
});
