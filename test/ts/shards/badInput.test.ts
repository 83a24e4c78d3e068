// The bad-input zoo: every kind of bad sample or bad file is reported with the right reason and
// key, and every good sample around it is still read.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { buildTar, makeImage, readAll, goodKeys, badList, sampleMembers, withTempDir, writeTar, headerOffsets, type RawMember } from './fixtures.js';
import { deriveUid } from '../../../src/shards/keys.js';

async function zooMembers(): Promise<{ members: RawMember[]; truncatedJpegKey: string }> {
  const jpg = await makeImage('jpg', 40, 30, 1);
  const png = await makeImage('png', 20, 10, 2);
  const webp = await makeImage('webp', 24, 16, 3);
  const cutJpeg = jpg.subarray(0, Math.floor(jpg.length * 0.6));
  const m: RawMember[] = [
    ...sampleMembers('g0', jpg),
    ...sampleMembers('c1', Buffer.from('this is not an image at all')),
    ...sampleMembers('g1', png, 'png'),
    ...sampleMembers('t1', cutJpeg),
    ...sampleMembers('g2', webp, 'webp'),
    { name: 'mc.jpg', data: jpg },
    { name: 'mc.json', data: '{}' },
    ...sampleMembers('ec', jpg, 'jpg', ''),
    ...sampleMembers('wc', jpg, 'jpg', ' \n\t '),
    { name: 'mj.jpg', data: jpg },
    { name: 'mj.txt', data: 'no json here' },
    { name: 'ij.jpg', data: jpg },
    { name: 'ij.json', data: '{not json' },
    { name: 'ij.txt', data: 'bad json' },
    ...sampleMembers('ja', jpg, 'jpg', 'json is an array', [1, 2]),
    ...sampleMembers('iu', jpg, 'jpg', 'bad uid', { uid: 'ABCDEF' }),
    ...sampleMembers('d.x', jpg),
    ...sampleMembers('g3', jpg, 'jpg', 'good with uid', { uid: '0123456789abcdef0123456789abcdef' }),
    ...sampleMembers('g0', jpg, 'jpg', 'second g0'),
    { name: 'mi.json', data: '{}' },
    { name: 'mi.txt', data: 'no image' },
    { name: 'ti.jpg', data: jpg },
    { name: 'ti.json', data: '{}' },
    { name: 'ti.png', data: png },
    { name: 'ti.txt', data: 'two images' },
    ...sampleMembers('pj', png, 'jpg'),
    { name: 'iv.jpg', data: jpg },
    { name: 'iv.json', data: '{}' },
    { name: 'iv.txt', data: Buffer.from([0x61, 0xff, 0xfe, 0x62]) },
    { name: 'README', data: 'a member without an extension' },
    { name: 'g4.JPEG', data: jpg },
    { name: 'g4.json', data: '{}' },
    { name: 'g4.txt', data: 'upper-case .JPEG is still an image' },
    ...sampleMembers('dir/g5', png, 'png'),
  ];
  return { members: m, truncatedJpegKey: 't1' };
}

const EXPECTED_BAD_CHEAP: Array<[string, string | null]> = [
  ['corrupt_image', 'c1'],
  ['missing_caption', 'mc'],
  ['empty_caption', 'ec'],
  ['empty_caption', 'wc'],
  ['invalid_json', 'ij'],
  ['invalid_json', 'ja'],
  ['invalid_uid', 'iu'],
  ['dotted_key', 'd.x'],
  ['duplicate_key', 'g0'],
  ['missing_image', 'mi'],
  ['multiple_images', 'ti'],
  ['corrupt_image', 'pj'],
  ['invalid_caption', 'iv'],
  ['missing_extension', null],
];

test('bad samples are skipped with reason and key; good samples around them are kept (headers only)', async () => {
  await withTempDir(async (dir) => {
    const { members } = await zooMembers();
    const path = await writeTar(dir, '00000000.tar', members);
    const items = await readAll([path]);
    assert.deepEqual(badList(items), EXPECTED_BAD_CHEAP);
    // Without a full decode the truncated JPEG's header is intact, so it is trusted.
    assert.deepEqual(goodKeys(items), ['g0', 'g1', 't1', 'g2', 'mj', 'g3', 'g4', 'dir/g5']);
    for (const item of items) if (item.kind === 'bad') assert.equal(item.bad.shard, path);
  });
});

