// Parsing numeric command-line options the same way in every command.
import { LoomError, EXIT_USAGE } from '../util/errors.js';

/** A whole number >= `min` written in decimal digits; anything else is a usage error naming the flag. */
export function integerOption(text: string, flag: string, min: number): number {
  const n = Number(text);
  if (!/^\d+$/.test(text.trim()) || !Number.isSafeInteger(n) || n < min) {
    throw new LoomError(`${flag}: expected an integer >= ${min}, got '${text}'`, EXIT_USAGE);
  }
  return n;
}
