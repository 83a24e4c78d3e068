// Loom's packer. First- and best-fit decreasing close nearly every sequence with a gap smaller
// than the shortest sample (about 1.7% of the tokens for image-caption data at 4096), because
// they place samples in a fixed order and never look at what is left. Exact-fill builds one
// sequence at a time from a histogram of the samples left:
//   - fill with samples drawn at random (uniform over samples, seeded), each short enough to
//     leave room for two more, so the mix of lengths left stays like the input's;
//   - as soon as the space left could be two samples, look in the histogram for a pair whose
//     lengths sum to it exactly (the most plentiful such pair, to avoid emptying lengths);
//   - near the end, also try a few draws for a third-to-last sample that leaves an exact pair;
//   - when nothing closes exactly, take the longest sample that fits (best fit) and go on.
// Every step is O(log C) plus at most five pair searches of at most PAIR_SCAN_LIMIT histogram
// entries (on caption data a search looks at ~100), over typed arrays only: O(n log C + C)
// for a bounded spread of lengths, never worse than O(n * PAIR_SCAN_LIMIT). The result is compared
// with best-fit decreasing and the better kept, so it is never worse than the baseline.
import { Rng } from '../../util/rng.js';
import { bestFitDecreasingAssignment } from './bestFitDecreasing.js';
import { LengthPool } from './lengthPool.js';
import { checkInput, resultFromAssignment, resultFromCsr, type CheckedInput, type PackInput, type PackResult } from './types.js';

/** Draws per step spent looking for a third-to-last sample that leaves an exact pair. */
const TRIPLE_DRAWS = 4;
/**
 * Most candidate lengths one pair search looks at, nearest to half the space first. Caption
 * data spans a few hundred lengths; the cap keeps huge capacities with widely spread lengths
 * from turning each search into a scan of the whole histogram.
 */
const PAIR_SCAN_LIMIT = 256;
/** Candidate lengths compared after the first pair found. */
const PAIR_COMPARE_SPAN = 64;
/** Quantile of the lengths left that stands for "a long but ordinary sample". */
const TYPICAL_QUANTILE = 0.95;

export function packExactFill(input: PackInput): PackResult {
  const checked = checkInput(input);
  const exact = exactFillOnly(checked);
  if (exact.offsets.length - 1 <= lowerBoundBins(checked)) return exact;
  const baseline = bestFitDecreasingAssignment(checked);
  if (baseline.binCount >= exact.bins.length) return exact;
  const { placed, binAt, binCount } = baseline;
  return resultFromAssignment(checked, placed, binAt, binCount, 'exact-fill (best-fit-decreasing fallback)');
}

/** No packing can use fewer bins than this. */
export function lowerBoundBins(checked: CheckedInput): number {
  const bySpace = Math.ceil(checked.totalTokens / checked.capacity);
  const byCount = Math.ceil(checked.lengths.length / checked.maxItems);
  return Math.max(bySpace, byCount);
}

/** The exact-fill heuristic alone, without the best-fit comparison. */
export function exactFillOnly(checked: CheckedInput): PackResult {
  const { lengths, capacity, maxItems } = checked;
  const n = lengths.length;
  const pool = new LengthPool(lengths, capacity);
  const count = pool.count;
  const rng = Rng.derive(checked.seed, 0x9ac4);
  const items = new Int32Array(n);
  const offsets = new Int32Array(n + 1);
  let placed = 0;
  let bins = 0;

  // The smaller length of the most plentiful pair summing to `space`, or -1.
  const findPair = (space: number): number => {
    let best = -1;
    let bestScore = 0;
    const hi = space >>> 1;
    let lo = Math.max(pool.min, space - pool.max, hi - PAIR_SCAN_LIMIT + 1);
    for (let a = hi; a >= lo; a--) {
      const ca = count[a]!;
      if (ca === 0) continue;
      const b = space - a;
      const score = a === b ? ca >>> 1 : Math.min(ca, count[b]!);
      if (score > bestScore) {
        // Past the first pair only a short stretch more is compared: enough to prefer the
        // plentiful lengths of a dense histogram, without scanning a sparse one to its end.
        if (best < 0) lo = Math.max(lo, a - PAIR_COMPARE_SPAN);
        bestScore = score;
        best = a;
      }
    }
    return best;
  };

  while (pool.left > 0) {
    let space = capacity;
    let k = 0;
    // Triples are worth trying only once two typical samples could close the rest; the longest
    // sample is a poor guide there, as one outlier would start the (costly) tries far too early.
    const typicalLong = pool.lengthAtRank(Math.floor((pool.left - 1) * TYPICAL_QUANTILE));
    for (;;) {
      if (k >= maxItems || pool.left === 0 || space < pool.min) break;
      if (count[space]! > 0) {
        items[placed++] = pool.take(space);
        break;
      }
      const pairOk = k + 2 <= maxItems && pool.left >= 2;
      if (pairOk && space <= 2 * pool.max && space >= 2 * pool.min) {
        const a = findPair(space);
        if (a > 0) {
          items[placed++] = pool.take(a);
          items[placed++] = pool.take(space - a);
          break;
        }
      }
      // Fill: a random sample that leaves room for a closing pair, if there is one.
      const limit = space - 2 * pool.min;
      const below = limit >= pool.min ? pool.countUpTo(limit) : 0;
      if (below === 0) {
        const len = pool.longestUpTo(space);
        items[placed++] = pool.take(len);
        space -= len;
        k++;
        continue;
      }
      let len = pool.lengthAtRank(rng.int(0, below - 1));
      if (pairOk && k + 3 <= maxItems && pool.left >= 3 && space <= 3 * typicalLong) {
        let closed = false;
        for (let t = 0; t < TRIPLE_DRAWS; t++) {
          if (t > 0) len = pool.lengthAtRank(rng.int(0, below - 1));
          // The draw is still in the pool while we look, so a pair must not reuse its last sample.
          count[len]!--;
          const a = space - len <= 2 * pool.max ? findPair(space - len) : -1;
          count[len]!++;
          if (a > 0) {
            items[placed++] = pool.take(len);
            items[placed++] = pool.take(a);
            items[placed++] = pool.take(space - len - a);
            closed = true;
            break;
          }
        }
        if (closed) break;
      }
      items[placed++] = pool.take(len);
      space -= len;
      k++;
    }
    offsets[++bins] = placed;
  }
  return resultFromCsr(checked, items, offsets.slice(0, bins + 1), 'exact-fill');
}

