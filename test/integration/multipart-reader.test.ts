import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import fc from 'fast-check';
import { GatewayError } from '../../src/errors/gateway-error.js';
import { readMultipartRequest, type UploadSource } from '../../src/pipeline/multipart-request.js';

/**
 * The form reader on its own (files: its spool may move to a temporary
 * file): over field orders, chunk boundaries, boundaries and spool sizes,
 * the model it finds is the form's, and the body it hands on is the client's
 * with only the model's value replaced.
 */

let dir: string;
beforeAll(() => (dir = mkdtempSync(join(tmpdir(), 'api-proxy-spool-test-'))));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

interface Part {
  name: string;
  value: Buffer;
  filename?: string;
}

function formBody(parts: readonly Part[], boundary: string): Buffer {
  const pieces: Buffer[] = [];
  for (const part of parts) {
    const file = part.filename === undefined ? '' : `; filename="${part.filename}"\r\nContent-Type: application/octet-stream`;
    pieces.push(Buffer.from(`--${boundary}\r\nContent-Disposition: form-data; name="${part.name}"${file}\r\n\r\n`, 'latin1'), part.value, Buffer.from('\r\n'));
  }
  pieces.push(Buffer.from(`--${boundary}--\r\n`));
  return Buffer.concat(pieces);
}

function split(body: Buffer, cuts: readonly number[]): Buffer[] {
  const points = [...new Set(cuts.map((cut) => cut % (body.length + 1)))].sort((a, b) => a - b);
  const chunks: Buffer[] = [];
  let at = 0;
  for (const point of [...points, body.length]) {
    if (point > at) chunks.push(body.subarray(at, point));
    at = point;
  }
  return chunks;
}

function source(chunks: readonly Buffer[], boundary: string, options: { url?: string; chunked?: boolean } = {}): UploadSource {
  const length = chunks.reduce((sum, chunk) => sum + chunk.length, 0);
  return {
    headers: {
      'content-type': `multipart/form-data; boundary=${/^[0-9A-Za-z'+_.-]+$/.test(boundary) ? boundary : `"${boundary}"`}`,
      ...(options.chunked === true ? {} : { 'content-length': String(length) }),
    },
    url: options.url ?? '/v1/audio/transcriptions',
    async *[Symbol.asyncIterator]() {
      for (const chunk of chunks) {
        await Promise.resolve();
        yield chunk;
      }
    },
  };
}

