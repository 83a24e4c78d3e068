// Properties every packer must have (a valid partition, capacity and cap respected,
// deterministic), cross-checks of best-fit and per-shard first-fit against plain reference
// implementations, and exact-fill's promises: never worse than best-fit, >= 99.5% on
// image-caption lengths at 4096.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import {
  PackInputError,
  lowerBoundBins,
  packBestFitDecreasing,
  packExactFill,
  packFirstFitDecreasingPerShard,
  packingEfficiency,
  type PackInput,
  type PackResult,
} from '../../../../src/pack/algorithms/index.js';
import { sampleCaptionLengths } from '../../../../src/pack/algorithms/captionLengths.js';
import { checkInput } from '../../../../src/pack/algorithms/types.js';
import { adversarialKinds, allInputs, assertValidPacking } from './arbitraries.js';

const packers: [string, (input: PackInput) => PackResult][] = [
  ['exact-fill', packExactFill],
  ['best-fit-decreasing', packBestFitDecreasing],
  ['first-fit-decreasing per shard of 7', (input) => packFirstFitDecreasingPerShard({ ...input, shardSize: 7 })],
  ['first-fit-decreasing one shard', (input) => packFirstFitDecreasingPerShard({ ...input, shardSize: 1 << 20 })],
];

const binsAsArrays = (r: PackResult): number[][] => r.bins.map((b) => Array.from(b));

for (const [name, pack] of packers) {
  describe(name, () => {
    for (const [kind, arbitrary] of adversarialKinds) {
      it(`packs every sample exactly once within capacity and cap, deterministically (${kind})`, () => {
        fc.assert(
          fc.property(arbitrary, (input) => {
            const result = pack(input);
            assertValidPacking(input, result);
            assert.ok(result.bins.length >= lowerBoundBins(checkInput(input)));
            assert.equal(result.efficiency, packingEfficiency(input.lengths, result.bins, input.capacity));
            assert.deepEqual(binsAsArrays(pack({ ...input, lengths: Int32Array.from(input.lengths) })), binsAsArrays(result));
          }),
          { numRuns: 60 },
        );
      });
    }

    it('rejects a sample longer than the capacity, naming its index and length', () => {
      assert.throws(
        () => pack({ lengths: [3, 4, 11, 2], capacity: 10 }),
        (e: unknown) => e instanceof PackInputError && e.index === 2 && e.length === 11 && /sample 2 has length 11/.test(e.message),
      );
    });

    it('rejects lengths that are not positive integers and bad capacities or caps', () => {
      assert.throws(() => pack({ lengths: [3, 0], capacity: 10 }), /sample 1 has length 0/);
      assert.throws(() => pack({ lengths: [2.5], capacity: 10 }), /sample 0 has length 2.5/);
      assert.throws(() => pack({ lengths: [1], capacity: 0 }), /capacity/);
      assert.throws(() => pack({ lengths: [1], capacity: 10, maxItemsPerBin: 0 }), /maxItemsPerBin/);
    });

    it('packs nothing into no bins', () => {
      const result = pack({ lengths: [], capacity: 16 });
      assert.equal(result.bins.length, 0);
      assert.equal(result.efficiency, 1);
    });
  });
}

describe('exact-fill against best-fit-decreasing', () => {
  for (const [kind, arbitrary] of adversarialKinds) {
    it(`is never less efficient (${kind})`, () => {
      fc.assert(
        fc.property(arbitrary, (input) => {
          assert.ok(packExactFill(input).efficiency >= packBestFitDecreasing(input).efficiency);
        }),
        { numRuns: 100 },
      );
    });
  }

  it('changes its bins with the seed but not its guarantees', () => {
    const lengths = sampleCaptionLengths(5000, 11);
    const a = packExactFill({ lengths, capacity: 4096, seed: 1 });
    const b = packExactFill({ lengths, capacity: 4096, seed: 2 });
    assert.notDeepEqual(binsAsArrays(a), binsAsArrays(b));
    assertValidPacking({ lengths, capacity: 4096 }, b);
  });
});