test('a full decode also catches the truncated JPEG, in the same order', async () => {
  await withTempDir(async (dir) => {
    const { members } = await zooMembers();
    const path = await writeTar(dir, '00000000.tar', members);
    const items = await readAll([path], { decodeImages: true, decodeConcurrency: 3 });
    const expected = [...EXPECTED_BAD_CHEAP];
    expected.splice(1, 0, ['truncated_image', 't1']);
    assert.deepEqual(badList(items), expected);
    assert.deepEqual(goodKeys(items), ['g0', 'g1', 'g2', 'mj', 'g3', 'g4', 'dir/g5']);
  });
});

test('good samples carry uid, caption, json and image size', async () => {
  await withTempDir(async (dir) => {
    const { members } = await zooMembers();
    const path = await writeTar(dir, '00000007.tar', members);
    const samples = (await readAll([path], { decodeImages: true })).flatMap((i) => (i.kind === 'sample' ? [i.sample] : []));
    const byKey = new Map(samples.map((s) => [s.key, s]));
    assert.equal(byKey.get('g3')!.uid, '0123456789abcdef0123456789abcdef');
    assert.equal(byKey.get('g0')!.uid, deriveUid(path, 'g0'));
    assert.equal(byKey.get('g0')!.caption, 'a caption for g0');
    assert.deepEqual(byKey.get('g0')!.json, { note: 'g0' });
    assert.deepEqual(byKey.get('g1')!.imageInfo, { width: 20, height: 10 });
    assert.deepEqual(byKey.get('g2')!.imageInfo, { width: 24, height: 16 });
    assert.equal(byKey.get('g4')!.image.ext, 'jpg');
    // image + .txt and no .json: a good sample with {} metadata and the derived uid
    assert.deepEqual(byKey.get('mj')!.json, {});
    assert.equal(byKey.get('mj')!.uid, deriveUid(path, 'mj'));
    assert.equal(byKey.get('mj')!.caption, 'no json here');
  });
});

test('a repeated sample right after itself is a duplicate key', async () => {
  await withTempDir(async (dir) => {
    const jpg = await makeImage('jpg', 8, 8);
    const path = await writeTar(dir, 'a.tar', [...sampleMembers('a', jpg), ...sampleMembers('a', jpg), ...sampleMembers('b', jpg)]);
    const items = await readAll([path]);
    assert.deepEqual(goodKeys(items), ['a', 'b']);
    assert.deepEqual(badList(items), [['duplicate_key', 'a']]);
  });
});

test('non-tar, zero-byte and gzipped files are reported once each and reading goes on', async () => {
  await withTempDir(async (dir) => {
    const jpg = await makeImage('jpg', 8, 8);
    const first = await writeTar(dir, '00000000.tar', [...sampleMembers('a', jpg), ...sampleMembers('b', jpg)]);
    const text = join(dir, '00000001.tar');
    await writeFile(text, 'hello, I am a text file and not a tar archive\n'.repeat(40));
    const empty = join(dir, '00000002.tar');
    await writeFile(empty, '');
    const gz = join(dir, '00000003.tar');
    await writeFile(gz, gzipSync(await buildTar(sampleMembers('z', jpg))));
    const last = await writeTar(dir, '00000004.tar', sampleMembers('c', jpg));
    const items = await readAll([first, text, empty, gz, last]);
    assert.deepEqual(goodKeys(items), ['a', 'b', 'c']);
    const bad = items.flatMap((i) => (i.kind === 'bad' ? [i.bad] : []));
    assert.deepEqual(bad.map((b) => [b.reason, b.key, b.shard]), [
      ['not_a_tar', null, text],
      ['not_a_tar', null, empty],
      ['not_a_tar', null, gz],
    ]);
    assert.match(bad[1]!.detail, /empty/);
  });
});

test('an empty but valid tar has no samples and no bad ones', async () => {
  await withTempDir(async (dir) => {
    const path = await writeTar(dir, 'empty.tar', []);
    assert.deepEqual(await readAll([path]), []);
  });
});

test('a garbage header in the middle keeps the samples before it (corrupt_tar)', async () => {
  await withTempDir(async (dir) => {
    const jpg = await makeImage('jpg', 8, 8);
    const good = await buildTar([...sampleMembers('a', jpg), ...sampleMembers('b', jpg), ...sampleMembers('c', jpg)]);
    // Overwrite the header of b's first member with garbage.
    const offset = headerOffsets(good)[3]!;
    const broken = Buffer.from(good);
    broken.fill(0x41, offset, offset + 512);
    const path = join(dir, 'x.tar');
    await writeFile(path, broken);
    const items = await readAll([path]);
    assert.deepEqual(goodKeys(items), ['a']);
    assert.deepEqual(badList(items), [['corrupt_tar', null]]);
  });
});
