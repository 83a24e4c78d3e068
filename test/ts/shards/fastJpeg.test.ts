// The fast JPEG path (wasm mozjpeg in worker threads) may only speed the full decode up: on any
// input, decodeImage must give exactly what sharp alone gives (verdict, reason, detail, size).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import sharp, { type JpegOptions } from 'sharp';
import { makeImage } from './fixtures.js';
import { decodeImage, decodeWithSharp, type DecodeResult } from '../../../src/shards/decode.js';
import { createFastJpegDecoder, endsWithEoi, FAST_JPEG_MAX_PIXELS } from '../../../src/shards/mozjpeg.js';
import { DecodePool } from '../../../src/shards/decodePool.js';

const fastDecoder = createFastJpegDecoder();

async function jpeg(width: number, height: number, seed: number, options: JpegOptions = {}, grey = false): Promise<Buffer> {
  const rgb = await makeImage('png', width, height, seed);
  const img = sharp(rgb);
  return (grey ? img.greyscale() : img).jpeg({ quality: 80, ...options }).toBuffer();
}

test('good JPEGs of any shape pass the fast path with the size sharp reports', async () => {
  const decode = await fastDecoder;
  await fc.assert(
    fc.asyncProperty(
      fc.integer({ min: 1, max: 300 }),
      fc.integer({ min: 1, max: 300 }),
      fc.integer({ min: 1, max: 1e6 }),
      fc.record({ progressive: fc.boolean(), chromaSubsampling: fc.constantFrom('4:2:0', '4:4:4'), quality: fc.integer({ min: 10, max: 100 }) }),
      fc.boolean(),
      async (w, h, seed, options, grey) => {
        const data = await jpeg(w, h, seed, options, grey);
        const fast = await decode(data);
        const slow = await decodeWithSharp(data);
        assert.equal(slow.ok, true);
        assert.deepEqual(fast, slow);
        assert.deepEqual(await decodeImage(data), slow);
      },
    ),
    { numRuns: 40 },
  );
});

test('a cut JPEG never passes the fast path, and decodeImage says exactly what sharp says', async () => {
  const decode = await fastDecoder;
  const full = await jpeg(64, 48, 7);
  const cuts = new Set<number>();
  for (let n = 0; n < full.length; n += 37) cuts.add(n);
  for (let n = Math.max(0, full.length - 12); n < full.length; n++) cuts.add(n);
  for (const n of cuts) {
    const cut = full.subarray(0, n);
    const fast = await decode(cut);
    assert.equal(fast.ok, false, `cut at ${n} of ${full.length}`);
    assert.deepEqual(await decodeImage(cut), await decodeWithSharp(cut), `cut at ${n}`);
  }
  // The end-of-data case the brief is about: libjpeg only warns there, sharp reports truncation.
  const halfway = full.subarray(0, full.length >> 1);
  const verdict = await decodeImage(halfway);
  assert.equal(verdict.ok, false);
  if (!verdict.ok) assert.equal(verdict.reason, 'truncated_image');
});

test('bytes changed anywhere: decodeImage agrees with sharp', async () => {
  const base = await jpeg(80, 60, 3);
  await fc.assert(
    fc.asyncProperty(fc.array(fc.tuple(fc.nat(base.length - 1), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 4 }), async (edits) => {
      const data = Buffer.from(base);
      for (const [at, value] of edits) data[at] = value;
      assert.deepEqual(await decodeImage(data), await decodeWithSharp(data), JSON.stringify(edits));
    }),
    { numRuns: 120 },
  );
});

test('trailing bytes after EOI and warnings go to sharp; the decoder recovers after a fatal error', async () => {
  const decode = await fastDecoder;
  const good = await jpeg(30, 20, 9);
  assert.equal(endsWithEoi(good), true);
  for (const tail of [Buffer.alloc(4), Buffer.from('junk')]) {
    const padded = Buffer.concat([good, tail]);
    assert.equal(endsWithEoi(padded), false);
    assert.equal((await decode(padded)).ok, false);
    assert.deepEqual(await decodeImage(padded), await decodeWithSharp(padded));
  }
  // A frame header followed by garbage: libjpeg exits, which leaves its wasm instance unusable.
  const garbage = Buffer.concat([good.subarray(0, 200), Buffer.alloc(64, 0x55), Buffer.from([0xff, 0xd9])]);
  for (let i = 0; i < 3; i++) {
    assert.equal((await decode(garbage)).ok, false);
    assert.deepEqual(await decode(good), { ok: true, width: 30, height: 20 });
  }
  assert.deepEqual(await decodeImage(garbage), await decodeWithSharp(garbage));
});

test('images over the pixel cap are left to sharp', async () => {
  const decode = await fastDecoder;
  const side = Math.ceil(Math.sqrt(FAST_JPEG_MAX_PIXELS)) + 1;
  const big = await sharp({ create: { width: side, height: side, channels: 3, background: '#808080' } }).jpeg().toBuffer();
  const fast = await decode(big);
  assert.equal(fast.ok, false);
  if (!fast.ok) assert.match(fast.why, /larger than/);
});

function mixedInputs(): Promise<Buffer[]> {
  return Promise.all(
    Array.from({ length: 36 }, async (_, i) => {
      const img = i % 6 === 5 ? await makeImage(i % 4 === 1 ? 'png' : 'webp', 10 + i, 12, i) : await jpeg(10 + i, 20 + (i % 7), i);
      if (i % 5 === 3) return img.subarray(0, img.length - 10);
      if (i % 7 === 4) return Buffer.concat([img.subarray(0, 40), Buffer.alloc(30, 7)]);
      return img;
    }),
  );
}

test('the pool gives the in-thread fast verdict for every job, in order, and survives being closed mid-flight', async () => {
  const decode = await fastDecoder;
  const inputs = await mixedInputs();
  const inThread = [];
  for (const d of inputs) inThread.push(await decode(d));
  assert.ok(inThread.some((r) => r.ok) && inThread.some((r) => !r.ok));
  const pool = new DecodePool({ workers: 2, batchSize: 4 });
  try {
    const fromPool = await Promise.all(inputs.map((d) => pool.decode(d)));
    assert.deepEqual(fromPool.map((r) => r.ok), inThread.map((r) => r.ok));
    assert.deepEqual(fromPool.filter((r) => r.ok), inThread.filter((r) => r.ok));
    assert.ok(inputs.every((d) => d.length > 0), "the caller's bytes are copied, not detached");
  } finally {
    await pool.close();
  }
  const closing = new DecodePool({ workers: 2, batchSize: 2 });
  const pending = inputs.map((d) => closing.decode(d));
  await closing.close();
  assert.equal((await Promise.all(pending)).length, inputs.length);
});

test('many images at once, bad ones among them: each verdict is what sharp says for it alone', async () => {
  const inputs = await mixedInputs();
  const alone: DecodeResult[] = [];
  for (const d of inputs) alone.push(await decodeWithSharp(d));
  assert.ok(alone.filter((r) => !r.ok).length >= 8);
  for (let round = 0; round < 3; round++) {
    assert.deepEqual(await Promise.all(inputs.map((d) => decodeWithSharp(d))), alone);
    assert.deepEqual(await Promise.all(inputs.map((d) => decodeImage(d))), alone);
  }
});
