// Each case is built with sharp itself (EXIF orientation, CMYK, grey, alpha, 16-bit, tiny, panorama)
// and checked by dimensions and by pixel values in regions whose expected colour is known.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import fc from 'fast-check';
import sharp, { type Sharp } from 'sharp';

import {
  DEFAULT_ALPHA_COLOR,
  DEFAULT_PAD_COLOR,
  decodeDisplayed,
  decodeToRgb,
  fitInside,
  prepareImage,
  probeImage,
  resizeRgb,
  type RgbImage,
} from '../../../src/images/image.js';

type Rgb = [number, number, number];

function pixel(image: RgbImage, x: number, y: number): Rgb {
  const i = (y * image.width + x) * 3;
  return [image.data[i]!, image.data[i + 1]!, image.data[i + 2]!];
}

function assertNear(actual: Rgb, expected: Rgb, tolerance: number, where: string): void {
  const worst = Math.max(...actual.map((v, i) => Math.abs(v - expected[i]!)));
  assert.ok(worst <= tolerance, `${where}: got ${JSON.stringify(actual)}, expected ${JSON.stringify(expected)} ±${tolerance}`);
}

/** Raw RGB image painted by a function of (x, y). */
function paint(width: number, height: number, colourAt: (x: number, y: number) => Rgb): Buffer {
  const data = Buffer.alloc(width * height * 3);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) data.set(colourAt(x, y), (y * width + x) * 3);
  }
  return data;
}

function raw(data: Buffer, width: number, height: number, channels: 3 | 4 = 3): Sharp {
  return sharp(data, { raw: { width, height, channels } });
}

const RED: Rgb = [220, 30, 30];
const GREEN: Rgb = [30, 200, 30];
const BLUE: Rgb = [30, 30, 220];
const WHITE: Rgb = [255, 255, 255];

describe('EXIF orientation', () => {
  // Stored 48x24: a green marker in the stored top-left quadrant, the rest blue.
  const stored = paint(48, 24, (x, y) => (x < 24 && y < 12 ? GREEN : BLUE));
  // Where the stored top-left quadrant is displayed, per the EXIF definition of each tag.
  const cases: Array<{ orientation: number; width: number; height: number; markerAt: [number, number]; angle: number }> = [
    { orientation: 3, width: 48, height: 24, markerAt: [36, 18], angle: 180 },
    { orientation: 6, width: 24, height: 48, markerAt: [18, 12], angle: 90 },
    { orientation: 8, width: 24, height: 48, markerAt: [6, 36], angle: 270 },
  ];
  for (const c of cases) {
    it(`orientation ${c.orientation} is displayed ${c.width}x${c.height} with the marker moved`, async () => {
      const jpeg = await raw(stored, 48, 24).jpeg({ quality: 100 }).withMetadata({ orientation: c.orientation }).toBuffer();
      const probe = await probeImage(jpeg);
      assert.equal(probe.orientation, c.orientation);
      assert.deepEqual([probe.width, probe.height], [c.width, c.height]);

      const shown = await decodeDisplayed(jpeg);
      assert.deepEqual([shown.width, shown.height], [c.width, c.height]);
      assertNear(pixel(shown, c.markerAt[0], c.markerAt[1]), GREEN, 12, 'marker quadrant');
      // The opposite quadrant is blue.
      assertNear(pixel(shown, c.width - 1 - c.markerAt[0], c.height - 1 - c.markerAt[1]), BLUE, 12, 'opposite quadrant');

      // Cross-check against an explicit rotation of the stored pixels, without EXIF.
      const plain = await raw(stored, 48, 24).jpeg({ quality: 100 }).toBuffer();
      const rotated = await sharp(plain).rotate(c.angle).raw().toBuffer();
      let diff = 0;
      for (let i = 0; i < rotated.length; i++) diff += Math.abs(rotated[i]! - shown.data[i]!);
      assert.ok(diff / rotated.length < 1, `mean difference from an explicit ${c.angle}° rotation: ${diff / rotated.length}`);
    });
  }

  it('squash of an oriented image uses the displayed layout', async () => {
    const jpeg = await raw(stored, 48, 24).jpeg({ quality: 100 }).withMetadata({ orientation: 6 }).toBuffer();
    const out = await decodeToRgb(jpeg, { size: 32, mode: 'squash' });
    assertNear(pixel(out, 28, 4), GREEN, 16, 'marker at the top right after rotation');
    assertNear(pixel(out, 4, 28), BLUE, 16, 'bottom left');
  });
});

