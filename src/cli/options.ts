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

/** A finite decimal number (e.g. 0.7, 1e-3); anything else is a usage error naming the flag. */
export function numberOption(text: string, flag: string): number {
  const n = Number(text);
  if (text.trim() === '' || !Number.isFinite(n)) throw new LoomError(`${flag}: expected a number, got '${text}'`, EXIT_USAGE);
  return n;
}
