// Hostile names and oversized images are bad samples at read time (unsafe_key, image_too_large),
// judged by the same rule the writer applies, so they can never abort a reshard later.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { badList, goodKeys, makeImage, readAll, sampleMembers, withTempDir, writeTar, type RawMember } from './fixtures.js';
import { pngHeaderOnly } from './hugeImage.js';
import { extensionProblem, keyProblem, MAX_KEY_BYTES } from '../../../src/shards/keys.js';
import { ShardWriter } from '../../../src/shards/writer.js';
import { MAX_IMAGE_PIXELS } from '../../../src/images/image.js';

export const UNSAFE_KEYS = [
  '../../x',
  '/abs/x',
  'a\\b',
  'tab\there',
  'nl\nx',
  'a//b',
  'a/./b',
  'trailing/',
  'k'.repeat(MAX_KEY_BYTES + 1),
  `${'d'.repeat(201)}/k`,
];

test('every key the writer refuses is read as unsafe_key, and the good samples around it are kept', async () => {
  await withTempDir(async (dir) => {
    const jpg = await makeImage('jpg', 8, 8);
    const members: RawMember[] = [...sampleMembers('g0', jpg)];
    for (const key of UNSAFE_KEYS) members.push(...sampleMembers(key, jpg), ...sampleMembers(`g${members.length}`, jpg));
    const path = await writeTar(dir, '00000000.tar', members);
    const items = await readAll([path]);
    const bad = items.flatMap((i) => (i.kind === 'bad' ? [i.bad] : []));
    assert.deepEqual(bad.map((b) => [b.reason, b.key]), UNSAFE_KEYS.map((k) => ['unsafe_key', k]));
    assert.equal(goodKeys(items).length, UNSAFE_KEYS.length + 1);
    for (const b of bad) assert.ok(b.detail.length > 0);
    for (const key of UNSAFE_KEYS) assert.notEqual(keyProblem(key), null, key);
  });
});

test('the writer refuses exactly the keys keyProblem names (one rule for reader and writer)', async () => {
  await withTempDir(async (dir) => {
    const jpg = await makeImage('jpg', 8, 8);
    const writer = new ShardWriter({ dir });
    for (const key of [...UNSAFE_KEYS, 'a.b']) {
      await assert.rejects(writer.write({ key, image: { ext: 'jpg', data: jpg }, caption: 'c', json: {} }), (err: Error) => err.message.includes(keyProblem(key)!));
    }
    // A dot in a folder part reads back as the same key, so it is allowed.
    assert.equal(keyProblem('v1.2/k'), null);
    await writer.write({ key: 'v1.2/k', image: { ext: 'jpg', data: jpg }, caption: 'c', json: {} });
    const { shards } = await writer.close();
    assert.deepEqual(goodKeys(await readAll(shards)), ['v1.2/k']);
  });
});

test('a member extension the writer cannot store makes its sample unsafe_key', async () => {
  await withTempDir(async (dir) => {
    const jpg = await makeImage('jpg', 8, 8);
    const path = await writeTar(dir, '00000000.tar', [
      ...sampleMembers('a', jpg),
      ...sampleMembers('b', jpg),
      { name: 'b.np\\y', data: 'x' },
      ...sampleMembers('c', jpg),
      { name: 'c.n\u0001py', data: 'x' },
      ...sampleMembers('d', jpg),
    ]);
    const items = await readAll([path]);
    assert.deepEqual(badList(items), [['unsafe_key', 'b'], ['unsafe_key', 'c']]);
    assert.deepEqual(goodKeys(items), ['a', 'd']);
    assert.notEqual(extensionProblem('np\\y'), null);
  });
});

test('an image whose header declares more than MAX_IMAGE_PIXELS is image_too_large, before any decode', async () => {
  await withTempDir(async (dir) => {
    const jpg = await makeImage('jpg', 8, 8);
    const side = Math.ceil(Math.sqrt(MAX_IMAGE_PIXELS + 1));
    const path = await writeTar(dir, '00000000.tar', [
      ...sampleMembers('a', jpg),
      ...sampleMembers('huge', pngHeaderOnly(side, side), 'png'),
      ...sampleMembers('edge', pngHeaderOnly(MAX_IMAGE_PIXELS, 1), 'png'),
      ...sampleMembers('b', jpg),
    ]);
    const cheap = await readAll([path]);
    assert.deepEqual(badList(cheap), [['image_too_large', 'huge']]);
    assert.deepEqual(goodKeys(cheap), ['a', 'edge', 'b']);
    // With a full decode the huge one is still refused from its header (not a decoder error).
    const decoded = await readAll([path], { decodeImages: true });
    assert.deepEqual(badList(decoded)[0], ['image_too_large', 'huge']);
  });
});

test('MAX_IMAGE_PIXELS is the value shared with Python in vectors/limits.json', async () => {
  const limits = JSON.parse(await readFile(join(process.cwd(), 'vectors', 'limits.json'), 'utf8')) as { max_image_pixels: number };
  assert.equal(MAX_IMAGE_PIXELS, limits.max_image_pixels);
});

test('an image and a caption without .json is a good sample with {} metadata and the derived uid', async () => {
  await withTempDir(async (dir) => {
    const jpg = await makeImage('jpg', 8, 8);
    const path = await writeTar(dir, '00000003.tar', [
      { name: 'k1.jpg', data: jpg },
      { name: 'k1.txt', data: 'a cat' },
      ...sampleMembers('k2', jpg),
    ]);
    const items = await readAll([path]);
    assert.deepEqual(badList(items), []);
    const first = items[0]!;
    assert.ok(first.kind === 'sample');
    assert.deepEqual(first.sample.json, {});
    assert.equal(first.sample.caption, 'a cat');
  });
});
