/**
 * An answer given before the request was read to its end (413 past the body
 * limit, 401 for a bad key) reaches clients that send their whole body before
 * they read: Python's urllib, run here with the system python3, the way a
 * user's script would. The gateway reads and drops the rest of the body within
 * bounds (time, silence, bytes), then closes; each bound is shown to bite.
 */
import { connect, type Socket } from 'node:net';
import { runPython } from '../support/real/index.js';
import { baseConfig, CLIENT_KEY, startTestGateway, type TestGateway } from '../support/gateway-harness.js';
import { waitFor } from '../support/wait.js';

/** POSTs a JSON body of `size` bytes of content with urllib; prints the status and body it read, or the error. */
const URLLIB_CLIENT = `
import json, sys, urllib.request, urllib.error
url, key, size = sys.argv[1], sys.argv[2], int(sys.argv[3])
body = b'{"model":"gpt-4","messages":[{"role":"user","content":"' + b'x' * size + b'"}]}'
req = urllib.request.Request(url, data=body, method='POST', headers={'content-type': 'application/json', 'authorization': 'Bearer ' + key})
try:
    with urllib.request.urlopen(req, timeout=60) as res:
        print(json.dumps({'status': res.status, 'body': res.read().decode()}))
except urllib.error.HTTPError as e:
    print(json.dumps({'status': e.code, 'connection': e.headers.get('connection'), 'body': e.read().decode()}))
except Exception as e:
    print(json.dumps({'error': type(e).__name__, 'message': str(e)}))
`;

interface UrllibResult {
  status?: number;
  connection?: string | null;
  body?: string;
  error?: string;
  message?: string;
}

async function urllibPost(url: string, key: string, size: number): Promise<UrllibResult> {
  const result = await runPython(URLLIB_CLIENT, [`${url}/v1/chat/completions`, key, String(size)], 60_000);
  if (result.status !== 0) throw new Error(`python3 failed (${result.status}): ${result.stderr}`);
  return JSON.parse(result.stdout) as UrllibResult;
}

const MiB = 1024 * 1024;

describe('with the default bounds', () => {
  let gw: TestGateway;
  beforeAll(async () => {
    // No upstream is reached: every request here is refused before it is forwarded.
    gw = await startTestGateway(baseConfig('http://127.0.0.1:9'));
  });
  afterAll(() => gw.stop());

  test('a 64 MiB request from urllib reads its 413 in the OpenAI error shape (the body limit is 8 MiB)', async () => {
    const result = await urllibPost(gw.url, CLIENT_KEY, 64 * MiB);
    expect(result.error).toBeUndefined();
    expect(result.status).toBe(413);
    expect(result.connection).toBe('close');
    expect(JSON.parse(result.body!)).toEqual({
      error: { message: `The request body is larger than ${8 * MiB} bytes.`, type: 'invalid_request_error', param: null, code: 'body_too_large' },
    });
    // The client closed after reading: nothing lingers on.
    await waitFor(async () => (await gw.gateway.openConnections()) === 0, 2000, 'the connection closed');
  });

  test('a 32 MiB request with a wrong key reads its 401 (the body is never read, only dropped)', async () => {
    const result = await urllibPost(gw.url, 'sk-not-a-key', 32 * MiB);
    expect(result.error).toBeUndefined();
    expect(result.status).toBe(401);
    expect(JSON.parse(result.body!)).toEqual({ error: { message: 'Invalid API key.', type: 'invalid_request_error', param: null, code: 'invalid_api_key' } });
  });
});

describe('the bounds', () => {
  let gw: TestGateway;
  beforeAll(async () => {
    gw = await startTestGateway(baseConfig('http://127.0.0.1:9'), { serverLimits: { lingerMs: 1_500, lingerIdleMs: 400, lingerBytes: 4 * MiB } });
  });
  afterAll(() => gw.stop());

  /** A raw client that half-closes nothing by itself (allowHalfOpen), so only the gateway ends the connection. */
  function open(head: string): Promise<{ socket: Socket; answer: Promise<string>; closed: Promise<number> }> {
    return new Promise((resolve) => {
      const { port } = new URL(gw.url);
      const socket = connect({ port: Number(port), host: '127.0.0.1', allowHalfOpen: true });
      let text = '';
      let answered!: (text: string) => void;
      const answer = new Promise<string>((done) => (answered = done));
      const closed = new Promise<number>((done) => socket.once('close', () => done(Date.now())));
      socket.on('data', (chunk: Buffer) => {
        text += chunk.toString('latin1');
        if (text.includes('\r\n\r\n{"error"') && text.endsWith('}}')) answered(text);
      });
      socket.on('error', () => undefined);
      socket.on('connect', () => {
        socket.write(head);
        resolve({ socket, answer, closed });
      });
    });
  }

  const head = (length: number, key = 'sk-not-a-key'): string =>
    `POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\nauthorization: Bearer ${key}\r\ncontent-type: application/json\r\ncontent-length: ${length}\r\n\r\n`;

  test('bytes: a client that keeps sending past lingerBytes is cut there, long before its body ends', async () => {
    const { socket, answer, closed } = await open(head(512 * MiB));
    const block = Buffer.alloc(64 * 1024, 'x');
    let written = 0;
    let cut = false;
    void closed.then(() => (cut = true));
    while (!cut && written < 512 * MiB) {
      written += block.length;
      if (!socket.write(block)) await new Promise((resolve) => socket.once('drain', resolve).once('close', resolve));
    }
    expect(await answer).toMatch(/^HTTP\/1\.1 401 /);
    expect(cut).toBe(true);
    // Dropped up to the bound, plus what the two sockets' buffers held when it bit.
    expect(written).toBeGreaterThan(4 * MiB);
    expect(written).toBeLessThan(64 * MiB);
  });

  test('silence: a client that stops sending is closed lingerIdleMs later', async () => {
    const { socket, answer, closed } = await open(head(1 * MiB));
    socket.write(Buffer.alloc(1000, 'x'));
    expect(await answer).toMatch(/^HTTP\/1\.1 401 /);
    const answeredAt = Date.now();
    const closedAt = await Promise.race([closed, waitUntilGatewayCloses(gw, socket)]);
    expect(closedAt - answeredAt).toBeGreaterThanOrEqual(300);
    expect(closedAt - answeredAt).toBeLessThan(1_400);
  });

  test('time: a client that trickles bytes (never silent that long) is closed lingerMs after the answer', async () => {
    const { socket, answer } = await open(head(1 * MiB));
    socket.write('x');
    expect(await answer).toMatch(/^HTTP\/1\.1 401 /);
    const answeredAt = Date.now();
    const trickle = setInterval(() => socket.write('x'), 100);
    try {
      const closedAt = await waitUntilGatewayCloses(gw, socket);
      expect(closedAt - answeredAt).toBeGreaterThanOrEqual(1_300);
      expect(closedAt - answeredAt).toBeLessThan(3_000);
    } finally {
      clearInterval(trickle);
    }
  });
});

/** When the gateway dropped its side: its server holds no connection any more (the client's socket may not notice without writing). */
async function waitUntilGatewayCloses(gw: TestGateway, socket: Socket): Promise<number> {
  await waitFor(async () => (await gw.gateway.openConnections()) === 0, 10_000, 'the gateway closed the connection');
  socket.destroy();
  return Date.now();
}
