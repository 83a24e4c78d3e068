// A histogram with power-of-two buckets: scale-free, so caption lengths and image sizes of any
// dataset fit in a dozen lines without choosing bucket edges up front.

export interface HistogramSummary {
  count: number;
  min: number | null;
  max: number | null;
  mean: number | null;
  /** Non-empty range of buckets from the smallest to the largest value: [lo, hi] inclusive. */
  buckets: Array<{ lo: number; hi: number; count: number }>;
}

export class Log2Histogram {
  private readonly counts: number[] = [];
  private n = 0;
  private sum = 0;
  private lo = Infinity;
  private hi = -Infinity;

  /** Adds a non-negative integer value. */
  add(value: number): void {
    const v = Math.max(0, Math.floor(value));
    const b = bucketOf(v);
    while (this.counts.length <= b) this.counts.push(0);
    this.counts[b]!++;
    this.n++;
    this.sum += v;
    if (v < this.lo) this.lo = v;
    if (v > this.hi) this.hi = v;
  }

  summary(): HistogramSummary {
    if (this.n === 0) return { count: 0, min: null, max: null, mean: null, buckets: [] };
    const first = bucketOf(this.lo);
    const buckets = [];
    for (let b = first; b < this.counts.length; b++) {
      const [lo, hi] = bucketRange(b);
      buckets.push({ lo, hi, count: this.counts[b] ?? 0 });
    }
    return { count: this.n, min: this.lo, max: this.hi, mean: this.sum / this.n, buckets };
  }
}

/** Bucket 0 holds 0; bucket k >= 1 holds [2^(k-1), 2^k - 1]. */
function bucketOf(v: number): number {
  return v === 0 ? 0 : Math.floor(Math.log2(v)) + 1;
}

function bucketRange(b: number): [number, number] {
  return b === 0 ? [0, 0] : [2 ** (b - 1), 2 ** b - 1];
}