describe('colour spaces and channels', () => {
  it('converts a CMYK JPEG to sRGB (not its raw bands)', async () => {
    const orange: Rgb = [200, 110, 60];
    const source = paint(32, 16, (x) => (x < 8 ? orange : x < 16 ? WHITE : x < 24 ? [128, 128, 128] : [10, 10, 10]));
    const cmyk = await raw(source, 32, 16).toColourspace('cmyk').jpeg({ quality: 100 }).toBuffer();
    const probe = await probeImage(cmyk);
    assert.equal(probe.space, 'cmyk');
    assert.equal(probe.channels, 4);

    const shown = await decodeDisplayed(cmyk);
    assert.equal(shown.data.length, 32 * 16 * 3);
    // CMYK's gamut and black generation shift colours a little; hue and lightness must survive.
    const [r, g, b] = pixel(shown, 4, 8);
    assert.ok(r > g + 40 && g > b + 20 && Math.abs(r - orange[0]) < 25, `orange became ${[r, g, b]}`);
    assertNear(pixel(shown, 12, 8), WHITE, 3, 'white');
    const grey = pixel(shown, 20, 8);
    assert.ok(Math.max(...grey) - Math.min(...grey) < 10 && Math.abs(grey[0] - 128) < 25, `grey became ${grey}`);
    assert.ok(Math.max(...pixel(shown, 28, 8)) < 40, 'near-black stays dark');
  });

  it('expands greyscale to three equal channels with exact values', async () => {
    const levels = paint(16, 4, (x) => [x * 16, x * 16, x * 16]);
    const grey = await raw(levels, 16, 4).toColourspace('b-w').png().toBuffer();
    const probe = await probeImage(grey);
    assert.equal(probe.channels, 1);
    const shown = await decodeDisplayed(grey);
    for (let x = 0; x < 16; x++) assert.deepEqual(pixel(shown, x, 2), [x * 16, x * 16, x * 16]);
    const out = await decodeToRgb(grey, { size: 16, mode: 'squash' });
    assert.equal(out.data.length, 16 * 16 * 3);
    for (let y = 0; y < 16; y++) {
      for (let x = 0; x < 16; x++) {
        const [r, g, b] = pixel(out, x, y);
        assert.ok(r === g && g === b, `grey pixel (${x},${y}) has unequal channels ${[r, g, b]}`);
      }
    }
  });

  it('flattens transparency onto white by default and onto alphaColor when given', async () => {
    // Left half fully transparent (its hidden colour is red, which must not show), right half opaque blue,
    // bottom row half transparent blue.
    const rgba = Buffer.alloc(16 * 8 * 4);
    for (let y = 0; y < 8; y++) {
      for (let x = 0; x < 16; x++) {
        const alpha = x < 8 ? 0 : y === 7 ? 128 : 255;
        rgba.set([...(x < 8 ? RED : BLUE), alpha], (y * 16 + x) * 4);
      }
    }
    const png = await raw(rgba, 16, 8, 4).png().toBuffer();
    assert.equal((await probeImage(png)).hasAlpha, true);

    const onWhite = await decodeDisplayed(png);
    assert.deepEqual(pixel(onWhite, 2, 2), [...DEFAULT_ALPHA_COLOR]);
    assert.deepEqual(pixel(onWhite, 12, 2), [...BLUE]);
    const blend = (c: number, bg: number): number => (c * 128 + bg * 127) / 255;
    assertNear(pixel(onWhite, 12, 7), [blend(BLUE[0], 255), blend(BLUE[1], 255), blend(BLUE[2], 255)], 2, 'half alpha');

    const onBlack = await decodeDisplayed(png, { alphaColor: [0, 0, 0] });
    assert.deepEqual(pixel(onBlack, 2, 2), [0, 0, 0]);
    const squashed = await decodeToRgb(png, { size: 16, mode: 'squash', alphaColor: [0, 255, 0] });
    assert.deepEqual(pixel(squashed, 2, 2), [0, 255, 0]);
  });

  it('reduces a 16-bit PNG to 8 bits per channel', async () => {
    const width = 8;
    const wide = new Uint16Array(width * 2 * 3);
    for (let i = 0; i < wide.length; i++) wide[i] = (i * 2731) % 65536;
    const png = await sharp(wide, { raw: { width, height: 2, channels: 3 } }).toColourspace('rgb16').png().toBuffer();
    const probe = await probeImage(png);
    assert.equal(probe.space, 'rgb16');
    const shown = await decodeDisplayed(png);
    for (let i = 0; i < wide.length; i++) {
      assert.ok(Math.abs(shown.data[i]! - wide[i]! / 257) <= 1, `sample ${i}: ${wide[i]} -> ${shown.data[i]}`);
    }
  });

  it('reads PNG, WebP and GIF as well as JPEG', async () => {
    const source = paint(12, 12, () => [40, 90, 160]);
    for (const format of ['png', 'webp', 'gif', 'jpeg'] as const) {
      const encoded = await raw(source, 12, 12).toFormat(format, format === 'webp' ? { lossless: true } : {}).toBuffer();
      assert.equal((await probeImage(encoded)).format, format);
      const out = await decodeToRgb(encoded, { size: 6, mode: 'squash' });
      assertNear(pixel(out, 3, 3), [40, 90, 160], 6, format);
    }
  });
});

