// The original recipe's packer, re-implemented for comparison: inside each shard of
// `shardSize` samples, sort by decreasing length and put each sample into the first bin (in
// opening order) that still has room, scanning every bin: O(n * bins) per shard. Bins never
// span shards, so every shard ends with its own partly filled bins.
import { indicesByDecreasingLength } from './countingSort.js';
import { checkInput, PackInputError, resultFromCsr, type PackInput, type PackResult } from './types.js';

export function packFirstFitDecreasingPerShard(input: PackInput & { shardSize: number }): PackResult {
  const checked = checkInput(input);
  const { lengths, capacity, maxItems } = checked;
  const { shardSize } = input;
  if (!Number.isInteger(shardSize) || shardSize < 1) {
    throw new PackInputError(`pack: shardSize must be a positive integer, got ${shardSize}`);
  }
  const n = lengths.length;
  const items = new Int32Array(n);
  const offsetList: number[] = [0];
  // Per-shard scratch, reused: free space and sample count per bin, bin per sample.
  const free = new Int32Array(Math.min(shardSize, n));
  const count = new Int32Array(Math.min(shardSize, n));
  const binOf = new Int32Array(Math.min(shardSize, n));
  let written = 0;
  for (let from = 0; from < n; from += shardSize) {
    const to = Math.min(n, from + shardSize);
    const order = indicesByDecreasingLength(lengths, capacity, from, to);
    let bins = 0;
    for (let k = 0; k < order.length; k++) {
      const i = order[k]!;
      const len = lengths[i]!;
      let b = 0;
      while (b < bins && (free[b]! < len || count[b]! >= maxItems)) b++;
      if (b === bins) {
        free[b] = capacity;
        count[b] = 0;
        bins++;
      }
      free[b]! -= len;
      count[b]!++;
      binOf[i - from] = b;
    }
    // Lay the shard's bins out contiguously, samples in placement order.
    const base = written;
    const starts = new Int32Array(bins + 1);
    for (let b = 0; b < bins; b++) starts[b + 1] = starts[b]! + count[b]!;
    for (let k = 0; k < order.length; k++) {
      const i = order[k]!;
      items[base + starts[binOf[i - from]!]!++] = i;
    }
    for (let b = 0; b < bins; b++) {
      written += count[b]!;
      offsetList.push(written);
    }
  }
  return resultFromCsr(checked, items, Int32Array.from(offsetList), 'first-fit-decreasing-per-shard');
}
