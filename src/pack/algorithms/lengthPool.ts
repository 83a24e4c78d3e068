// The samples not yet packed, counted by length: a histogram with a Fenwick tree over it, so a
// packer can ask "how many samples of length <= x are left", draw one at random among them
// (uniform over samples, which keeps the mix of lengths balanced), or take the longest that
// fits, each in O(log C); plus the sample indices of each length, taken in index order.
import { indicesByLength } from './countingSort.js';

export class LengthPool {
  /** Samples left per length. */
  readonly count: Int32Array;
  private readonly tree: Int32Array;
  private readonly topStep: number;
  private readonly order: Int32Array;
  private readonly nextOf: Int32Array;
  /** Shortest and longest length left (meaningless when `left` is 0). */
  min: number;
  max: number;
  left: number;

  constructor(lengths: Int32Array, readonly capacity: number) {
    const { order, start } = indicesByLength(lengths, capacity);
    this.order = order;
    this.nextOf = start.slice(0, capacity + 1);
    this.count = new Int32Array(capacity + 1);
    for (let l = 1; l <= capacity; l++) this.count[l] = start[l + 1]! - start[l]!;
    this.tree = new Int32Array(capacity + 1);
    for (let l = 1; l <= capacity; l++) {
      this.tree[l]! += this.count[l]!;
      const parent = l + (l & -l);
      if (parent <= capacity) this.tree[parent]! += this.tree[l]!;
    }
    let step = 1;
    while (step * 2 <= capacity) step *= 2;
    this.topStep = step;
    this.left = lengths.length;
    this.min = 1;
    this.max = capacity;
    this.tightenBounds();
  }

  /** Samples left with length <= x. */
  countUpTo(x: number): number {
    if (x > this.capacity) x = this.capacity;
    let sum = 0;
    for (let l = x; l > 0; l -= l & -l) sum += this.tree[l]!;
    return sum;
  }

  /** The length of the sample with rank k (0-based) in length order. Requires k < left. */
  lengthAtRank(k: number): number {
    const tree = this.tree;
    let pos = 0;
    for (let step = this.topStep; step > 0; step >>= 1) {
      const next = pos + step;
      if (next <= this.capacity && tree[next]! <= k) {
        pos = next;
        k -= tree[next]!;
      }
    }
    return pos + 1;
  }

  /** Longest length left that is <= x, or 0 when none is. */
  longestUpTo(x: number): number {
    const below = this.countUpTo(x);
    return below === 0 ? 0 : this.lengthAtRank(below - 1);
  }

  /** Removes one sample of length `len` (count[len] must be > 0) and returns its index. */
  take(len: number): number {
    const index = this.order[this.nextOf[len]!++]!;
    this.count[len]!--;
    for (let l = len; l <= this.capacity; l += l & -l) this.tree[l]!--;
    this.left--;
    if (this.count[len] === 0 && (len === this.min || len === this.max)) this.tightenBounds();
    return index;
  }

  private tightenBounds(): void {
    if (this.left === 0) return;
    while (this.count[this.min] === 0) this.min++;
    while (this.count[this.max] === 0) this.max--;
  }
}