describe('resize modes', () => {
  it('squash fills the square and ignores aspect', async () => {
    const png = await raw(paint(64, 16, (x) => (x < 32 ? RED : BLUE)), 64, 16).png().toBuffer();
    const out = await decodeToRgb(png, { size: 32, mode: 'squash' });
    assert.deepEqual([out.width, out.height, out.data.length], [32, 32, 32 * 32 * 3]);
    for (const y of [0, 16, 31]) {
      assertNear(pixel(out, 4, y), RED, 2, `left at row ${y}`);
      assertNear(pixel(out, 27, y), BLUE, 2, `right at row ${y}`);
    }
  });

  it('pad keeps aspect and centres on the pad colour', async () => {
    const png = await raw(paint(32, 16, () => GREEN), 32, 16).png().toBuffer();
    const out = await decodeToRgb(png, { size: 32, mode: 'pad' });
    assert.deepEqual([out.width, out.height], [32, 32]);
    for (const y of [0, 7, 24, 31]) assert.deepEqual(pixel(out, 16, y), [...DEFAULT_PAD_COLOR], `pad row ${y}`);
    for (const y of [8, 16, 23]) assert.deepEqual(pixel(out, 16, y), [...GREEN], `image row ${y}`);

    const custom = await decodeToRgb(png, { size: 32, mode: 'pad', padColor: [1, 2, 3] });
    assert.deepEqual(pixel(custom, 0, 0), [1, 2, 3]);
  });

  it('handles a 1x1 image in both modes', async () => {
    const png = await raw(Buffer.from([10, 200, 90]), 1, 1).png().toBuffer();
    for (const mode of ['squash', 'pad'] as const) {
      const out = await decodeToRgb(png, { size: 24, mode });
      assert.equal(out.data.length, 24 * 24 * 3);
      for (const [x, y] of [[0, 0], [12, 12], [23, 23]] as const) assertNear(pixel(out, x, y), [10, 200, 90], 1, `${mode} (${x},${y})`);
    }
  });

  it('handles a very wide panorama', async () => {
    const png = await raw(paint(3000, 60, (x) => (x < 1500 ? RED : BLUE)), 3000, 60).png().toBuffer();
    const squashed = await decodeToRgb(png, { size: 64, mode: 'squash' });
    assertNear(pixel(squashed, 10, 32), RED, 2, 'squash left');
    assertNear(pixel(squashed, 54, 32), BLUE, 2, 'squash right');

    const padded = await decodeToRgb(png, { size: 64, mode: 'pad' });
    const inner = fitInside(3000, 60, 64);
    assert.deepEqual(inner, { width: 64, height: 1 });
    assert.deepEqual(pixel(padded, 10, 0), [...DEFAULT_PAD_COLOR]);
    assert.deepEqual(pixel(padded, 10, 63), [...DEFAULT_PAD_COLOR]);
    assertNear(pixel(padded, 10, 31), RED, 2, 'the one image row');
    assertNear(pixel(padded, 54, 31), BLUE, 2, 'the one image row, right');
  });

  it('any input size and target give size x size with pad borders of the pad colour', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 1, max: 200 }),
        fc.integer({ min: 1, max: 200 }),
        fc.integer({ min: 1, max: 96 }),
        fc.constantFrom('squash' as const, 'pad' as const),
        async (width, height, size, mode) => {
          const png = await raw(paint(width, height, () => [200, 40, 90]), width, height).png().toBuffer();
          const out = await decodeToRgb(png, { size, mode, padColor: [0, 0, 0] });
          assert.deepEqual([out.width, out.height, out.data.length], [size, size, size * size * 3]);
          const inner = mode === 'pad' ? fitInside(width, height, size) : { width: size, height: size };
          const left = Math.floor((size - inner.width) / 2);
          const top = Math.floor((size - inner.height) / 2);
          for (let y = 0; y < size; y++) {
            for (let x = 0; x < size; x++) {
              const inside = x >= left && x < left + inner.width && y >= top && y < top + inner.height;
              assertNear(pixel(out, x, y), inside ? [200, 40, 90] : [0, 0, 0], 1, `${width}x${height}->${size} ${mode} (${x},${y})`);
            }
          }
        },
      ),
      { numRuns: 25, seed: 7 },
    );
  });

  it('the one-pass reducing path gives the same pixels as the general path', async () => {
    const png = await raw(paint(150, 90, (x, y) => [(x * 7) % 256, (y * 11) % 256, (x * y) % 256]), 150, 90).png().toBuffer();
    const shown = await decodeDisplayed(png);
    for (const mode of ['squash', 'pad'] as const) {
      const fast = await decodeToRgb(png, { size: 64, mode, padColor: [9, 9, 9] });
      const layout = mode === 'squash' ? { width: 64, height: 64 } : fitInside(150, 90, 64);
      const scaled = await resizeRgb(shown, layout.width, layout.height);
      const top = Math.floor((64 - layout.height) / 2);
      for (let y = 0; y < layout.height; y++) {
        for (let x = 0; x < layout.width; x++) {
          assert.deepEqual(pixel(fast, x, y + top), pixel(scaled, x, y), `${mode} (${x},${y})`);
        }
      }
    }
  });

  it('resizeRgb keeps a constant image constant when enlarging and reducing', async () => {
    const image = { data: new Uint8Array(paint(7, 5, () => [33, 66, 99])), width: 7, height: 5 };
    for (const [w, h] of [[21, 3], [3, 20], [7, 5], [50, 50], [1, 1]] as const) {
      const out = await resizeRgb(image, w, h);
      assert.deepEqual([out.width, out.height], [w, h]);
      for (let i = 0; i < out.data.length; i += 3) assertNear([out.data[i]!, out.data[i + 1]!, out.data[i + 2]!], [33, 66, 99], 1, `${w}x${h}`);
    }
  });
});

