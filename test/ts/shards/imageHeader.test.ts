// The cheap header reader agrees with sharp (libvips) on format and size for every format.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import sharp from 'sharp';
import { readImageHeader } from '../../../src/shards/imageHeader.js';
import { decodeImage } from '../../../src/shards/decode.js';
import { makeImage } from './fixtures.js';

test('format and size from the header match sharp (property over sizes and encodings)', async () => {
  await fc.assert(
    fc.asyncProperty(
      fc.integer({ min: 1, max: 300 }),
      fc.integer({ min: 1, max: 300 }),
      fc.constantFrom('jpg', 'png', 'webp', 'webp-lossless', 'webp-alpha', 'jpg-progressive') ,
      async (width, height, kind) => {
        const ext = kind.split('-')[0] as 'jpg' | 'png' | 'webp';
        let data = await makeImage(ext, width, height, width * 7 + height, { lossless: kind === 'webp-lossless', alpha: kind === 'webp-alpha' });
        if (kind === 'jpg-progressive') data = await sharp(data).jpeg({ progressive: true }).toBuffer();
        const header = readImageHeader(data);
        const meta = await sharp(data).metadata();
        assert.ok(header.ok, JSON.stringify(header));
        assert.equal(header.format, meta.format === 'jpeg' ? 'jpg' : meta.format);
        assert.equal(header.width, meta.width);
        assert.equal(header.height, meta.height);
      },
    ),
    { numRuns: 60 },
  );
});

test('garbage and cut-short headers are rejected, never thrown', () => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 64 }), (bytes) => {
      const h = readImageHeader(bytes);
      if (h.ok) assert.ok(h.width > 0 && h.height > 0);
    }),
  );
  assert.equal(readImageHeader(Buffer.from([0xff, 0xd8, 0xff])).ok, false);
  assert.equal(readImageHeader(Buffer.from('RIFF\0\0\0\0WEBP')).ok, false);
});

test('a header cut anywhere before the size is rejected', async () => {
  for (const ext of ['jpg', 'png', 'webp'] as const) {
    const data = await makeImage(ext, 33, 17);
    const full = readImageHeader(data);
    assert.ok(full.ok);
    let firstOk = -1;
    for (let n = 0; n <= Math.min(data.length, 400); n++) {
      const h = readImageHeader(data.subarray(0, n));
      if (h.ok) {
        firstOk = firstOk < 0 ? n : firstOk;
        assert.deepEqual(h, full, `${ext} cut at ${n}`);
      } else assert.equal(firstOk, -1, `${ext}: ok at ${firstOk} but not at ${n}`);
    }
    assert.ok(firstOk > 0);
  }
});

test('full decode: a good image passes, a truncated JPEG and garbage fail with their reasons', async () => {
  const jpg = await makeImage('jpg', 64, 48);
  assert.deepEqual(await decodeImage(jpg), { ok: true, width: 64, height: 48 });
  const cut = await decodeImage(jpg.subarray(0, Math.floor(jpg.length * 0.7)));
  assert.equal(cut.ok, false);
  assert.equal(!cut.ok && cut.reason, 'truncated_image');
  const junk = await decodeImage(Buffer.from('nothing to see'));
  assert.equal(!junk.ok && junk.reason, 'corrupt_image');
  const png = await makeImage('png', 64, 48);
  const pngCut = await decodeImage(png.subarray(0, Math.floor(png.length * 0.6)));
  assert.equal(pngCut.ok, false);
});
