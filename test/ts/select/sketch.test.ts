import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { QuantileSketch } from '../../../src/select/quantileSketch.js';

function exactRank(sorted: Float64Array, x: number): number {
  let lo = 0;
  let hi = sorted.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (sorted[mid]! <= x) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

function countBelow(sorted: Float64Array, x: number): number {
  let lo = 0;
  let hi = sorted.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (sorted[mid]! < x) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** Checks rank(x) and valueAtRank(r) against the exact answer, within the sketch's own bound. */
function checkAgainstExact(sketch: QuantileSketch, values: number[], probes: number[]): void {
  const sorted = Float64Array.from(values).sort();
  const n = sorted.length;
  const bound = sketch.rankErrorBound;
  assert.equal(sketch.count, n);
  // The bound the header states: at most n * (log2(n / k) + 1) / k.
  assert.ok(bound <= (n * (Math.max(0, Math.log2(n / sketch.k)) + 1)) / sketch.k + 1e-9, `bound ${bound} for n=${n}, k=${sketch.k}`);
  for (const x of [...probes, ...values.slice(0, 20)]) {
    assert.ok(Math.abs(sketch.rank(x) - exactRank(sorted, x)) <= bound, `rank(${x}): ${sketch.rank(x)} vs ${exactRank(sorted, x)} (bound ${bound})`);
  }
  for (const q of [0, 0.01, 0.1, 0.25, 0.5, 0.85, 0.9, 0.99, 1]) {
    const r = Math.min(n - 1, Math.floor(q * n));
    const v = sketch.valueAtRank(r);
    // v's exact ranks span [countBelow(v), exactRank(v) - 1]; r must be within bound of that span.
    assert.ok(countBelow(sorted, v) - bound <= r && r <= exactRank(sorted, v) - 1 + bound, `valueAtRank(${r}) = ${v}, bound ${bound}`);
  }
}

const valuesArb = fc.array(fc.oneof(fc.double({ min: -10, max: 10, noNaN: true }), fc.integer({ min: -3, max: 3 })), { minLength: 1, maxLength: 3000 });

test('property: rank and quantile errors stay within the sketch\'s guaranteed bound', () => {
  fc.assert(
    fc.property(valuesArb, fc.constantFrom(8, 16, 64), fc.array(fc.double({ min: -11, max: 11, noNaN: true }), { maxLength: 20 }), (values, k, probes) => {
      const sketch = new QuantileSketch(k);
      for (const v of values) sketch.add(v);
      checkAgainstExact(sketch, values, probes);
      assert.equal(sketch.min, Math.min(...values));
      assert.equal(sketch.max, Math.max(...values));
    }),
    { numRuns: 150 },
  );
});

test('property: merged sketches answer for the union of their inputs within the summed bound', () => {
  fc.assert(
    fc.property(fc.array(valuesArb, { minLength: 1, maxLength: 5 }), fc.constantFrom(8, 32), (parts, k) => {
      const merged = new QuantileSketch(k);
      for (const part of parts) {
        const s = new QuantileSketch(k);
        for (const v of part) s.add(v);
        merged.merge(s);
      }
      checkAgainstExact(merged, parts.flat(), []);
    }),
    { numRuns: 80 },
  );
});

test('a sketch that never compacted is exact, and errors are far below the bound on large streams', () => {
  const small = new QuantileSketch(64);
  for (let i = 0; i < 50; i++) small.add(i);
  assert.equal(small.rankErrorBound, 0);
  assert.equal(small.valueAtRank(37), 37);
  const big = new QuantileSketch(256);
  const n = 200_000;
  // A scrambled permutation of 0..n-1: the exact rank of x is x + 1.
  for (let i = 0; i < n; i++) big.add((i * 7919) % n);
  let worst = 0;
  for (let x = 0; x < n; x += 997) worst = Math.max(worst, Math.abs(big.rank(x) - (x + 1)));
  assert.ok(worst <= big.rankErrorBound);
  assert.ok(big.rankErrorBound <= (n * (Math.log2(n / 256) + 1)) / 256);
});

test('refuses NaN, odd k and merges of different k', () => {
  assert.throws(() => new QuantileSketch(7), /even/);
  assert.throws(() => new QuantileSketch(16).add(NaN), /NaN/);
  assert.throws(() => new QuantileSketch(16).merge(new QuantileSketch(32)), /k=32/);
  assert.throws(() => new QuantileSketch(16).valueAtRank(0), /no values/);
});