describe('prepareImage', () => {
  it('writes a size x size sRGB JPEG without orientation, close to decodeToRgb', async () => {
    const stored = paint(90, 40, (x, y) => [(x * 3) % 256, (y * 6) % 256, 120]);
    const jpeg = await raw(stored, 90, 40).jpeg({ quality: 95 }).withMetadata({ orientation: 6 }).toBuffer();
    const options = { size: 48, mode: 'squash' as const };
    const out = await prepareImage(jpeg, options);
    const probe = await probeImage(out);
    assert.equal(probe.format, 'jpeg');
    assert.deepEqual([probe.width, probe.height, probe.channels, probe.space], [48, 48, 3, 'srgb']);
    assert.equal(probe.orientation, undefined);
    const expected = await decodeToRgb(jpeg, options);
    const decoded = await sharp(out).raw().toBuffer();
    let diff = 0;
    for (let i = 0; i < decoded.length; i++) diff += Math.abs(decoded[i]! - expected.data[i]!);
    assert.ok(diff / decoded.length < 2, `mean JPEG error ${diff / decoded.length}`);
    const lowQuality = await prepareImage(jpeg, { ...options, quality: 20 });
    assert.ok(lowQuality.length < out.length, 'quality option is applied');
  });
});

describe('bad input', () => {
  const good = raw(paint(64, 64, () => [1, 2, 3]), 64, 64).jpeg().toBuffer();
  const options = { size: 8, mode: 'squash' as const };

  it('names what is wrong', async () => {
    const jpeg = await good;
    await assert.rejects(decodeToRgb(Buffer.alloc(0), options), /empty/);
    await assert.rejects(decodeToRgb(Buffer.from('not an image at all'), options), /cannot (read image header|decode image): .*unsupported image format/);
    await assert.rejects(prepareImage(jpeg.subarray(0, Math.floor(jpeg.length / 2)), options), /cannot (read image header|decode image): .*(premature end|truncated|corrupt)/i);
    await assert.rejects(probeImage(Buffer.from([0xff, 0xd8, 0xff])), /cannot read image header/);
    await assert.rejects(decodeToRgb(jpeg, { size: 0, mode: 'squash' }), /image size must be an integer/);
    await assert.rejects(decodeToRgb(jpeg, { size: 8, mode: 'crop' as 'pad' }), /resize mode must be 'squash' or 'pad'/);
    await assert.rejects(prepareImage(jpeg, { ...options, quality: 0 }), /JPEG quality/);
    await assert.rejects(decodeToRgb(jpeg, { ...options, padColor: [0, 0, 256] }), /padColor must be three integers/);
  });
});
