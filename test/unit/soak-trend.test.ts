import { fittedRise, type Reading } from '../../bench/soak/trend.js';

const series = (count: number, valueAt: (i: number) => number): Reading[] => Array.from({ length: count }, (_, i) => ({ atS: i * 10, value: valueAt(i) }));

describe('fittedRise', () => {
  test('a flat series rises by 0', () => {
    expect(fittedRise(series(30, () => 250))).toBe(0);
  });

  test('steady growth from 200 to 220 is a 10 % rise', () => {
    expect(fittedRise(series(31, (i) => 200 + (20 * i) / 30))).toBeCloseTo(0.1, 10);
  });

  test('a flat series with one high reading at the end is not read as growth', () => {
    const readings = series(30, (i) => (i === 29 ? 275 : 250));
    const endPoints = readings[29]!.value / readings[0]!.value - 1;
    expect(endPoints).toBeCloseTo(0.1, 10);
    expect(fittedRise(readings)).toBeLessThan(0.03);
  });

  test('noise around a level stays near 0; the same noise on a leak still shows the leak', () => {
    const noise = (i: number): number => ((i * 7919) % 13) - 6; // deterministic, ±6
    expect(Math.abs(fittedRise(series(30, (i) => 250 + noise(i))))).toBeLessThan(0.02);
    expect(fittedRise(series(30, (i) => 250 + i * 2 + noise(i)))).toBeGreaterThan(0.2);
  });

  test('fewer than two distinct times: NaN', () => {
    expect(fittedRise([])).toBeNaN();
    expect(fittedRise([{ atS: 5, value: 1 }])).toBeNaN();
    expect(
      fittedRise([
        { atS: 5, value: 1 },
        { atS: 5, value: 2 },
      ]),
    ).toBeNaN();
  });
});
