/**
 * The long-stream profile's pacing and per-stream bookkeeping: streams open
 * spread over the ramp with phases of their own, tokens keep their deadlines
 * whatever a late timer did, and the client counts events and gaps right
 * however the bytes are cut into reads.
 */
import fc from 'fast-check';
import { EventClock, EventStreamDecoder, TokenSchedule, rampOffsets } from '../../bench/pacing.js';

/** A repeatable sequence of numbers in [0, 1). */
function sequence(...values: number[]): () => number {
  let at = 0;
  return () => values[at++ % values.length]!;
}

describe('rampOffsets', () => {
  test('one stream in each equal slice of the ramp, at its own point in the slice', () => {
    expect(rampOffsets(4, 1000, sequence(0, 0.5, 0.25, 0.999))).toEqual([0, 375, 562.5, 999.75]);
    expect(rampOffsets(0, 1000)).toEqual([]);
  });

  test('offsets stay inside their slices and inside the ramp, in order', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 3000 }), fc.integer({ min: 1, max: 60_000 }), (count, rampMs) => {
        const offsets = rampOffsets(count, rampMs);
        const slice = rampMs / count;
        const outside = offsets.findIndex((offset, index) => offset < index * slice || offset >= (index + 1) * slice);
        return offsets.length === count && outside === -1 && offsets.at(-1)! < rampMs;
      }),
    );
  });
});

describe('TokenSchedule', () => {
  test('token k is due at start + k intervals, and the schedule ends after the last', () => {
    const schedule = new TokenSchedule(1000.3, 50, 3);
    expect(schedule.nextDue).toBe(1000.3);
    expect(schedule.markSent(1000.3)).toBe(0);
    expect(schedule.nextDue).toBe(1050.3);
    expect(schedule.markSent(1050.3)).toBeCloseTo(0);
    expect(schedule.done).toBe(false);
    schedule.markSent(1100.3);
    expect(schedule.done).toBe(true);
    expect(schedule.sent).toBe(3);
  });

  test('a late token delays itself only: the next one keeps its deadline', () => {
    const schedule = new TokenSchedule(0, 50, 10);
    schedule.markSent(0);
    expect(schedule.markSent(80)).toBe(30); // the timer fired 30 ms late
    expect(schedule.nextDue).toBe(100);
    expect(schedule.delayFrom(80)).toBe(20);
  });

  test('the wait is whole milliseconds, and 0 within half a millisecond of the deadline', () => {
    const schedule = new TokenSchedule(0, 50, 10);
    schedule.markSent(0);
    expect(schedule.delayFrom(12.3)).toBe(38);
    expect(schedule.delayFrom(49.6)).toBe(0);
    expect(schedule.delayFrom(70)).toBe(0);
  });

  test('whatever the timers do, no deadline drifts', () => {
    fc.assert(
      fc.property(
        fc.double({ min: 0, max: 1e6, noNaN: true }),
        fc.integer({ min: 1, max: 200 }),
        fc.array(fc.double({ min: -0.5, max: 500, noNaN: true }), { minLength: 1, maxLength: 100 }),
        (start, interval, latenesses) => {
          const schedule = new TokenSchedule(start, interval, latenesses.length);
          latenesses.forEach((late, k) => {
            expect(schedule.nextDue).toBeCloseTo(start + k * interval, 6);
            expect(schedule.markSent(schedule.nextDue + late)).toBeCloseTo(late, 6);
          });
        },
      ),
    );
  });
});

const EVENT = 'data: {"choices":[{"delta":{"content":" token"}}]}\n\n';
const DONE = 'data: [DONE]\n\n';

describe('EventClock', () => {
  test('times the gap before each token but the first; [DONE] is counted, not timed', () => {
    const gaps: number[] = [];
    const clock = new EventClock(3, (gap) => gaps.push(gap));
    const push = (text: string, now: number): void => {
      const bytes = Buffer.from(text);
      clock.push(bytes, 0, bytes.length, now);
    };
    push(EVENT, 10);
    push(EVENT, 60);
    push(EVENT + DONE, 115);
    expect(gaps).toEqual([50, 55]);
    expect(clock.events).toBe(4);
  });

  test('events that arrive in one read are seen at once; a lone line feed ends nothing', () => {
    const gaps: number[] = [];
    const clock = new EventClock(5, (gap) => gaps.push(gap));
    const bytes = Buffer.from(`data: a\nb\n\n${EVENT}${EVENT}`);
    clock.push(bytes, 0, bytes.length, 7);
    expect(clock.events).toBe(3);
    expect(gaps).toEqual([0, 0]);
  });

  test('only bytes in [start, end) count', () => {
    const clock = new EventClock(5, () => {});
    const bytes = Buffer.from(`xx${EVENT}${EVENT}`);
    clock.push(bytes, 2, 2 + EVENT.length, 0);
    expect(clock.events).toBe(1);
  });

  test('an event end cut between two reads is one event, timed when its second half comes', () => {
    const gaps: number[] = [];
    const clock = new EventClock(5, (gap) => gaps.push(gap));
    const first = Buffer.from(EVENT);
    clock.push(first, 0, first.length, 0);
    const cut = Buffer.from(EVENT.slice(0, -1));
    clock.push(cut, 0, cut.length, 40);
    expect(clock.events).toBe(1);
    clock.push(Buffer.from('\n'), 0, 1, 50);
    expect(clock.events).toBe(2);
    expect(gaps).toEqual([50]);
  });

  test('however a stream is cut into reads, every event is counted once', () => {
    const stream = Buffer.from(EVENT.repeat(20) + DONE);
    fc.assert(
      fc.property(fc.uniqueArray(fc.integer({ min: 1, max: stream.length - 1 })), (cuts) => {
        const clock = new EventClock(20, () => {});
        const bounds = [0, ...cuts.sort((a, b) => a - b), stream.length];
        for (let i = 1; i < bounds.length; i++) clock.push(stream, bounds[i - 1]!, bounds[i]!, i);
        expect(clock.events).toBe(21);
      }),
    );
  });

  test('reset starts a new response', () => {
    const gaps: number[] = [];
    const clock = new EventClock(5, (gap) => gaps.push(gap));
    const half = Buffer.from('data: x\n');
    clock.push(half, 0, half.length, 0);
    clock.reset();
    const next = Buffer.from('\n' + EVENT);
    clock.push(next, 0, next.length, 100);
    expect(clock.events).toBe(1); // the line feed left over from before is not half of an event end any more
    expect(gaps).toEqual([]);
  });
});

