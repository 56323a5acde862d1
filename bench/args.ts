/**
 * Command-line flags of the bench and the soak, read by node:util parseArgs.
 * Its strict mode names an unknown flag only inside its own message, so the
 * tools check parseArgs' tokens themselves and keep their own messages.
 */
import { parseArgs } from 'node:util';

/** Each flag's name (without `--`) and whether it takes a value. */
export type FlagSpec = Readonly<Record<string, 'string' | 'boolean'>>;

export interface FlagMessages {
  /** The message for an argument that is not a flag of `spec`: `arg` as written (`--foo=1`, `x`). */
  unknown(arg: string): string;
  /** The message for a flag that takes a value and got none; without it, such a flag reads as ''. */
  missing?(arg: string): string;
}

/**
 * The flags given, by name: a string flag's value (`--name=value` or `--name value`),
 * true for a boolean flag (also when written `--name=anything`), undefined when absent.
 */
export function readFlags(argv: readonly string[], spec: FlagSpec, messages: FlagMessages): Record<string, string | true | undefined> {
  const options = Object.fromEntries(Object.entries(spec).map(([name, type]) => [name, { type }]));
  const { tokens } = parseArgs({ args: [...argv], options, strict: false, allowPositionals: true, tokens: true });
  const flags: Record<string, string | true | undefined> = {};
  for (const token of tokens) {
    const written = argv[token.index]!;
    if (token.kind !== 'option' || !Object.hasOwn(spec, token.name)) throw new Error(messages.unknown(written));
    if (spec[token.name] === 'boolean') flags[token.name] = true;
    else if (token.value !== undefined) flags[token.name] = token.value;
    else if (messages.missing !== undefined) throw new Error(messages.missing(written));
    else flags[token.name] = '';
  }
  return flags;
}