async function collect(body: string | Buffer | Readable | null): Promise<Buffer> {
  if (body === null) return Buffer.alloc(0);
  if (typeof body === 'string') return Buffer.from(body);
  if (Buffer.isBuffer(body)) return body;
  const chunks: Buffer[] = [];
  for await (const chunk of body) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

/** Reads a form as the gateway does and returns what would go upstream naming `target`. */
async function pass(src: UploadSource, target: string | null, spoolMemory: number, limit = 64 * 1024 * 1024) {
  const releases: (() => void)[] = [];
  try {
    const request = await readMultipartRequest(src, { limit, spoolMemory, spoolDir: dir, onComplete: (release) => releases.push(release) });
    const { body, contentLength } = request.upstreamBody(target);
    return { model: request.model, bytes: await collect(body), contentLength };
  } finally {
    for (const release of releases) release();
  }
}

// Bytes that look like the framing: line ends, dashes, pieces of a boundary.
const tricky = fc
  .array(fc.oneof(fc.constantFrom('\r\n', '\r', '\n', '--', '-', '\r\n--', 'abc', 'model', '"'), fc.string({ maxLength: 8 })), { maxLength: 12 })
  .map((pieces) => Buffer.from(pieces.join(''), 'latin1'));
const fileBytes = fc.oneof(
  fc.uint8Array({ maxLength: 3000 }).map((bytes) => Buffer.from(bytes)),
  tricky,
);
const fieldName = fc.constantFrom('prompt', 'language', 'response_format', 'temperature', 'n', 'size', 'timestamp_granularities[]');
const boundary = fc.oneof(
  fc.constantFrom('abc', '----WebKitFormBoundary7MA4YWxkTrZu0gW', 'x'),
  fc.stringMatching(/^[0-9A-Za-z'()+_,./:=? -]{0,69}[0-9A-Za-z'()+_,./:=?-]$/),
);
const modelName = fc.stringMatching(/^[a-z0-9][a-z0-9./:-]{0,40}$/);

describe('over field orders and chunk boundaries', () => {
  test("the model is the form's; the body passed on is the client's with only the model value replaced", async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.record({
          boundary,
          fields: fc.array(fc.record({ name: fieldName, value: tricky }), { maxLength: 4 }),
          files: fc.array(fileBytes, { minLength: 1, maxLength: 2 }),
          model: modelName,
          target: fc.option(modelName, { nil: null }),
          position: fc.nat(),
          cuts: fc.array(fc.nat(), { maxLength: 8 }),
          spoolMemory: fc.constantFrom(0, 100, 1024 * 1024),
          chunked: fc.boolean(),
        }),
        async ({ boundary, fields, files, model, target, position, cuts, spoolMemory, chunked }) => {
          const others: Part[] = [...fields, ...files.map((value, index) => ({ name: 'file', value, filename: `f${index}.bin` }))];
          const parts = [...others];
          parts.splice(position % (others.length + 1), 0, { name: 'model', value: Buffer.from(model) });
          // The data must not hold the delimiter itself (no client sends that: it picks a boundary absent from the data).
          fc.pre(
            parts.every(
              (part) => !part.value.includes(`\r\n--${boundary}`) && !part.value.subarray(0, boundary.length + 2).equals(Buffer.from(`--${boundary}`)),
            ),
          );
          const body = formBody(parts, boundary);
          const result = await pass(source(split(body, cuts), boundary, { chunked }), target, spoolMemory);
          expect(result.model).toBe(model);
          const sentModel = target ?? model;
          const expected = formBody(
            parts.map((part) => (part.name === 'model' ? { ...part, value: Buffer.from(sentModel) } : part)),
            boundary,
          );
          expect(result.bytes.equals(expected)).toBe(true);
          expect(result.contentLength).toBe(chunked ? null : expected.length);
        },
      ),
      { numRuns: 300 },
    );
  });

  test('a second model field is refused wherever it is, before anything is decided or while the rest streams', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.record({
          file: fileBytes,
          first: fc.nat(2),
          second: fc.nat(2),
          cuts: fc.array(fc.nat(), { maxLength: 6 }),
          spoolMemory: fc.constantFrom(0, 1024 * 1024),
        }),
        async ({ file, first, second, cuts, spoolMemory }) => {
          const parts: Part[] = [
            { name: 'prompt', value: Buffer.from('p') },
            { name: 'file', value: file, filename: 'a.wav' },
          ];
          parts.splice(first, 0, { name: 'model', value: Buffer.from('a') });
          parts.splice(second + (second >= first ? 1 : 0), 0, { name: 'model', value: Buffer.from('b') });
          fc.pre(!file.includes('\r\n--abc') && !file.subarray(0, 5).equals(Buffer.from('--abc')));
          const outcome = await pass(source(split(formBody(parts, 'abc'), cuts), 'abc'), 'x', spoolMemory).catch((error: unknown) => error);
          expect(outcome).toBeInstanceOf(GatewayError);
          expect((outcome as GatewayError).code).toBe('duplicate_model');
        },
      ),
      { numRuns: 200 },
    );
  });
});

describe('the spool', () => {
  test('a form whose model comes last is held in a file that no directory lists, and read back whole', async () => {
    const file = Buffer.alloc(300_000, 7);
    const body = formBody(
      [
        { name: 'file', value: file, filename: 'a.wav' },
        { name: 'model', value: Buffer.from('m') },
      ],
      'abc',
    );
    const releases: (() => void)[] = [];
    const request = await readMultipartRequest(source(split(body, [1000, 70_000, 150_000]), 'abc'), {
      limit: 1024 * 1024,
      spoolMemory: 64 * 1024,
      spoolDir: dir,
      onComplete: (release) => releases.push(release),
    });
    expect(readdirSync(dir)).toEqual([]);
    expect(
      (await collect(request.upstreamBody('n').body)).equals(
        formBody(
          [
            { name: 'file', value: file, filename: 'a.wav' },
            { name: 'model', value: Buffer.from('n') },
          ],
          'abc',
        ),
      ),
    ).toBe(true);
    for (const release of releases) release();
  });

  test('a directory that cannot be written: 503 upload_spool_failed', async () => {
    const body = formBody(
      [
        { name: 'file', value: Buffer.alloc(1000), filename: 'a.wav' },
        { name: 'model', value: Buffer.from('m') },
      ],
      'abc',
    );
    const releases: (() => void)[] = [];
    const failed = await readMultipartRequest(source([body], 'abc'), {
      limit: 1024 * 1024,
      spoolMemory: 100,
      spoolDir: join(dir, 'missing'),
      onComplete: (release) => releases.push(release),
    }).catch((error: unknown) => error);
    for (const release of releases) release();
    expect(failed).toBeInstanceOf(GatewayError);
    expect((failed as GatewayError).code).toBe('upload_spool_failed');
    expect((failed as GatewayError).status).toBe(503);
  });
});
