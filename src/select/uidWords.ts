// A 128-bit DataComp uid (32 lowercase hex characters) as four 32-bit words, most significant
// first, so comparing words in order compares uids numerically (and as strings).
import { isValidUid } from '../shards/keys.js';

export const WORDS_PER_UID = 4;

/** Writes the uid's words at out[at..at+4); the uid must be 32 lowercase hex characters. */
export function uidToWords(uid: string, out: Uint32Array, at: number): void {
  out[at] = parseInt(uid.slice(0, 8), 16);
  out[at + 1] = parseInt(uid.slice(8, 16), 16);
  out[at + 2] = parseInt(uid.slice(16, 24), 16);
  out[at + 3] = parseInt(uid.slice(24, 32), 16);
}

function wordsToUid(words: Uint32Array, at: number): string {
  let s = '';
  for (let j = 0; j < WORDS_PER_UID; j++) s += words[at + j]!.toString(16).padStart(8, '0');
  return s;
}

/** -1, 0 or 1 as uid a (at ai) is below, equal to or above uid b (at bi). */
export function compareWords(a: Uint32Array, ai: number, b: Uint32Array, bi: number): number {
  for (let j = 0; j < WORDS_PER_UID; j++) {
    const x = a[ai + j]!;
    const y = b[bi + j]!;
    if (x !== y) return x < y ? -1 : 1;
  }
  return 0;
}

export { isValidUid };

/** A sorted, unique uid array loaded in memory (16 bytes a uid), with membership by binary search. */
export class SortedUids {
  constructor(readonly words: Uint32Array) {}

  get size(): number {
    return this.words.length / WORDS_PER_UID;
  }

  /** Index of the uid in the array, or -1. */
  indexOf(uid: string): number {
    const probe = new Uint32Array(WORDS_PER_UID);
    uidToWords(uid, probe, 0);
    let lo = 0;
    let hi = this.size - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >>> 1;
      const c = compareWords(this.words, mid * WORDS_PER_UID, probe, 0);
      if (c === 0) return mid;
      if (c < 0) lo = mid + 1;
      else hi = mid - 1;
    }
    return -1;
  }

  uidAt(i: number): string {
    return wordsToUid(this.words, i * WORDS_PER_UID);
  }
}
