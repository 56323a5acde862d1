import { randomBytes } from 'node:crypto';
import { readdirSync, readlinkSync } from 'node:fs';
import { Readable } from 'node:stream';
import OpenAI, { toFile } from 'openai';
import { request } from 'undici';
import { startFakeUpstream, type FakeUpstream } from '../support/fake-upstream.js';
import { baseConfig, CLIENT_KEY, startTestGateway, type TestGateway } from '../support/gateway-harness.js';
import { waitFor } from '../reliability/helpers.js';

/**
 * Multipart/form-data requests (audio transcriptions and translations, image
 * edits and variations) are routed by their `model` field like JSON requests:
 * only the model's value changes on the way, every other byte (boundaries,
 * part headers, file bytes) reaches the upstream as the client sent it.
 */

const LIMIT = 4 * 1024 * 1024;
let main: FakeUpstream;
let speech: FakeUpstream;
let gw: TestGateway;

beforeAll(async () => {
  main = await startFakeUpstream();
  speech = await startFakeUpstream();
  const config = baseConfig(main.url, {
    upstreams: {
      default: { url: `${main.url}/v1`, api_key: 'sk-main', timeouts: { connect_ms: 1000, headers_ms: 5000, idle_ms: 5000 } },
      speech: { url: `${speech.url}/v1`, api_key: 'sk-speech', timeouts: { connect_ms: 1000, headers_ms: 5000, idle_ms: 5000 } },
    },
    routes: [
      { model: 'whisper-alias', targets: [{ model: 'whisper-large-v3', upstream: 'speech' }] },
      { model: 'image-alias', targets: [{ model: 'gpt-image-1' }] },
    ],
    body_limit: LIMIT,
  });
  gw = await startTestGateway(config);
});
afterAll(async () => {
  await gw.stop();
  await main.close();
  await speech.close();
});

const auth = { authorization: `Bearer ${CLIENT_KEY}` };
const BOUNDARY = '----form-boundary-7MA4YWxkTrZu0gW';

interface Part {
  name: string;
  value: string | Buffer;
  filename?: string;
  headers?: string;
}

/** A multipart/form-data body, written out by hand so that tests know every byte. */
function formBody(parts: Part[], boundary = BOUNDARY): Buffer {
  const pieces: Buffer[] = [];
  for (const part of parts) {
    const filename = part.filename === undefined ? '' : `; filename="${part.filename}"`;
    const type = part.filename === undefined ? '' : '\r\nContent-Type: application/octet-stream';
    pieces.push(Buffer.from(`--${boundary}\r\nContent-Disposition: form-data; name="${part.name}"${filename}${type}${part.headers ?? ''}\r\n\r\n`, 'latin1'));
    pieces.push(typeof part.value === 'string' ? Buffer.from(part.value) : part.value);
    pieces.push(Buffer.from('\r\n'));
  }
  pieces.push(Buffer.from(`--${boundary}--\r\n`));
  return Buffer.concat(pieces);
}

/** `body` with the model field's value replaced: the bytes the upstream must see. */
function withModel(body: Buffer, from: string, to: string): Buffer {
  const marker = `name="model"\r\n\r\n${from}\r\n`;
  const at = body.indexOf(marker, 0, 'latin1');
  expect(at).toBeGreaterThan(0);
  return Buffer.concat([body.subarray(0, at), Buffer.from(`name="model"\r\n\r\n${to}\r\n`), body.subarray(at + Buffer.byteLength(marker))]);
}

async function postForm(path: string, body: Buffer | Readable, headers: Record<string, string> = {}) {
  const res = await request(`${gw.url}${path}`, {
    method: 'POST',
    headers: { ...auth, 'content-type': `multipart/form-data; boundary=${BOUNDARY}`, ...headers },
    body,
  });
  const text = await res.body.text();
  return { status: res.statusCode, text, error: () => (JSON.parse(text) as { error: { code: string; param: string | null; message: string } }).error };
}

const audio = randomBytes(700 * 1024); // past the spool's memory part: a model after it is looked for on disk

