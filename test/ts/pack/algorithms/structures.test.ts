// The two index structures behind the packers, checked against brute force on random operations.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { NextSetBit } from '../../../../src/pack/algorithms/nextSetBit.js';
import { LengthPool } from '../../../../src/pack/algorithms/lengthPool.js';
import { indicesByDecreasingLength } from '../../../../src/pack/algorithms/countingSort.js';

describe('NextSetBit', () => {
  it('answers next(x) like a scan over a plain set, across adds and deletes', () => {
    const op = fc.record({ kind: fc.constantFrom('add', 'delete', 'next'), at: fc.nat() });
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 40_000 }), fc.array(op, { maxLength: 300 }), (size, ops) => {
        const set = new NextSetBit(size);
        const model = new Set<number>();
        for (const { kind, at } of ops) {
          const i = at % size;
          if (kind === 'add') {
            set.add(i);
            model.add(i);
          } else if (kind === 'delete') {
            set.delete(i);
            model.delete(i);
          } else {
            const members = [...model].filter((m) => m >= i);
            assert.equal(set.next(i), members.length ? Math.min(...members) : -1);
            assert.equal(set.has(i), model.has(i));
          }
        }
      }),
    );
  });
});

describe('LengthPool', () => {
  it('counts, ranks and takes like a sorted list of the lengths left', () => {
    const input = fc.integer({ min: 1, max: 70 }).chain((capacity) =>
      fc.record({
        capacity: fc.constant(capacity),
        lengths: fc.array(fc.integer({ min: 1, max: capacity }), { minLength: 1, maxLength: 80 }),
        takes: fc.array(fc.nat(), { maxLength: 80 }),
      }),
    );
    fc.assert(
      fc.property(input, ({ capacity, lengths, takes }) => {
        const pool = new LengthPool(Int32Array.from(lengths), capacity);
        const left = lengths.map((len, i) => ({ len, i }));
        for (const t of takes) {
          if (left.length === 0) break;
          const sorted = left.map((x) => x.len).sort((a, b) => a - b);
          assert.equal(pool.left, sorted.length);
          assert.equal(pool.min, sorted[0]);
          assert.equal(pool.max, sorted[sorted.length - 1]);
          const x = (t % capacity) + 1;
          assert.equal(pool.countUpTo(x), sorted.filter((l) => l <= x).length);
          assert.equal(pool.lengthAtRank(t % sorted.length), sorted[t % sorted.length]);
          assert.equal(pool.longestUpTo(x), sorted.filter((l) => l <= x).pop() ?? 0);
          const len = sorted[t % sorted.length]!;
          const taken = pool.take(len);
          // Samples of one length come out in index order.
          const k = left.findIndex((s) => s.len === len);
          assert.equal(taken, left[k]!.i);
          left.splice(k, 1);
        }
      }),
    );
  });
});

describe('indicesByDecreasingLength', () => {
  it('is a stable sort by decreasing length over the range', () => {
    fc.assert(
      fc.property(fc.array(fc.integer({ min: 1, max: 50 }), { maxLength: 100 }), fc.nat(), fc.nat(), (lengths, a, b) => {
        const from = lengths.length ? a % (lengths.length + 1) : 0;
        const to = from + (lengths.length - from ? b % (lengths.length - from + 1) : 0);
        const got = Array.from(indicesByDecreasingLength(Int32Array.from(lengths), 50, from, to));
        const want = lengths.map((_, i) => i).slice(from, to).sort((x, y) => lengths[y]! - lengths[x]! || x - y);
        assert.deepEqual(got, want);
      }),
    );
  });
});
