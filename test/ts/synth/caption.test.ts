import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { Rng } from '../../../src/util/rng.js';
import { captionForScene, parseCaptionGroups, type ParsedGroup } from '../../../src/synth/caption.js';
import { generateScene, type Scene } from '../../../src/synth/scene.js';
import { BACKGROUND_COLORS, REGIONS, SHAPE_COLORS, SHAPE_KINDS, SHAPE_PLURALS } from '../../../src/synth/vocabulary.js';

const seeds = fc.integer({ min: 0, max: 0xffffffff });

/** Groups counted straight from the objects, independent of the generator's groupsOf. */
function truthGroups(scene: Scene): Map<string, { count: number; size: string }> {
  const m = new Map<string, { count: number; size: string }>();
  for (const o of scene.objects) {
    const k = `${o.color} ${o.shape}`;
    const g = m.get(k) ?? { count: 0, size: o.size };
    g.count++;
    m.set(k, g);
  }
  return m;
}

function asMap(parsed: ParsedGroup[]): Map<string, ParsedGroup> {
  return new Map(parsed.map((p) => [`${p.color} ${p.shape}`, p]));
}

test('clean captions name every group with its true count, colour, shape (and size when said)', () => {
  fc.assert(
    fc.property(seeds, seeds, (sceneSeed, captionSeed) => {
      const scene = generateScene(new Rng(sceneSeed));
      const caption = captionForScene(scene, new Rng(captionSeed));
      const parsed = parseCaptionGroups(caption);
      const truth = truthGroups(scene);
      assert.equal(parsed.length, truth.size, `caption: ${caption}`);
      const got = asMap(parsed);
      for (const [k, g] of truth) {
        const p = got.get(k);
        assert.ok(p, `missing ${k} in: ${caption}`);
        assert.equal(p.count, g.count, `count of ${k} in: ${caption}`);
        if (p.size) assert.equal(p.size, g.size, `size of ${k} in: ${caption}`);
      }
    }),
    { numRuns: 500 },
  );
});

test('clean captions mention the background colour, and position words only for lone objects, correctly', () => {
  fc.assert(
    fc.property(seeds, (seed) => {
      const rng = new Rng(seed);
      const scene = generateScene(rng);
      const caption = captionForScene(scene, rng);
      if (caption.includes('background')) assert.match(caption, new RegExp(`\\b${scene.background.color} (background|gradient)|${scene.background.color} background`));
      for (const region of REGIONS) {
        const idx = caption.indexOf(` ${region.phrase}`);
        if (idx < 0) continue;
        // The phrase follows "<colour> <shape>" of a lone object that really is in that region.
        const before = caption.slice(0, idx).split(/\s+/);
        const shape = before.at(-1)!;
        const color = before.at(-2)!;
        const objs = scene.objects.filter((o) => o.shape === shape && o.color === color);
        assert.equal(objs.length, 1, `position for a non-lone group in: ${caption}`);
        assert.equal(objs[0]!.region, region.name, caption);
      }
    }),
    { numRuns: 500 },
  );
});

test('captions vary: templates and lengths differ across scenes', () => {
  const captions = Array.from({ length: 300 }, (_, i) => {
    const rng = new Rng(i);
    return captionForScene(generateScene(rng), rng);
  });
  assert.ok(new Set(captions).size >= 295);
  const lengths = captions.map((c) => c.split(' ').length);
  assert.ok(Math.max(...lengths) - Math.min(...lengths) >= 10, `lengths ${Math.min(...lengths)}..${Math.max(...lengths)}`);
  assert.ok(new Set(captions.map((c) => c.split(' ')[0])).size >= 6, 'openings vary');
});

test('the caption parser ignores background colours and reads singular/plural agreement', () => {
  assert.deepEqual(parseCaptionGroups('A white background with two red circles.'), [{ count: 2, color: 'red', shape: 'circle' }]);
  assert.deepEqual(parseCaptionGroups('An orange star in the top left corner on a striped navy background'), [{ count: 1, color: 'orange', shape: 'star' }]);
  assert.deepEqual(parseCaptionGroups('Three large black squares and a blue hexagon.'), [
    { count: 3, size: 'large', color: 'black', shape: 'square' },
    { count: 1, color: 'blue', shape: 'hexagon' },
  ]);
  assert.deepEqual(parseCaptionGroups('two red circle'), []);
  assert.deepEqual(parseCaptionGroups('kqz wlm pftt'), []);
});

test('vocabulary: names are unique and shape colour names are single words', () => {
  assert.equal(new Set(SHAPE_COLORS.map((c) => c.name)).size, SHAPE_COLORS.length);
  assert.equal(new Set(BACKGROUND_COLORS.map((c) => c.name)).size, BACKGROUND_COLORS.length);
  for (const c of SHAPE_COLORS) assert.match(c.name, /^[a-z]+$/);
  for (const s of SHAPE_KINDS) assert.notEqual(SHAPE_PLURALS[s], s);
});
