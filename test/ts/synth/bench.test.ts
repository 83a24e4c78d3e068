import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { BENCH_CATEGORIES, LETTERS, planAnswerLetters, planBenchQuestion } from '../../../src/synth/bench.js';
import { SHAPE_PLURALS } from '../../../src/synth/vocabulary.js';
import { expectedAnswer } from './helpers.js';

test('answer letters are balanced (each n/4 within one) and follow the seed', () => {
  fc.assert(
    fc.property(fc.nat(), fc.integer({ min: 0, max: 2000 }), (seed, n) => {
      const letters = planAnswerLetters(seed, n);
      assert.equal(letters.length, n);
      for (const l of LETTERS) assert.ok(Math.abs(letters.filter((x) => x === l).length - n / 4) <= 1);
    }),
    { numRuns: 50 },
  );
  assert.deepEqual(planAnswerLetters(1, 100), planAnswerLetters(1, 100));
  assert.notDeepEqual(planAnswerLetters(1, 100), planAnswerLetters(2, 100));
});

test('questions: four distinct options, the planned letter holds the answer the scene implies', () => {
  fc.assert(
    fc.property(fc.nat(), fc.nat(100_000), fc.constantFrom(...LETTERS), (seed, index, letter) => {
      const q = planBenchQuestion(seed, index, letter, new Set());
      assert.equal(q.answer, letter);
      assert.ok(q.category in BENCH_CATEGORIES);
      const options = LETTERS.map((l) => q.options[l]);
      assert.equal(new Set(options).size, 4, `options repeat: ${options}`);
      for (const o of options) assert.ok(o.length > 0 && !/[\t\n]/.test(o));
      assert.equal(q.options[letter], expectedAnswer(q), `${q.question} ${JSON.stringify(q.options)}`);
      if (q.category === 'object_counting') for (const o of options) assert.match(o, /^\d+$/);
    }),
    { numRuns: 300 },
  );
});

test('categories cycle so each skill gets a quarter of the questions', () => {
  const counts: Record<string, number> = {};
  for (let i = 0; i < 40; i++) {
    const q = planBenchQuestion(5, i, 'A', new Set());
    counts[q.category] = (counts[q.category] ?? 0) + 1;
  }
  assert.deepEqual(Object.values(counts), [10, 10, 10, 10]);
});

test('held out: a scene that equals a training scene is redrawn', () => {
  for (let i = 0; i < 20; i++) {
    const first = planBenchQuestion(11, i, 'B', new Set());
    const redrawn = planBenchQuestion(11, i, 'B', new Set([first.sceneHash]));
    assert.notEqual(redrawn.sceneHash, first.sceneHash);
    assert.ok(redrawn.rejectedAsTraining >= 1);
  }
});

test('count questions name shapes in the plural', () => {
  const q = planBenchQuestion(3, 0, 'C', new Set());
  assert.equal(q.category, 'object_counting');
  assert.ok(Object.values(SHAPE_PLURALS).some((p) => q.question.includes(p)));
});
