// Best-fit decreasing: samples longest first, each into the open bin whose free space is the
// smallest that still fits it, else a new bin. Bins are kept in buckets by free space and a
// 32-ary segment tree over free space finds the best bucket: O(n log32 C) after an O(n + C)
// counting sort. Within a bucket the most recently touched bin is used (a stack), which is
// deterministic and, as all bins there have the same free space, no worse than any other choice.
import { indicesByLength } from './countingSort.js';
import { NextSetBit } from './nextSetBit.js';
import { checkInput, resultFromAssignment, type CheckedInput, type PackInput, type PackResult } from './types.js';

export function packBestFitDecreasing(input: PackInput): PackResult {
  return bestFitDecreasing(checkInput(input));
}

export function bestFitDecreasing(checked: CheckedInput, algorithm = 'best-fit-decreasing'): PackResult {
  const { placed, binAt, binCount } = bestFitDecreasingAssignment(checked);
  return resultFromAssignment(checked, placed, binAt, binCount, algorithm);
}

/**
 * The placement order (longest first, ties by index) and the bin of each placement, without
 * building the bins (cheap to compare). Walking the length groups from the counting sort keeps
 * every array access sequential except the bins' own small arrays.
 */
export function bestFitDecreasingAssignment(checked: CheckedInput): { placed: Int32Array; binAt: Int32Array; binCount: number } {
  const { lengths, capacity, maxItems } = checked;
  const n = lengths.length;
  const { order, start } = indicesByLength(lengths, capacity);
  const placed = new Int32Array(n);
  const binAt = new Int32Array(n);
  // Bucket r holds the open bins with exactly r tokens free, as a linked stack.
  const head = new Int32Array(capacity + 1).fill(-1);
  const nextInBucket = new Int32Array(n);
  const itemsIn = new Int32Array(n);
  const nonEmpty = new NextSetBit(capacity + 1);
  let binCount = 0;
  let p = 0;
  for (let len = capacity; len >= 1; len--) {
    for (let k = start[len]!, end = start[len + 1]!; k < end; k++) {
      const free = nonEmpty.next(len);
      let bin: number;
      let left: number;
      if (free < 0) {
        bin = binCount++;
        left = capacity - len;
      } else {
        bin = head[free]!;
        const after = nextInBucket[bin]!;
        head[free] = after;
        if (after < 0) nonEmpty.delete(free);
        left = free - len;
      }
      placed[p] = order[k]!;
      binAt[p++] = bin;
      const count = ++itemsIn[bin]!;
      // A bin that is full, or at its sample cap, leaves the buckets for good.
      if (left > 0 && count < maxItems) {
        nextInBucket[bin] = head[left]!;
        if (head[left]! < 0) nonEmpty.add(left);
        head[left] = bin;
      }
    }
  }
  return { placed, binAt, binCount };
}