describe("routed by the form's model field", () => {
  test("model first: routed to the route's upstream, only the value replaced, Content-Length recomputed", async () => {
    const body = formBody([
      { name: 'model', value: 'whisper-alias' },
      { name: 'file', value: audio, filename: 'a.wav' },
      { name: 'language', value: 'en' },
    ]);
    const before = main.requests.length;
    const res = await postForm('/v1/audio/transcriptions', body);
    expect(res.status).toBe(200);
    const seen = speech.requests.at(-1)!;
    const expected = withModel(body, 'whisper-alias', 'whisper-large-v3');
    expect(seen.body.equals(expected)).toBe(true);
    expect(seen.headers['content-length']).toBe(String(expected.length));
    expect(seen.headers['content-type']).toBe(`multipart/form-data; boundary=${BOUNDARY}`);
    expect(seen.headers.authorization).toBe('Bearer sk-speech');
    expect(main.requests.length).toBe(before);
  });

  test('model last, after a file larger than the memory spool: held on disk, then routed the same way', async () => {
    const body = formBody([
      { name: 'file', value: audio, filename: 'a.wav' },
      { name: 'response_format', value: 'json' },
      { name: 'model', value: 'whisper-alias' },
    ]);
    const res = await postForm('/v1/audio/translations', body);
    expect(res.status).toBe(200);
    const seen = speech.requests.at(-1)!;
    expect(seen.url).toBe('/v1/audio/translations');
    expect(seen.body.equals(withModel(body, 'whisper-alias', 'whisper-large-v3'))).toBe(true);
  });

  test('a chunked upload (no Content-Length) is routed and stays chunked, byte for byte', async () => {
    const body = formBody([
      { name: 'model', value: 'whisper-alias' },
      { name: 'file', value: audio, filename: 'a.wav' },
    ]);
    const pieces = [body.subarray(0, 10), body.subarray(10, 200_000), body.subarray(200_000)];
    const res = await postForm('/v1/audio/transcriptions', Readable.from(pieces));
    expect(res.status).toBe(200);
    const seen = speech.requests.at(-1)!;
    expect(seen.headers['content-length']).toBeUndefined();
    expect(seen.headers['transfer-encoding']).toBe('chunked');
    expect(seen.body.equals(withModel(body, 'whisper-alias', 'whisper-large-v3'))).toBe(true);
  });

  test('an unrouted model goes to the default upstream with every byte as sent', async () => {
    const body = formBody([
      { name: 'image', value: audio.subarray(0, 5000), filename: 'a.png' },
      { name: 'prompt', value: 'a red hat' },
      { name: 'model', value: 'dall-e-2' },
    ]);
    const res = await postForm('/v1/images/edits', body);
    expect(res.status).toBe(200);
    const seen = main.requests.at(-1)!;
    expect(seen.body.equals(body)).toBe(true);
    expect(seen.headers['content-length']).toBe(String(body.length));
  });
});

describe('official openai SDK as a client', () => {
  /** The SDK's own multipart bytes, recorded on their way out, then sent as they are. */
  const sent: { body: Buffer; contentType: string }[] = [];
  const recordingFetch: typeof fetch = async (input, init) => {
    const outgoing = new Request(input, init);
    const body = Buffer.from(await outgoing.arrayBuffer());
    sent.push({ body, contentType: outgoing.headers.get('content-type') ?? '' });
    return fetch(outgoing.url, { method: outgoing.method, headers: outgoing.headers, body });
  };
  const client = (recording = false) =>
    new OpenAI({ apiKey: CLIENT_KEY, baseURL: `${gw.url}/v1`, maxRetries: 0, ...(recording ? { fetch: recordingFetch } : {}) });

  test("audio.transcriptions.create: routed by its model, the SDK's bytes intact but for the model", async () => {
    const file = await toFile(audio, 'speech.wav', { type: 'audio/wav' });
    await client(true).audio.transcriptions.create({ file, model: 'whisper-alias', language: 'en' });
    const { body, contentType } = sent.at(-1)!;
    expect(contentType).toMatch(/^multipart\/form-data; boundary=/);
    const seen = speech.requests.at(-1)!;
    expect(seen.headers['content-type']).toBe(contentType);
    expect(seen.body.equals(withModel(body, 'whisper-alias', 'whisper-large-v3'))).toBe(true);
  });

  test('images.edit: routed by its model (the image first, the model after it)', async () => {
    const image = await toFile(audio.subarray(0, 300 * 1024), 'in.png', { type: 'image/png' });
    await client(true).images.edit({ image, prompt: 'a hat', model: 'image-alias' });
    const { body } = sent.at(-1)!;
    expect(body.indexOf('name="image"')).toBeLessThan(body.indexOf('name="model"'));
    const seen = main.requests.at(-1)!;
    expect(seen.url).toBe('/v1/images/edits');
    expect(seen.body.equals(withModel(body, 'image-alias', 'gpt-image-1'))).toBe(true);
  });

  test("audio.transcriptions.create through the SDK's own fetch: the upstream gets the target model and the file", async () => {
    const file = await toFile(audio, 'speech.wav', { type: 'audio/wav' });
    await client().audio.transcriptions.create({ file, model: 'whisper-alias' });
    const seen = speech.requests.at(-1)!;
    expect(seen.body.includes(Buffer.from('\r\n\r\nwhisper-large-v3\r\n'))).toBe(true);
    expect(seen.body.includes(Buffer.from('whisper-alias'))).toBe(false);
    expect(seen.body.includes(audio)).toBe(true);
  });
});

