import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { Rng } from '../../../src/util/rng.js';
import { parseCaptionGroups } from '../../../src/synth/caption.js';
import { EVEN_MIX, NOISE_KINDS, makePair, noiseCounts, parseNoiseMix, planNoise, type NoiseMix } from '../../../src/synth/noise.js';
import { parsedKey, truthKey } from './helpers.js';

const mixArb = fc
  .tuple(...NOISE_KINDS.map(() => fc.integer({ min: 0, max: 5 })))
  .filter((w) => w.some((x) => x > 0))
  .map((w) => Object.fromEntries(NOISE_KINDS.map((k, i) => [k, w[i]])) as NoiseMix);

test('noise plan: exactly round(fraction * n) noisy samples, split by the mix', () => {
  fc.assert(
    fc.property(fc.integer({ min: 0, max: 3000 }), fc.double({ min: 0, max: 1, noNaN: true }), mixArb, fc.nat(), (n, fraction, mix, seed) => {
      const plan = planNoise(seed, n, fraction, mix);
      assert.equal(plan.length, n);
      const total = Math.round(fraction * n);
      assert.equal(plan.filter((k) => k !== null).length, total);
      const counts = noiseCounts(n, fraction, mix);
      const weightSum = NOISE_KINDS.reduce((s, k) => s + mix[k], 0);
      for (const kind of NOISE_KINDS) {
        assert.equal(plan.filter((k) => k === kind).length, counts[kind]);
        // Largest remainder: each kind within one of its exact share; zero weight, zero samples.
        assert.ok(Math.abs(counts[kind] - (total * mix[kind]) / weightSum) < 1);
        if (mix[kind] === 0) assert.equal(counts[kind], 0);
      }
    }),
    { numRuns: 150 },
  );
});

test('noise plan: deterministic for a seed, scattered (not all at the start)', () => {
  const a = planNoise(3, 1000, 0.3, EVEN_MIX);
  assert.deepEqual(a, planNoise(3, 1000, 0.3, EVEN_MIX));
  assert.notDeepEqual(a, planNoise(4, 1000, 0.3, EVEN_MIX));
  const firstHalf = a.slice(0, 500).filter((k) => k !== null).length;
  assert.ok(firstHalf > 100 && firstHalf < 200, `noisy in first half: ${firstHalf}`);
});

test('noise mix parsing: kinds, weights and clear errors', () => {
  assert.deepEqual(parseNoiseMix('even'), EVEN_MIX);
  assert.deepEqual(parseNoiseMix('mismatched=2, blank=0.5'), { mismatched: 2, wrong_color: 0, wrong_count: 0, gibberish: 0, blank: 0.5 });
  assert.throws(() => parseNoiseMix('typo=1'), /unknown kind 'typo'/);
  assert.throws(() => parseNoiseMix('blank'), /not kind=weight/);
  assert.throws(() => parseNoiseMix('blank=0'), /every weight is 0/);
});

test('noisy pairs: the caption is wrong exactly as the recorded ground truth says', () => {
  fc.assert(
    fc.property(fc.nat(), fc.nat(1_000_000), (seed, index) => {
      for (const kind of [null, ...NOISE_KINDS]) {
        const pair = makePair(new Rng(seed ^ index), kind, seed, index);
        const image = truthKey(pair.scene);
        assert.equal(parsedKey(pair.cleanCaption), image, `clean caption disagrees with the image (${kind})`);
        const said = parsedKey(pair.caption);
        if (kind === null) {
          assert.equal(pair.noise, null);
          assert.equal(pair.caption, pair.cleanCaption);
          continue;
        }
        assert.equal(pair.noise?.kind, kind);
        assert.notEqual(said, image, `${kind} caption still matches the image: ${pair.caption}`);
        const n = pair.noise as Record<string, unknown>;
        if (kind === 'wrong_color') {
          const swapped = parseCaptionGroups(pair.caption).find((g) => g.color === n.to && g.shape === n.shape);
          assert.ok(swapped, `caption lacks the ${n.to} ${n.shape}: ${pair.caption}`);
          assert.ok(!pair.scene.objects.some((o) => o.color === n.to), 'the new colour is not in the image');
          assert.ok(pair.scene.objects.some((o) => o.color === n.from && o.shape === n.shape));
        } else if (kind === 'wrong_count') {
          const real = pair.scene.objects.filter((o) => o.color === n.color && o.shape === n.shape).length;
          assert.equal(real, n.from);
          assert.equal(Math.abs((n.to as number) - real), 1);
          assert.equal(parseCaptionGroups(pair.caption).find((g) => g.color === n.color && g.shape === n.shape)?.count, n.to);
        } else if (kind === 'blank') {
          assert.equal(pair.scene.objects.length, 0);
          assert.ok(said.length > 0, 'blank images get a normal-looking caption');
        } else if (kind === 'mismatched') {
          const described = (n.described as Array<{ count: number; color: string; shape: string }>).map((g) => `${g.count} ${g.color} ${g.shape}`).sort().join(', ');
          assert.equal(said, described);
        } else if (kind === 'gibberish') {
          assert.equal(said, '');
          assert.ok(pair.caption.length > 0);
        }
      }
    }),
    { numRuns: 150 },
  );
});