describe('on image-caption lengths (200k samples, 4096 tokens)', () => {
  const lengths = sampleCaptionLengths(200_000, 2024);
  const input = { lengths, capacity: 4096, seed: 7 };
  const exact = packExactFill(input);
  const bfd = packBestFitDecreasing(input);
  const ffd = packFirstFitDecreasingPerShard({ ...input, shardSize: 10_000 });

  it('exact-fill fills >= 99.5% of the tokens by itself (no fallback)', () => {
    assertValidPacking(input, exact);
    assert.equal(exact.algorithm, 'exact-fill');
    assert.ok(exact.efficiency >= 0.995, `efficiency ${exact.efficiency}`);
  });

  it('best-fit and per-shard first-fit stop below 99% (the gap exact-fill closes)', () => {
    assertValidPacking(input, bfd);
    assertValidPacking(input, ffd);
    assert.ok(bfd.efficiency < 0.99 && ffd.efficiency <= bfd.efficiency, `bfd ${bfd.efficiency}, ffd ${ffd.efficiency}`);
  });

  it('exact-fill keeps >= 99.5% with a cap of 32 images per sequence', () => {
    const capped = { ...input, lengths: lengths.subarray(0, 50_000), maxItemsPerBin: 32 };
    const result = packExactFill(capped);
    assertValidPacking(capped, result);
    assert.ok(result.efficiency >= 0.995, `efficiency ${result.efficiency}`);
  });
});

/** Best-fit decreasing as written in a textbook: scan all bins for the tightest fit. */
function referenceBestFitLoads(lengths: ArrayLike<number>, capacity: number): number[] {
  const sorted = Array.from(lengths).sort((a, b) => b - a);
  const loads: number[] = [];
  for (const len of sorted) {
    let best = -1;
    for (let b = 0; b < loads.length; b++) {
      if (loads[b]! + len <= capacity && (best < 0 || loads[b]! > loads[best]!)) best = b;
    }
    if (best < 0) loads.push(len);
    else loads[best]! += len;
  }
  return loads.sort((a, b) => a - b);
}

/** The original recipe's packer, in its own style: sorted(reverse=True), first bin with room, per shard. */
function referenceFirstFitPerShard(lengths: ArrayLike<number>, capacity: number, shardSize: number, cap: number | null): number[][] {
  const out: number[][] = [];
  for (let from = 0; from < lengths.length; from += shardSize) {
    const ids = Array.from(lengths).slice(from, from + shardSize).map((_, k) => from + k);
    ids.sort((a, b) => lengths[b]! - lengths[a]! || a - b);
    const bins: { ids: number[]; load: number }[] = [];
    for (const i of ids) {
      let bin = bins.find((b) => b.load + lengths[i]! <= capacity && (cap === null || b.ids.length < cap));
      if (!bin) bins.push((bin = { ids: [], load: 0 }));
      bin.ids.push(i);
      bin.load += lengths[i]!;
    }
    out.push(...bins.map((b) => b.ids));
  }
  return out;
}

describe('cross-checks against reference implementations', () => {
  it('best-fit-decreasing (segment tree) gives the same bin loads as the textbook scan, without a cap', () => {
    fc.assert(
      fc.property(allInputs, (input) => {
        const result = packBestFitDecreasing({ ...input, maxItemsPerBin: null });
        const loads = result.bins.map((bin) => bin.reduce((s, i) => s + input.lengths[i]!, 0)).sort((a, b) => a - b);
        assert.deepEqual(loads, referenceBestFitLoads(input.lengths, input.capacity));
      }),
      { numRuns: 300 },
    );
  });

  it('per-shard first-fit-decreasing gives exactly the original-style bins, shard by shard', () => {
    fc.assert(
      fc.property(allInputs, fc.integer({ min: 1, max: 50 }), (input, shardSize) => {
        const result = packFirstFitDecreasingPerShard({ ...input, shardSize });
        const expected = referenceFirstFitPerShard(input.lengths, input.capacity, shardSize, input.maxItemsPerBin ?? null);
        assert.deepEqual(binsAsArrays(result), expected);
      }),
      { numRuns: 300 },
    );
  });
});