describe('refused, or passed as sent', () => {
  test('no model on transcriptions: 400 missing_model, nothing sent upstream', async () => {
    const before = main.requests.length + speech.requests.length;
    const res = await postForm('/v1/audio/transcriptions', formBody([{ name: 'file', value: audio, filename: 'a.wav' }]));
    expect(res.status).toBe(400);
    expect(res.error()).toMatchObject({ code: 'missing_model', param: 'model' });
    expect(main.requests.length + speech.requests.length).toBe(before);
  });

  test('no model where the API does not require one (image variations, files): to the default upstream as sent', async () => {
    for (const path of ['/v1/images/variations', '/v1/files']) {
      const body = formBody([
        { name: 'purpose', value: 'assistants' },
        { name: 'file', value: audio, filename: 'a.bin' },
      ]);
      const res = await postForm(path, body);
      expect(res.status).toBe(200);
      const seen = main.requests.at(-1)!;
      expect(seen.url).toBe(path);
      expect(seen.body.equals(body)).toBe(true);
    }
  });

  test('two model fields: 400 duplicate_model, whether both come before the file or one after it', async () => {
    const cases = [
      [
        { name: 'model', value: 'whisper-alias' },
        { name: 'model', value: 'gpt-4o-transcribe' },
        { name: 'file', value: audio, filename: 'a.wav' },
      ],
      [
        { name: 'model', value: 'whisper-alias' },
        { name: 'file', value: audio, filename: 'a.wav' },
        { name: 'model', value: 'gpt-4o-transcribe' },
      ],
    ];
    for (const parts of cases) {
      const before = main.requests.length + speech.requests.length;
      const res = await postForm('/v1/audio/transcriptions', formBody(parts));
      expect(res.status).toBe(400);
      expect(res.error()).toMatchObject({ code: 'duplicate_model', param: 'model' });
      // The upstream never had the whole body (a streamed upload is cut before its last bytes).
      expect(main.requests.length + speech.requests.length).toBe(before);
    }
  });

  const file = { name: 'file', value: Buffer.from('RIFF0000WAVE'), filename: 'a.wav' };
  const model = { name: 'model', value: 'whisper-alias' };
  const malformed: [string, Buffer, string | null, string][] = [
    ['a preamble before the first boundary', Buffer.concat([Buffer.from('hello\r\n'), formBody([model, file])]), null, 'the body must begin with its boundary'],
    ['no closing boundary', formBody([model, file]).subarray(0, -(BOUNDARY.length + 6)), null, 'the body ends before its closing boundary'],
    [
      'transport padding after a boundary',
      Buffer.from(
        formBody([file, model])
          .toString('latin1')
          .replace(`--${BOUNDARY}\r\nContent-Disposition: form-data; name="model"`, `--${BOUNDARY} \r\nContent-Disposition: form-data; name="model"`),
        'latin1',
      ),
      null,
      'a boundary must be followed by a line end or --',
    ],
    [
      'a part without Content-Disposition',
      Buffer.from(formBody([file, model]).toString('latin1').replace('Content-Disposition: form-data; name="model"', 'X-Name: model'), 'latin1'),
      null,
      'a part without a form-data Content-Disposition',
    ],
    [
      'a part without Content-Disposition after the model and the file (the rest streamed)',
      Buffer.from(
        formBody([model, file, { name: 'n', value: '1' }])
          .toString('latin1')
          .replace('Content-Disposition: form-data; name="n"', 'X-Name: n'),
        'latin1',
      ),
      null,
      'a part without a form-data Content-Disposition',
    ],
    [
      'a broken part header',
      Buffer.from(formBody([model, file]).toString('latin1').replace('Content-Disposition: form-data; name="file"', 'Content-Disposition form-data'), 'latin1'),
      null,
      'malformed part header',
    ],
    [
      'model sent as a file',
      formBody([{ name: 'model', value: 'whisper-alias', filename: 'm.txt' }, file]),
      'model',
      "'model' must be a text field, not a file",
    ],
    [
      'model in base64',
      formBody([{ name: 'model', value: 'd2hpc3Blci1hbGlhcw==', headers: '\r\nContent-Transfer-Encoding: base64' }, file]),
      'model',
      "the 'model' field must not carry a Content-Transfer-Encoding",
    ],
    [
      'model in another charset',
      formBody([{ name: 'model', value: Buffer.from('whisper-\xe9', 'latin1'), headers: '\r\nContent-Type: text/plain; charset=latin1' }, file]),
      'model',
      "the 'model' field must be UTF-8 text",
    ],
  ];
  test.each(malformed)('%s: 400 invalid_multipart, nothing sent upstream', async (_name, body, param, reason) => {
    const before = main.requests.length + speech.requests.length;
    const res = await postForm('/v1/audio/transcriptions', body);
    expect(res.status).toBe(400);
    expect(res.error()).toMatchObject({ code: 'invalid_multipart', param });
    expect(res.error().message).toBe(`The multipart/form-data body is malformed: ${reason}.`);
    expect(main.requests.length + speech.requests.length).toBe(before);
  });

  test('a fault found only at the end of a streamed form: the upstream never gets the last bytes', async () => {
    const body = Buffer.from(
      formBody([model, { ...file, value: audio }, { name: 'n', value: '1' }])
        .toString('latin1')
        .replace('Content-Disposition: form-data; name="n"', 'X-Name: n'),
      'latin1',
    );
    const before = speech.requests.length;
    const res = await postForm(
      '/v1/audio/transcriptions',
      Readable.from(
        (async function* () {
          yield body.subarray(0, body.length - 20);
          await new Promise((resolve) => setTimeout(resolve, 200));
          yield body.subarray(body.length - 20);
        })(),
      ),
    );
    expect(res.status).toBe(400);
    expect(res.error().code).toBe('invalid_multipart');
    expect(speech.requests.length).toBe(before);

    // The whole form in one read, on a kept-alive upstream connection: what was read with the model is held back too.
    const small = Buffer.from(
      formBody([model, file, { name: 'n', value: '1' }])
        .toString('latin1')
        .replace('Content-Disposition: form-data; name="n"', 'X-Name: n'),
      'latin1',
    );
    expect((await postForm('/v1/audio/transcriptions', formBody([model, file]))).status).toBe(200);
    const warm = speech.requests.length;
    const whole = await postForm('/v1/audio/transcriptions', small);
    expect(whole.status).toBe(400);
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(speech.requests.length).toBe(warm);
  });

  test('a Content-Type without a boundary: 400 invalid_multipart', async () => {
    const res = await postForm('/v1/audio/transcriptions', formBody([model, file]), { 'content-type': 'multipart/form-data' });
    expect(res.status).toBe(400);
    expect(res.error().code).toBe('invalid_multipart');
  });

  test('body_limit: 413 declared, and 413 for a chunked form, before or after the model', async () => {
    const big = randomBytes(LIMIT);
    const declared = await postForm('/v1/audio/transcriptions', formBody([model, { ...file, value: big }]));
    expect(declared.status).toBe(413);
    expect(declared.error().code).toBe('body_too_large');
    for (const parts of [
      [model, { ...file, value: big }],
      [{ ...file, value: big }, model],
    ]) {
      const body = formBody(parts);
      const res = await postForm('/v1/audio/transcriptions', Readable.from([body.subarray(0, 100_000), body.subarray(100_000)]));
      expect(res.status).toBe(413);
      expect(res.error().code).toBe('body_too_large');
    }
  });
});

