// Random packing inputs for the property tests: ordinary ones plus the adversarial shapes that
// break packers (all lengths equal, tiny capacities, samples exactly the capacity, many samples
// longer than half the capacity), each with or without a cap on samples per bin.
import fc from 'fast-check';
import type { PackInput, PackResult } from '../../../../src/pack/algorithms/index.js';

const cap = fc.option(fc.integer({ min: 1, max: 12 }), { nil: null, freq: 2 });
const seed = fc.integer({ min: 0, max: 2 ** 31 - 1 });

function withLengths(capacity: fc.Arbitrary<number>, lengthOf: (c: number) => fc.Arbitrary<number>, maxLength = 120): fc.Arbitrary<PackInput> {
  return capacity.chain((c) =>
    fc.record({
      lengths: fc.array(lengthOf(c), { maxLength }),
      capacity: fc.constant(c),
      maxItemsPerBin: cap,
      seed,
    }),
  );
}

export const ordinaryInput = withLengths(fc.integer({ min: 1, max: 400 }), (c) => fc.integer({ min: 1, max: c }));
export const allEqualInput = fc
  .record({ c: fc.integer({ min: 1, max: 300 }), n: fc.integer({ min: 0, max: 120 }), frac: fc.double({ min: 0, max: 1, noNaN: true }) })
  .chain(({ c, n, frac }) =>
    fc.record({
      lengths: fc.constant(new Array<number>(n).fill(Math.max(1, Math.round(frac * c)))),
      capacity: fc.constant(c),
      maxItemsPerBin: cap,
      seed,
    }),
  );
export const tinyCapacityInput = withLengths(fc.integer({ min: 1, max: 4 }), (c) => fc.integer({ min: 1, max: c }));
export const exactlyCapacityInput = withLengths(fc.integer({ min: 1, max: 300 }), (c) =>
  fc.oneof(fc.constant(c), fc.integer({ min: 1, max: c })),
);
export const bigItemsInput = withLengths(fc.integer({ min: 2, max: 300 }), (c) =>
  fc.oneof({ weight: 3, arbitrary: fc.integer({ min: Math.floor(c / 2), max: c }) }, { weight: 1, arbitrary: fc.integer({ min: 1, max: c }) }),
);
/** Many samples in a narrow band, like image-caption data scaled down. */
export const captionLikeInput = withLengths(
  fc.integer({ min: 200, max: 1000 }),
  (c) => fc.integer({ min: Math.max(1, Math.floor(c / 30)), max: Math.max(1, Math.floor(c / 12)) }),
  600,
);

export const allInputs = fc.oneof(ordinaryInput, allEqualInput, tinyCapacityInput, exactlyCapacityInput, bigItemsInput, captionLikeInput);

export const adversarialKinds: [string, fc.Arbitrary<PackInput>][] = [
  ['ordinary', ordinaryInput],
  ['all equal', allEqualInput],
  ['tiny capacity', tinyCapacityInput],
  ['items exactly the capacity', exactlyCapacityInput],
  ['many big items', bigItemsInput],
  ['caption-like', captionLikeInput],
];

/** Fails with a message if the bins are not a valid packing of the input. */
export function assertValidPacking(input: PackInput, result: PackResult): void {
  const n = input.lengths.length;
  const seen = new Uint8Array(n);
  let used = 0;
  for (const [b, bin] of result.bins.entries()) {
    if (bin.length === 0) throw new Error(`bin ${b} is empty`);
    let load = 0;
    for (const i of bin) {
      if (!(i >= 0 && i < n)) throw new Error(`bin ${b} holds index ${i}, outside [0, ${n})`);
      if (seen[i]) throw new Error(`sample ${i} is in two bins`);
      seen[i] = 1;
      load += input.lengths[i]!;
    }
    if (load > input.capacity) throw new Error(`bin ${b} holds ${load} tokens, over the capacity ${input.capacity}`);
    const cap = input.maxItemsPerBin;
    if (cap != null && bin.length > cap) throw new Error(`bin ${b} holds ${bin.length} samples, over the cap ${cap}`);
    used += load;
  }
  const missing = seen.indexOf(0);
  if (missing >= 0) throw new Error(`sample ${missing} is in no bin`);
  if (used !== result.usedTokens) throw new Error(`usedTokens ${result.usedTokens}, bins hold ${used}`);
  if (result.capacityTokens !== result.bins.length * input.capacity) throw new Error('capacityTokens is not bins * capacity');
  const offsets = Array.from(result.offsets);
  if (offsets.length !== result.bins.length + 1 || offsets[offsets.length - 1] !== n) throw new Error('offsets do not cover the items');
}
