// Shared shapes of the packing algorithms: what goes in (sample lengths in tokens, a sequence
// capacity), what comes out (sample indices per packed sequence), input checks and the
// efficiency measure every algorithm is judged by.

export interface PackInput {
  /** Tokens per sample; sample i is index i. Positive integers, each at most `capacity`. */
  lengths: Int32Array | readonly number[];
  /** Tokens per packed sequence (bin). */
  capacity: number;
  /** Optional cap on samples per sequence (every pre-training sample carries one image). */
  maxItemsPerBin?: number | null;
  /** Seed for the algorithms that draw random numbers; same input + seed gives the same bins. */
  seed?: number;
}

export interface PackResult {
  /** Sample indices per bin, in the order they sit in the sequence. Views into `items`. */
  bins: Int32Array[];
  /** Every bin's sample indices back to back (CSR layout: bin b is items[offsets[b]..offsets[b+1])). */
  items: Int32Array;
  /** bins.length + 1 offsets into `items`. */
  offsets: Int32Array;
  /** Sum of the lengths of all packed samples. */
  usedTokens: number;
  /** bins.length * capacity. */
  capacityTokens: number;
  /** usedTokens / capacityTokens (1 when there are no bins: nothing was wasted). */
  efficiency: number;
  /** Which algorithm produced the bins (exact-fill reports when its best-fit fallback won). */
  algorithm: string;
}

/** Bad input to a packer: names the sample index and its length where one is at fault. */
export class PackInputError extends RangeError {
  constructor(
    message: string,
    readonly index: number | null = null,
    readonly length: number | null = null,
  ) {
    super(message);
    this.name = 'PackInputError';
  }
}

export interface CheckedInput {
  lengths: Int32Array;
  capacity: number;
  /** Effective cap: the given one, or a value no bin can reach. */
  maxItems: number;
  seed: number;
  totalTokens: number;
}

/** Validates a PackInput and returns it in the shape the algorithms work on (no copy for Int32Array). */
export function checkInput(input: PackInput): CheckedInput {
  const { capacity } = input;
  if (!Number.isInteger(capacity) || capacity < 1 || capacity > 1 << 24) {
    throw new PackInputError(`pack: capacity must be an integer in [1, 16777216], got ${capacity}`);
  }
  const cap = input.maxItemsPerBin;
  if (cap !== undefined && cap !== null && (!Number.isInteger(cap) || cap < 1)) {
    throw new PackInputError(`pack: maxItemsPerBin must be a positive integer or null, got ${cap}`);
  }
  const seed = input.seed ?? 0;
  if (!Number.isInteger(seed)) throw new PackInputError(`pack: seed must be an integer, got ${seed}`);
  const lengths = input.lengths instanceof Int32Array ? input.lengths : Int32Array.from(input.lengths);
  let totalTokens = 0;
  for (let i = 0; i < lengths.length; i++) {
    const len = lengths[i]!;
    if (len < 1 || len > capacity || (!(input.lengths instanceof Int32Array) && input.lengths[i] !== len)) {
      const given = input.lengths instanceof Int32Array ? len : input.lengths[i];
      const why = len > capacity ? `exceeds the capacity ${capacity}` : 'is not a positive integer';
      throw new PackInputError(`pack: sample ${i} has length ${given}, which ${why}`, i, Number(given));
    }
    totalTokens += len;
  }
  return { lengths, capacity, maxItems: cap ?? Number.MAX_SAFE_INTEGER, seed, totalTokens };
}

/** Real tokens / (bins * capacity); 1 for no bins. Throws if an index is out of range. */
export function packingEfficiency(
  lengths: Int32Array | readonly number[],
  bins: readonly (Int32Array | readonly number[])[],
  capacity: number,
): number {
  if (bins.length === 0) return 1;
  let used = 0;
  for (const bin of bins) {
    for (const i of bin) {
      const len = lengths[i];
      if (len === undefined) throw new PackInputError(`packingEfficiency: sample index ${i} is out of range`, i);
      used += len;
    }
  }
  return used / (bins.length * capacity);
}

/**
 * Builds a PackResult from samples in placement order and the bin of each placement
 * (`binAt[k]` is the bin of sample `placed[k]`); a bin keeps its samples in placement order.
 */
export function resultFromAssignment(
  checked: CheckedInput,
  placed: Int32Array,
  binAt: Int32Array,
  binCount: number,
  algorithm: string,
): PackResult {
  const offsets = new Int32Array(binCount + 1);
  for (let k = 0; k < binAt.length; k++) offsets[binAt[k]! + 1]!++;
  for (let b = 0; b < binCount; b++) offsets[b + 1]! += offsets[b]!;
  const fill = offsets.slice(0, binCount);
  const items = new Int32Array(placed.length);
  for (let k = 0; k < placed.length; k++) items[fill[binAt[k]!]!++] = placed[k]!;
  return resultFromCsr(checked, items, offsets, algorithm);
}

export function resultFromCsr(checked: CheckedInput, items: Int32Array, offsets: Int32Array, algorithm: string): PackResult {
  const binCount = offsets.length - 1;
  const bins = new Array<Int32Array>(binCount);
  for (let b = 0; b < binCount; b++) bins[b] = items.subarray(offsets[b]!, offsets[b + 1]!);
  const capacityTokens = binCount * checked.capacity;
  return {
    bins,
    items,
    offsets,
    usedTokens: checked.totalTokens,
    capacityTokens,
    efficiency: binCount === 0 ? 1 : checked.totalTokens / capacityTokens,
    algorithm,
  };
}
