/**
 * A consumer's allow-list of client-facing model names: exact names and `*`
 * globs (`*` stands for any run of characters, `/` included: model names such
 * as `meta-llama/Llama-3.1-8B` are not paths). Matching scans with indexOf,
 * never a regular expression over the name a client sent.
 */

/** The allow-list of a consumer without one. */
export const ALL_MODELS = (): boolean => true;

/** Compiles `patterns` once into a test of a model name. */
export function modelAllowList(patterns: readonly string[]): (model: string) => boolean {
  if (patterns.includes('*')) return ALL_MODELS;
  const exact = new Set<string>();
  const globs: (readonly string[])[] = [];
  for (const pattern of patterns) {
    if (pattern.includes('*')) globs.push(pattern.split('*'));
    else exact.add(pattern);
  }
  if (globs.length === 0) return (model) => exact.has(model);
  return (model) => exact.has(model) || globs.some((parts) => globMatches(parts, model));
}

/**
 * Whether `text` matches the glob split at its stars (`a*b*c` -> [a, b, c]):
 * it starts with the first part, ends with the last, and holds the others in
 * order between them. Taking each middle part at its first place is enough:
 * an earlier match leaves more room for the rest.
 */
function globMatches(parts: readonly string[], text: string): boolean {
  const first = parts[0]!;
  const last = parts[parts.length - 1]!;
  if (text.length < first.length + last.length || !text.startsWith(first) || !text.endsWith(last)) return false;
  let at = first.length;
  const end = text.length - last.length;
  for (let i = 1; i < parts.length - 1; i++) {
    const part = parts[i]!;
    if (part === '') continue;
    const found = text.indexOf(part, at);
    if (found === -1 || found + part.length > end) return false;
    at = found + part.length;
  }
  return true;
}