describe('spool files', () => {
  /** This process's open files that are upload spools (unlinked, so only an open descriptor shows them). */
  function openSpools(): number {
    let count = 0;
    for (const fd of readdirSync('/proc/self/fd')) {
      try {
        if (readlinkSync(`/proc/self/fd/${fd}`).includes('api-proxy-upload-')) count++;
      } catch {
        // closed while listing
      }
    }
    return count;
  }

  test('are closed when the request completes: answered, refused after spooling, or cut by the client', async () => {
    const spooled = (parts: Part[]) => postForm('/v1/audio/transcriptions', formBody(parts));
    const refused = await spooled([{ name: 'file', value: audio, filename: 'a.wav' }]);
    expect(refused.status).toBe(400);
    const answered = await spooled([
      { name: 'file', value: audio, filename: 'a.wav' },
      { name: 'model', value: 'whisper-alias' },
    ]);
    expect(answered.status).toBe(200);
    const body = formBody([
      { name: 'file', value: audio, filename: 'a.wav' },
      { name: 'model', value: 'whisper-alias' },
    ]);
    const cut = new AbortController();
    const pending = request(`${gw.url}/v1/audio/transcriptions`, {
      method: 'POST',
      headers: { ...auth, 'content-type': `multipart/form-data; boundary=${BOUNDARY}`, 'content-length': String(body.length) },
      body: Readable.from(
        (async function* () {
          yield body.subarray(0, 600 * 1024);
          await new Promise((resolve) => setTimeout(resolve, 200));
          cut.abort();
        })(),
      ),
      signal: cut.signal,
    }).catch((error: unknown) => error);
    await waitFor(() => openSpools() === 1, 3000, 'the cut upload to be spooled');
    await pending;
    await waitFor(() => openSpools() === 0, 3000, 'every spool file to be closed');
  });
});
