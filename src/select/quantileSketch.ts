// A mergeable, deterministic quantile sketch (the compactor hierarchy of Manku-Rajagopalan-Lindsay
// and KLL, without KLL's randomness): level h holds items of weight 2^h in a buffer of capacity k.
// A full buffer is sorted and every other item moves up a level with twice the weight.
//
// Error bound, and why it holds: for any value x, compacting a level-h buffer changes the
// estimated number of items <= x by at most 2^h (of the m buffered items <= x, floor(m/2) or
// ceil(m/2) survive with weight 2, so the estimate moves by at most one item of weight 2^h).
// The sketch adds up 2^h for every compaction it performs (merges included), so `rankErrorBound`
// is a guaranteed bound on |estimated rank - true rank| for every query, not a probability. It
// grows like n * log2(n / k) / k; alternating the kept half (odd, then even positions) makes
// errors cancel in practice, so the real error is usually far below the bound.

export interface QuantileSketchJSON {
  k: number;
  count: number;
  errorBound: number;
  levels: number[][];
}

export class QuantileSketch {
  readonly k: number;
  private levels: Float64Array[] = [];
  private sizes: number[] = [];
  private parity: number[] = [];
  private n = 0;
  private bound = 0;
  private minValue = Infinity;
  private maxValue = -Infinity;

  /** `k` (even, >= 8) is the buffer capacity per level: memory about k * log2(n / k) numbers. */
  constructor(k = 4096) {
    if (!Number.isInteger(k) || k < 8 || k % 2 !== 0) throw new Error(`QuantileSketch: k must be an even integer >= 8, got ${k}`);
    this.k = k;
  }

  /** Number of values added (merged sketches included). NaN values are refused by `add`. */
  get count(): number {
    return this.n;
  }

  /** Guaranteed bound on the rank error of `rank` and `quantile`, in items. */
  get rankErrorBound(): number {
    return this.bound;
  }

  get min(): number {
    return this.minValue;
  }

  get max(): number {
    return this.maxValue;
  }

  add(value: number): void {
    if (Number.isNaN(value)) throw new Error('QuantileSketch: NaN cannot be ranked');
    this.n++;
    if (value < this.minValue) this.minValue = value;
    if (value > this.maxValue) this.maxValue = value;
    this.push(0, value);
  }

  /** Adds every item of `other` (built with the same k) into this sketch. */
  merge(other: QuantileSketch): void {
    if (other.k !== this.k) throw new Error(`QuantileSketch: cannot merge k=${other.k} into k=${this.k}`);
    this.n += other.n;
    this.bound += other.bound;
    this.minValue = Math.min(this.minValue, other.minValue);
    this.maxValue = Math.max(this.maxValue, other.maxValue);
    for (let h = 0; h < other.levels.length; h++) {
      const buf = other.levels[h]!;
      for (let i = 0; i < other.sizes[h]!; i++) this.push(h, buf[i]!);
    }
  }

  /** Estimated number of values <= x (within rankErrorBound of the truth). */
  rank(x: number): number {
    let r = 0;
    for (let h = 0; h < this.levels.length; h++) {
      const buf = this.levels[h]!;
      const size = this.sizes[h]!;
      let c = 0;
      for (let i = 0; i < size; i++) if (buf[i]! <= x) c++;
      r += c * 2 ** h;
    }
    return r;
  }

  /**
   * The value at 0-based ascending rank `r` (clamped to [0, count-1]): a retained value whose
   * estimated rank interval contains r. Throws on an empty sketch.
   */
  valueAtRank(r: number): number {
    if (this.n === 0) throw new Error('QuantileSketch: no values');
    const items = this.weighted();
    const target = Math.min(Math.max(r, 0), this.n - 1);
    let cumulative = 0;
    for (const [value, weight] of items) {
      cumulative += weight;
      if (cumulative > target) return value;
    }
    return items[items.length - 1]![0];
  }

  toJSON(): QuantileSketchJSON {
    return {
      k: this.k,
      count: this.n,
      errorBound: this.bound,
      levels: this.levels.map((buf, h) => Array.from(buf.subarray(0, this.sizes[h]))),
    };
  }

  private weighted(): Array<[number, number]> {
    const items: Array<[number, number]> = [];
    for (let h = 0; h < this.levels.length; h++) {
      const buf = this.levels[h]!;
      for (let i = 0; i < this.sizes[h]!; i++) items.push([buf[i]!, 2 ** h]);
    }
    items.sort((a, b) => a[0] - b[0]);
    return items;
  }

  private push(level: number, value: number): void {
    while (this.levels.length <= level) {
      this.levels.push(new Float64Array(this.k));
      this.sizes.push(0);
      this.parity.push(0);
    }
    const buf = this.levels[level]!;
    buf[this.sizes[level]!] = value;
    this.sizes[level]!++;
    if (this.sizes[level] === this.k) this.compact(level);
  }

  private compact(level: number): void {
    const buf = this.levels[level]!;
    buf.sort();
    const offset = this.parity[level]!;
    this.parity[level] = 1 - offset;
    this.sizes[level] = 0;
    this.bound += 2 ** level;
    for (let i = offset; i < this.k; i += 2) this.push(level + 1, buf[i]!);
  }
}
