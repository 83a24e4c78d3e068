import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { Rng } from '../../../src/util/rng.js';
import { QA_KINDS, questionsForScene } from '../../../src/synth/qa.js';
import { generateScene } from '../../../src/synth/scene.js';
import { checkAnswer } from './helpers.js';

test('every SFT answer agrees with the scene', () => {
  const seen = new Set<string>();
  fc.assert(
    fc.property(fc.integer({ min: 0, max: 0xffffffff }), (seed) => {
      const rng = new Rng(seed);
      const scene = generateScene(rng);
      const pairs = questionsForScene(scene, rng, 5);
      assert.ok(pairs.length >= 3, 'at least three applicable question kinds per scene');
      assert.equal(new Set(pairs.map((p) => p.kind)).size, pairs.length, 'kinds differ within a conversation');
      for (const qa of pairs) {
        seen.add(qa.kind);
        checkAnswer(scene, qa);
      }
    }),
    { numRuns: 500 },
  );
  assert.deepEqual([...seen].sort(), [...QA_KINDS].sort(), 'every question kind occurs');
});