function chunked(...payloads: string[]): string {
  return payloads.map((payload) => `${Buffer.byteLength(payload).toString(16)}\r\n${payload}\r\n`).join('') + '0\r\n\r\n';
}

const HEAD = 'HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n';
const whole = (tokens: number): string => HEAD + chunked(...Array.from({ length: tokens - 1 }, () => EVENT), EVENT + DONE);

describe('EventStreamDecoder', () => {
  test('a whole response: complete, with its first body byte and gaps', () => {
    const gaps: number[] = [];
    const decoder = new EventStreamDecoder(3, (gap) => gaps.push(gap));
    const parts = [HEAD + chunked(EVENT).slice(0, -5), chunked(EVENT).slice(0, -5), chunked(EVENT + DONE)];
    expect(decoder.push(Buffer.from(parts[0]!), 0, Buffer.byteLength(parts[0]!), 5)).toBe('more');
    expect(decoder.firstByteAt).toBe(5);
    expect(decoder.push(Buffer.from(parts[1]!), 0, Buffer.byteLength(parts[1]!), 55)).toBe('more');
    expect(decoder.push(Buffer.from(parts[2]!), 0, Buffer.byteLength(parts[2]!), 104)).toBe('complete');
    expect(decoder.firstByteAt).toBe(5);
    expect(decoder.events).toBe(4);
    expect(gaps).toEqual([50, 49]);
  });

  test('cut anywhere, into reads of a buffer that is reused after each read, it decodes the same', () => {
    const response = Buffer.from(whole(6));
    fc.assert(
      fc.property(fc.uniqueArray(fc.integer({ min: 1, max: response.length - 1 }), { maxLength: 40 }), (cuts) => {
        const decoder = new EventStreamDecoder(6, () => {});
        const shared = Buffer.alloc(response.length);
        const bounds = [0, ...cuts.sort((a, b) => a - b), response.length];
        const states: string[] = [];
        for (let i = 1; i < bounds.length; i++) {
          const length = response.copy(shared, 0, bounds[i - 1], bounds[i]);
          states.push(decoder.push(shared, 0, length, i));
          shared.fill(0x7a); // the next read overwrites it
        }
        expect(states.at(-1)).toBe('complete');
        expect(states.slice(0, -1).every((state) => state === 'more')).toBe(true);
        expect(decoder.events).toBe(7);
      }),
    );
  });

  test('chunk extensions and upper-case hex sizes are read', () => {
    const decoder = new EventStreamDecoder(1, () => {});
    const payload = `${EVENT}${DONE}${':'.repeat(26)}\n\n`; // an SSE comment pads it to 94 bytes: 5E
    const size = Buffer.byteLength(payload).toString(16).toUpperCase();
    expect(size).toBe('5E');
    const text = `${HEAD}${size};name=value\r\n${payload}\r\n0\r\n\r\n`;
    expect(decoder.push(Buffer.from(text), 0, Buffer.byteLength(text), 0)).toBe('complete');
  });

  test('a second response on the same connection, after reset', () => {
    const decoder = new EventStreamDecoder(2, () => {});
    const response = Buffer.from(whole(2));
    expect(decoder.push(response, 0, response.length, 0)).toBe('complete');
    decoder.reset();
    expect(Number.isNaN(decoder.firstByteAt)).toBe(true);
    expect(decoder.push(response, 0, response.length, 1)).toBe('complete');
  });

  test.each([
    ['an error status', 'HTTP/1.1 503 Service Unavailable\r\nTransfer-Encoding: chunked\r\n\r\n' + chunked(EVENT, EVENT, EVENT + DONE)],
    ['a body that is not chunked', 'HTTP/1.1 200 OK\r\nContent-Length: 14\r\n\r\n' + DONE],
    ['a stream that ends before its last token', HEAD + chunked(EVENT, DONE)],
    ['a stream without [DONE]', HEAD + chunked(EVENT, EVENT, EVENT)],
    ['a chunk size that is not hex', HEAD + 'zz\r\n' + EVENT],
    ['bytes after the end of the response', whole(3) + 'HTTP/1.1 200 OK\r\n'],
  ])('%s fails', (_name, text) => {
    const decoder = new EventStreamDecoder(3, () => {});
    expect(decoder.push(Buffer.from(text), 0, Buffer.byteLength(text), 0)).toBe('failed');
  });

  test('a head that never ends fails once it is too long', () => {
    const decoder = new EventStreamDecoder(3, () => {});
    const line = Buffer.from(`HTTP/1.1 200 OK\r\n${'x-filler: y\r\n'.repeat(100)}`);
    let state = decoder.push(line, 0, line.length, 0);
    for (let i = 0; i < 20 && state === 'more'; i++) state = decoder.push(line, 17, line.length, 0);
    expect(state).toBe('failed');
  });
});
