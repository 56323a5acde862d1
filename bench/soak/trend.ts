/** A reading taken at `atS` seconds. */
export interface Reading {
  readonly atS: number;
  readonly value: number;
}

/**
 * How much a series rises across its span, as a fraction of where it starts,
 * read off its least-squares line rather than its two end points: one reading
 * taken on either side of a GC or an allocator release then moves the verdict
 * little, while steady growth (a leak) shows in full. NaN for fewer than two
 * distinct times.
 */
export function fittedRise(readings: readonly Reading[]): number {
  const n = readings.length;
  if (n < 2) return Number.NaN;
  let sumT = 0;
  let sumV = 0;
  for (const { atS, value } of readings) {
    sumT += atS;
    sumV += value;
  }
  const meanT = sumT / n;
  const meanV = sumV / n;
  let covariance = 0;
  let variance = 0;
  for (const { atS, value } of readings) {
    covariance += (atS - meanT) * (value - meanV);
    variance += (atS - meanT) ** 2;
  }
  if (variance === 0) return Number.NaN;
  const slope = covariance / variance;
  const first = readings[0]!.atS;
  const last = readings[n - 1]!.atS;
  const startValue = meanV + slope * (first - meanT);
  return (slope * (last - first)) / startValue;
}
