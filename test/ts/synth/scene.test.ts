import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { Rng } from '../../../src/util/rng.js';
import { GAP, MIN_CONTRAST, colorDistance, generateBlankScene, generateScene, groupsOf, regionAt, sceneHash } from '../../../src/synth/scene.js';
import { shapePolygon } from '../../../src/synth/render.js';
import { MAX_GROUP_COUNT, MAX_OBJECTS, REGIONS, SHAPE_KINDS, SIZES } from '../../../src/synth/vocabulary.js';

const seeds = fc.integer({ min: 0, max: 0xffffffff });

test('layout: every object lies inside the image and no two objects overlap or touch', () => {
  fc.assert(
    fc.property(seeds, (seed) => {
      const scene = generateScene(new Rng(seed));
      assert.ok(scene.width >= 96 && scene.width <= 256 && scene.height >= 96 && scene.height <= 256, `size ${scene.width}x${scene.height}`);
      assert.ok(scene.objects.length >= 1 && scene.objects.length <= MAX_OBJECTS);
      for (const o of scene.objects) {
        assert.ok(o.x - o.radius >= GAP && o.y - o.radius >= GAP, `object pokes out top/left: ${JSON.stringify(o)}`);
        assert.ok(o.x + o.radius <= scene.width - GAP && o.y + o.radius <= scene.height - GAP, `object pokes out bottom/right: ${JSON.stringify(o)}`);
      }
      for (let i = 0; i < scene.objects.length; i++) {
        for (let j = i + 1; j < scene.objects.length; j++) {
          const a = scene.objects[i]!;
          const b = scene.objects[j]!;
          assert.ok(Math.hypot(a.x - b.x, a.y - b.y) >= a.radius + b.radius + GAP, `objects ${i} and ${j} overlap`);
        }
      }
    }),
    { numRuns: 400 },
  );
});

test('layout: groups are distinct (shape, colour) pairs with one size, counts within limits', () => {
  fc.assert(
    fc.property(seeds, (seed) => {
      const scene = generateScene(new Rng(seed));
      const groups = groupsOf(scene);
      const pairs = new Set(groups.map((g) => `${g.shape}/${g.color}`));
      assert.equal(pairs.size, groups.length);
      for (const g of groups) {
        assert.ok(g.count >= 1 && g.count <= MAX_GROUP_COUNT);
        const sizes = new Set(scene.objects.filter((o) => o.shape === g.shape && o.color === g.color).map((o) => o.size));
        assert.equal(sizes.size, 1, 'one size per group');
      }
      assert.equal(groups.reduce((s, g) => s + g.count, 0), scene.objects.length);
    }),
    { numRuns: 300 },
  );
});

test('layout: regions agree with positions, lone objects sit well inside their grid cell', () => {
  fc.assert(
    fc.property(seeds, (seed) => {
      const scene = generateScene(new Rng(seed));
      for (const o of scene.objects) assert.equal(o.region, regionAt(o.x, o.y, scene.width, scene.height));
      for (const g of groupsOf(scene).filter((x) => x.count === 1)) {
        const o = scene.objects.find((x) => x.shape === g.shape && x.color === g.color)!;
        const cell = REGIONS.find((r) => r.name === o.region)!;
        const fx = (o.x / scene.width) * 3 - cell.col;
        const fy = (o.y / scene.height) * 3 - cell.row;
        // Placed in the central 60% of the cell (a hair of slack for rounding to 0.01 px).
        assert.ok(fx >= 0.19 && fx <= 0.81 && fy >= 0.19 && fy <= 0.81, `lone object near a cell border: ${fx}, ${fy}`);
      }
    }),
    { numRuns: 300 },
  );
});

test('shape colours contrast with every background tone', () => {
  fc.assert(
    fc.property(seeds, (seed) => {
      const scene = generateScene(new Rng(seed));
      const bg = scene.background;
      for (const o of scene.objects) {
        // The object's own colour may be jittered by a few levels; the named colour keeps the margin.
        assert.ok(colorDistance(o.rgb, bg.rgb) >= MIN_CONTRAST - 15, `${o.color} on ${bg.color}`);
        if (bg.rgb2) assert.ok(colorDistance(o.rgb, bg.rgb2) >= MIN_CONTRAST - 15);
      }
    }),
    { numRuns: 300 },
  );
});

test('sizes: radius follows the size class of the image shorter side', () => {
  fc.assert(
    fc.property(seeds, (seed) => {
      const scene = generateScene(new Rng(seed));
      const minSide = Math.min(scene.width, scene.height);
      for (const o of scene.objects) {
        const fraction = SIZES.find((s) => s.name === o.size)!.radiusFraction;
        const expected = Math.max(5, fraction * minSide);
        assert.ok(Math.abs(o.radius - expected) <= 0.09 * expected + 0.02, `${o.size} radius ${o.radius} vs ${expected}`);
      }
    }),
  );
});

test('every polygon vertex lies within the bounding radius', () => {
  for (const shape of SHAPE_KINDS) {
    if (shape === 'circle') continue;
    for (const [x, y] of shapePolygon(shape, 10)) assert.ok(Math.hypot(x, y) <= 10 + 1e-9, `${shape} vertex outside`);
  }
});

test('scenes are deterministic for an rng seed and differ across seeds', () => {
  assert.deepEqual(generateScene(new Rng(5)), generateScene(new Rng(5)));
  const hashes = new Set(Array.from({ length: 200 }, (_, i) => sceneHash(generateScene(new Rng(i)))));
  assert.equal(hashes.size, 200);
});

test('blank scenes have no objects and only faint noise', () => {
  fc.assert(
    fc.property(seeds, (seed) => {
      const scene = generateBlankScene(new Rng(seed));
      assert.equal(scene.objects.length, 0);
      assert.equal(scene.background.kind, 'noise');
      assert.ok((scene.background.amplitude ?? 99) <= 4);
    }),
  );
});
