// prepareImageOrSkip: the only place pass 2 turns bytes into a packed JPEG. Bad bytes give a
// reason (the shard reader's names), never an exception, and the same reason however many
// prepares run at once (libvips' shared error buffer must not leak between them).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { imageHeaderVerdict, prepareImageOrSkip } from '../../../../src/pack/documentImage.js';
import { readImageHeader } from '../../../../src/shards/imageHeader.js';
import { makeImageKit, pngBomb, tinyConfig } from './fixtures.js';

test('prepareImageOrSkip: good images become JPEGs; cut, bomb, empty and non-image bytes are reasons', async () => {
  const kit = await makeImageKit();
  const config = tinyConfig('pretrain');
  const good = await prepareImageOrSkip(config, kit.good[0]!);
  assert.ok(good.ok);
  const h = readImageHeader(good.jpeg);
  assert.ok(h.ok && h.format === 'jpg' && h.width === config.model.vision.image_size);

  const reasons = async (data: Buffer) => {
    const r = await prepareImageOrSkip(config, data);
    assert.equal(r.ok, false);
    return r.ok ? null : r.reason;
  };
  assert.equal(await reasons(kit.cut), 'truncated_image');
  assert.equal(await reasons(kit.bomb), 'image_too_large');
  assert.equal(await reasons(Buffer.alloc(0)), 'corrupt_image');
  assert.equal(await reasons(kit.text), 'corrupt_image');
  // A JPEG's first 20 bytes: the header ends before the frame.
  assert.equal(await reasons(kit.good[0]!.subarray(0, 20)), 'corrupt_image');
});

test('imageHeaderVerdict: the pixel limit is MAX_IMAGE_PIXELS, read from the header alone', () => {
  const at = imageHeaderVerdict(pngBomb(9459, 9459)); // 89,472,681 pixels: under the limit
  assert.ok(at.ok);
  const over = imageHeaderVerdict(pngBomb(9460, 9460)); // 89,491,600: over
  assert.ok(!over.ok && over.reason === 'image_too_large' && /89491600 pixels/.test(over.detail));
});

test('prepareImageOrSkip: reasons do not depend on what else is being prepared at the time', async () => {
  const kit = await makeImageKit();
  const config = tinyConfig('pretrain');
  const inputs = Array.from({ length: 24 }, (_, i) => (i % 3 === 0 ? kit.cut : i % 3 === 1 ? kit.good[i % 2]! : Buffer.concat([kit.good[2]!.subarray(0, 400), Buffer.alloc(50)])));
  const alone: string[] = [];
  for (const x of inputs) {
    const r = await prepareImageOrSkip(config, x);
    alone.push(r.ok ? 'ok' : `${r.reason}: ${r.detail}`);
  }
  const together = (await Promise.all(inputs.map((x) => prepareImageOrSkip(config, x)))).map((r) => (r.ok ? 'ok' : `${r.reason}: ${r.detail}`));
  assert.deepEqual(together, alone);
  assert.ok(alone.some((r) => r.startsWith('truncated_image')));
});
