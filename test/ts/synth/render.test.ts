import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import sharp from 'sharp';
import { Rng } from '../../../src/util/rng.js';
import { generateBlankScene, generateScene, type Scene } from '../../../src/synth/scene.js';
import { renderScene } from '../../../src/synth/render.js';
import { encodeRgb, type ImageFormat } from '../../../src/synth/encode.js';

const seeds = fc.integer({ min: 0, max: 0xffffffff });

function pixel(buf: Uint8Array, width: number, x: number, y: number): [number, number, number] {
  const i = (Math.floor(y) * width + Math.floor(x)) * 3;
  return [buf[i]!, buf[i + 1]!, buf[i + 2]!];
}

/** 8-connected components of pixels that differ from the bare background. */
function components(scene: Scene): Array<{ size: number; cx: number; cy: number }> {
  const full = renderScene(scene);
  const bare = renderScene({ ...scene, objects: [] });
  const { width, height } = scene;
  const seen = new Uint8Array(width * height);
  const differs = (p: number) => full[p * 3] !== bare[p * 3] || full[p * 3 + 1] !== bare[p * 3 + 1] || full[p * 3 + 2] !== bare[p * 3 + 2];
  const out: Array<{ size: number; cx: number; cy: number }> = [];
  for (let p = 0; p < width * height; p++) {
    if (seen[p] || !differs(p)) continue;
    let size = 0;
    let sx = 0;
    let sy = 0;
    const stack = [p];
    seen[p] = 1;
    while (stack.length) {
      const q = stack.pop()!;
      const x = q % width;
      const y = (q - x) / width;
      size++;
      sx += x + 0.5;
      sy += y + 0.5;
      for (const [nx, ny] of [[x - 1, y], [x + 1, y], [x, y - 1], [x, y + 1], [x - 1, y - 1], [x + 1, y - 1], [x - 1, y + 1], [x + 1, y + 1]] as const) {
        if (nx < 0 || ny < 0 || nx >= width || ny >= height) continue;
        const n = ny * width + nx;
        if (!seen[n] && differs(n)) {
          seen[n] = 1;
          stack.push(n);
        }
      }
    }
    out.push({ size, cx: sx / size, cy: sy / size });
  }
  return out;
}

test('the pixel at each object centre has exactly the object colour in the raw render', () => {
  fc.assert(
    fc.property(seeds, (seed) => {
      const scene = generateScene(new Rng(seed));
      const buf = renderScene(scene);
      assert.equal(buf.length, scene.width * scene.height * 3);
      for (const o of scene.objects) assert.deepEqual(pixel(buf, scene.width, o.x, o.y), [...o.rgb], `${o.shape} at ${o.x},${o.y}`);
    }),
    { numRuns: 200 },
  );
});

test('drawn blobs match the scene: one connected blob per object, centred on it', () => {
  fc.assert(
    fc.property(seeds, (seed) => {
      const scene = generateScene(new Rng(seed));
      const blobs = components(scene);
      assert.equal(blobs.length, scene.objects.length, `blobs ${blobs.length} vs objects ${scene.objects.length}`);
      for (const o of scene.objects) {
        // Each object owns a blob whose centroid lies inside its bounding circle (stars and
        // triangles have the centroid of the shape at the centre; the pixel grid shifts it a little).
        const near = blobs.filter((b) => Math.hypot(b.cx - o.x, b.cy - o.y) < o.radius * 0.5);
        assert.equal(near.length, 1, `${o.shape} at ${o.x},${o.y}`);
        assert.ok(near[0]!.size >= o.radius * o.radius * 0.8, `${o.shape} blob too small: ${near[0]!.size}`);
      }
    }),
    { numRuns: 60 },
  );
});

test('encoded images decode to the right size with object colours at centres (JPEG tolerance)', async () => {
  const rng = new Rng(42);
  let checked = 0;
  for (let i = 0; i < 40; i++) {
    const scene = generateScene(rng);
    const format = (['jpg', 'png', 'webp'] as ImageFormat[])[i % 3]!;
    const data = await encodeRgb(renderScene(scene), scene.width, scene.height, { format, quality: 80 });
    const meta = await sharp(data).metadata();
    assert.equal(meta.format, format === 'jpg' ? 'jpeg' : format);
    const { data: raw, info } = await sharp(data).removeAlpha().raw().toBuffer({ resolveWithObject: true });
    assert.equal(info.width, scene.width);
    assert.equal(info.height, scene.height);
    for (const o of scene.objects) {
      const got = pixel(raw, info.width, o.x, o.y);
      const tolerance = format === 'png' ? 0 : 48;
      for (let c = 0; c < 3; c++) assert.ok(Math.abs(got[c]! - o.rgb[c]!) <= tolerance, `${format} ${o.color} ${o.shape}: got ${got} want ${o.rgb}`);
      checked++;
    }
  }
  assert.ok(checked > 40);
});

test('blank images are near-flat', () => {
  fc.assert(
    fc.property(seeds, (seed) => {
      const scene = generateBlankScene(new Rng(seed));
      const buf = renderScene(scene);
      const amp = scene.background.amplitude!;
      for (let i = 0; i < buf.length; i += 3) for (let c = 0; c < 3; c++) assert.ok(Math.abs(buf[i + c]! - scene.background.rgb[c]!) <= amp);
    }),
    { numRuns: 30 },
  );
});

test('rendering is deterministic, including noise textures', () => {
  for (let seed = 0; seed < 20; seed++) {
    const scene = generateScene(new Rng(seed));
    assert.deepEqual(renderScene(scene), renderScene(scene));
  }
});
