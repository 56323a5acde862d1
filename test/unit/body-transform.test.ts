import { endThrough, pushThrough, type BodyTransform } from '../../src/pipeline/body-transform.js';

/** Holds back everything after the last `marker` byte until the next push or the end; upper-cases if asked. */
class HoldAfter implements BodyTransform {
  #held: Buffer | null = null;
  constructor(
    private readonly marker: number,
    private readonly upper = false,
  ) {}
  push(bytes: Buffer): Buffer {
    const data = this.#held === null ? bytes : Buffer.concat([this.#held, bytes]);
    this.#held = null;
    const cut = data.lastIndexOf(this.marker) + 1;
    if (cut < data.length) this.#held = Buffer.from(data.subarray(cut));
    const out = data.subarray(0, cut);
    return this.upper ? Buffer.from(out.toString().toUpperCase()) : out;
  }
  end(): Buffer | null {
    const held = this.#held;
    this.#held = null;
    return held === null ? null : this.upper ? Buffer.from(held.toString().toUpperCase()) : held;
  }
}

test('bytes pass each transform in order; what one holds back reaches the next at the end, in order', () => {
  const chain = [new HoldAfter(0x0a), new HoldAfter(0x20, true)];
  const out = [pushThrough(chain, Buffer.from('ab\ncd e')), pushThrough(chain, Buffer.from('f\ngh'))].map(String);
  expect(out).toEqual(['', 'AB\nCD ']);
  expect(String(endThrough(chain))).toBe('EF\nGH');
});

test('no transforms: bytes pass unchanged; nothing at the end', () => {
  const bytes = Buffer.from('x');
  expect(pushThrough([], bytes)).toBe(bytes);
  expect(endThrough([])).toBeNull();
});
