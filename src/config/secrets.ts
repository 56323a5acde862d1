/**
 * The shortest value treated as a secret. Shorter "keys" (vLLM's
 * conventional `EMPTY`, `none`, `x`) guard nothing, and masking them would
 * rewrite ordinary words in every answer.
 */
export const MIN_SECRET_LENGTH = 8;

/**
 * The values no answer may carry to a client, from every secret the config
 * holds (each upstream's key, and whatever else an upstream is given): once
 * each, longest first, so that a secret inside a longer one is masked as part
 * of it; values shorter than MIN_SECRET_LENGTH left out.
 */
export function redactableSecrets(values: Iterable<string>): readonly string[] {
  const unique = new Set<string>();
  for (const value of values) if (value.length >= MIN_SECRET_LENGTH) unique.add(value);
  return [...unique].sort((a, b) => b.length - a.length);
}
