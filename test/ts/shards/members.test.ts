// Members beyond image, caption and json: the reader hands them over on request (members: true)
// and the writer copies them (extra) and the stored image/txt/json bytes (stored) unchanged.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import fc from 'fast-check';
import { ShardWriter, type SampleToWrite } from '../../../src/shards/writer.js';
import { readShardStats } from '../../../src/shards/stats.js';
import type { ImageExt, Sample, SampleMember } from '../../../src/shards/types.js';
import { extraExtArb, makeImage, readAll, tarFileMembers, withTempDir, writeTar } from './fixtures.js';

const BOM = Buffer.from([0xef, 0xbb, 0xbf]);
const uidA = '0123456789abcdef0123456789abcdef';
const uidB = 'fedcba9876543210fedcba9876543210';

function samplesOf(items: Awaited<ReturnType<typeof readAll>>): Sample[] {
  return items.flatMap((i) => (i.kind === 'sample' ? [i.sample] : []));
}

function binary(n: number, seed: number): Buffer {
  return Buffer.from(Array.from({ length: n }, (_, i) => (i * 31 + seed * 7) & 0xff));
}

test('the reader gives every member as stored only with members: true, without the dotted-key ones', async () => {
  const jpg = await makeImage('jpg', 8, 8, 1);
  const webp = await makeImage('webp', 8, 8, 2);
  const npy = binary(300, 1);
  await withTempDir(async (dir) => {
    const a = [
      { name: 'd/a.cls', data: '7' },
      { name: 'd/a.JPEG', data: jpg },
      { name: 'd/a.json', data: JSON.stringify({ uid: uidA }) },
      { name: 'd/a.txt', data: Buffer.concat([BOM, Buffer.from('caption a')]) },
      { name: 'd/a.emb.npy', data: npy },
      { name: 'd/a.b.jpg', data: jpg }, // key "d/a.b" meant: reported apart, not a member of "d/a"
    ];
    const b = [
      { name: 'b.json', data: '{}' },
      { name: 'b.txt', data: 'caption b' },
      { name: 'b.webp', data: webp },
    ];
    const path = await writeTar(dir, '00000000.tar', [...a, ...b]);
    for (const decodeImages of [false, true]) {
      const items = await readAll([path], { members: true, decodeImages });
      assert.deepEqual(items.filter((i) => i.kind === 'bad').map((i) => i.kind === 'bad' && i.bad.reason), ['dotted_key']);
      const [sa, sb] = samplesOf(items);
      assert.equal(sa!.image.ext, 'jpg');
      assert.equal(sa!.caption, 'caption a');
      const expectA = a.slice(0, 5).map((m) => ({ ext: m.name.slice('d/a.'.length), data: Buffer.from(m.data) }));
      assert.deepEqual(sa!.members, expectA);
      assert.deepEqual(sb!.members, b.map((m) => ({ ext: m.name.slice(2), data: Buffer.from(m.data) })));
    }
    // Other callers see the samples as before.
    for (const s of samplesOf(await readAll([path]))) assert.ok(!('members' in s));
  });
});

test('the writer copies extra members and the stored image/txt/json bytes unchanged, sorted by extension', async () => {
  const jpg = await makeImage('jpg', 12, 9, 3);
  const npy = binary(1000, 2);
  const storedJson = Buffer.from(`{ "uid": "${uidA}",  "url": "http://x/\\u00e9" }\n`);
  const txt = Buffer.concat([BOM, Buffer.from('a caption é')]);
  const extra: SampleMember[] = [
    { ext: 'npy', data: npy },
    { ext: 'cls', data: Buffer.from('3') },
    { ext: 'Caption', data: Buffer.from('second caption') },
    { ext: 'emb.npz', data: binary(77, 5) },
    { ext: 'empty', data: Buffer.alloc(0) },
  ];
  await withTempDir(async (dir) => {
    const writer = new ShardWriter({ dir });
    await writer.write({
      key: 'k', uid: uidA, image: { ext: 'jpg', data: jpg }, caption: 'a caption é', json: JSON.parse(storedJson.toString()),
      stored: { imageExt: 'jpeg', txt, json: storedJson }, extra,
    });
    const { shards } = await writer.close();
    const members = await tarFileMembers(shards[0]!);
    const expected = [...extra, { ext: 'jpeg', data: jpg }, { ext: 'txt', data: txt }, { ext: 'json', data: storedJson }]
      .map((m) => ({ name: `k.${m.ext}`, data: m.data }))
      .sort((x, y) => (x.name < y.name ? -1 : 1));
    assert.deepEqual(members, expected);
    const [back] = samplesOf(await readAll(shards, { members: true }));
    assert.equal(back!.uid, uidA);
    assert.deepEqual(back!.members, expected.map((m) => ({ ext: m.name.slice(2), data: m.data })));
    const stats = await readShardStats(shards[0]!.replace(/\.tar$/, '_stats.json'));
    assert.equal(stats!.successes, 1);
    assert.equal(stats!.loom.tar_bytes, (await readFile(shards[0]!)).length);
    assert.deepEqual(stats!.loom.image_formats, { jpg: 1 });
    assert.deepEqual(stats!.loom.caption_chars, { min: 11, max: 11, total: 11 });
  });
});

test('stored json is kept only when it is the json with this uid and key (or none); stored txt only when it is the caption', async () => {
  const png = await makeImage('png', 4, 4, 1);
  const raw = (o: object) => Buffer.from(JSON.stringify(o, null, 1));
  const cases: Array<{ name: string; sample: Omit<SampleToWrite, 'image' | 'caption'>; kept: boolean }> = [
    { name: 'uid, no key', sample: { key: 'a', json: { uid: uidA, n: 1 }, stored: { json: raw({ uid: uidA, n: 1 }) } }, kept: true },
    { name: 'uid and the same key', sample: { key: 'b', json: { key: 'b', uid: uidA }, stored: { json: raw({ key: 'b', uid: uidA }) } }, kept: true },
    { name: 'another key (a renamed copy)', sample: { key: 'c', json: { key: 'b', uid: uidA }, stored: { json: raw({ key: 'b', uid: uidA }) } }, kept: false },
    { name: 'no uid (a derived one is added)', sample: { key: 'd', json: { n: 1 }, stored: { json: raw({ n: 1 }) } }, kept: false },
    { name: 'uid given apart from a json without one', sample: { key: 'e', uid: uidB, json: { n: 1 }, stored: { json: raw({ n: 1 }) } }, kept: false },
    { name: 'bytes that are not this json', sample: { key: 'f', json: { uid: uidA, n: 2 }, stored: { json: raw({ uid: uidA, n: 1 }) } }, kept: false },
    { name: 'bytes that do not parse', sample: { key: 'g', json: { uid: uidA }, stored: { json: Buffer.from('{"uid":') } }, kept: false },
  ];
  await withTempDir(async (dir) => {
    const writer = new ShardWriter({ dir });
    for (const c of cases) await writer.write({ ...c.sample, image: { ext: 'png', data: png }, caption: 'same', stored: { ...c.sample.stored, txt: Buffer.from(c.kept ? 'same' : 'other') } });
    const { shards } = await writer.close();
    const members = await tarFileMembers(shards[0]!);
    const back = samplesOf(await readAll(shards));
    cases.forEach((c, i) => {
      const json = members.find((m) => m.name === `${c.sample.key}.json`)!.data;
      assert.equal(json.equals(c.sample.stored!.json!), c.kept, c.name);
      const uid = c.sample.uid ?? (c.sample.json.uid as string | undefined) ?? back[i]!.uid;
      if (!c.kept) assert.deepEqual(JSON.parse(json.toString()), { ...c.sample.json, key: c.sample.key, uid }, c.name);
      assert.equal(back[i]!.uid, uid, c.name);
      // A stored txt that is not the caption is ignored: the caption is written.
      assert.equal(members.find((m) => m.name === `${c.sample.key}.txt`)!.data.toString(), 'same', c.name);
    });
  });
});

test('the writer refuses extra members that collide with its own or would read back elsewhere, and stays usable', async () => {
  const jpg = await makeImage('jpg', 8, 8, 4);
  const good = { image: { ext: 'jpg' as const, data: jpg }, caption: 'ok', json: {} };
  const one = (ext: string, data: unknown = Buffer.from('x')) => [{ ext, data }] as SampleMember[];
  await withTempDir(async (dir) => {
    const writer = new ShardWriter({ dir });
    const refusals: Array<[SampleMember[], RegExp]> = [
      [one('json'), /"json" collides with the json member/],
      [one('TXT'), /"TXT" collides with the txt member/],
      [one('jpg'), /"jpg" collides with the image member/],
      [one('JPEG'), /"JPEG" collides with the image member/],
      [one('png'), /"png" collides with the image member/],
      [one('webp'), /collides with the image member/],
      [one('b.jpg'), /"b\.jpg" would be read back as the \.jpg of another key/],
      [one('x.TXT'), /would be read back as the \.txt of another key/],
      [[...one('npy'), ...one('NPY')], /"NPY" is given twice/],
      [one(''), /empty extension/],
      [one('a/b'), /cannot hold "\/"/],
      [one('a\nb'), /control character/],
      [one('npy', 'not a buffer'), /data must be a Buffer/],
    ];
    for (const [extra, message] of refusals) {
      await assert.rejects(writer.write({ ...good, key: 'k', extra }), (err: Error) => {
        assert.match(err.message, /^sample "k": extra member /);
        assert.match(err.message, message);
        return true;
      });
    }
    await assert.rejects(writer.write({ ...good, key: 'k', stored: { imageExt: 'png' } }), /stored image extension "png" does not name a JPG image/);
    await writer.write({ ...good, key: 'k', extra: one('jpg.npy') });
    const { shards, samples } = await writer.close();
    assert.equal(samples, 1);
    assert.deepEqual((await tarFileMembers(shards[0]!)).map((m) => m.name), ['k.jpg', 'k.jpg.npy', 'k.json', 'k.txt']);
    const stats = await readShardStats(shards[0]!.replace(/\.tar$/, '_stats.json'));
    assert.equal(stats!.successes, 1);
  });
});

test('any set of extra members comes back byte for byte, in tar order sorted by extension (property)', async () => {
  const pool: Record<ImageExt, Buffer> = { jpg: await makeImage('jpg', 6, 5, 1), png: await makeImage('png', 5, 6, 2), webp: await makeImage('webp', 7, 7, 3) };
  const spellings: Record<ImageExt, string[]> = { jpg: ['jpg', 'jpeg', 'JPG', 'Jpeg'], png: ['png', 'PNG'], webp: ['webp', 'WEBP'] };
  const sampleArb = fc.record({
    ext: fc.constantFrom<ImageExt>('jpg', 'png', 'webp'),
    spelling: fc.nat(3),
    extra: fc.uniqueArray(fc.record({ ext: extraExtArb, data: fc.uint8Array({ maxLength: 700 }) }), { selector: (m) => m.ext.toLowerCase(), maxLength: 5 }),
    indent: fc.constantFrom(undefined, 1, '\t'),
    hasUid: fc.boolean(),
  });
  await fc.assert(
    fc.asyncProperty(fc.array(sampleArb, { minLength: 1, maxLength: 6 }), fc.integer({ min: 1, max: 4 }), async (specs, perShard) => {
      await withTempDir(async (dir) => {
        const writer = new ShardWriter({ dir, samplesPerShard: perShard });
        const expected: Array<Array<{ name: string; data: Buffer }>> = [];
        for (const [i, s] of specs.entries()) {
          const key = `s${i}`;
          const json = s.hasUid ? { uid: uidA.slice(0, 30) + String(i).padStart(2, '0'), i } : { i };
          const storedJson = Buffer.from(JSON.stringify(json, null, s.indent));
          const imageExt = spellings[s.ext][s.spelling % spellings[s.ext].length]!;
          const extra = s.extra.map((m) => ({ ext: m.ext, data: Buffer.from(m.data) }));
          await writer.write({ key, image: { ext: s.ext, data: pool[s.ext] }, caption: `c${i}`, json, stored: { imageExt, json: storedJson }, extra });
          const jsonOut = s.hasUid ? storedJson : null; // without a uid the json is rewritten (checked below)
          const members = [
            ...extra.map((m) => ({ name: `${key}.${m.ext}`, data: m.data })),
            { name: `${key}.${imageExt}`, data: pool[s.ext] },
            { name: `${key}.txt`, data: Buffer.from(`c${i}`) },
            ...(jsonOut ? [{ name: `${key}.json`, data: jsonOut }] : []),
          ];
          expected.push(members);
        }
        const { shards } = await writer.close();
        assert.equal(shards.length, Math.ceil(specs.length / perShard));
        const written = (await Promise.all(shards.map(tarFileMembers))).flat();
        const byKey = (key: string) => written.filter((m) => m.name.startsWith(`${key}.`));
        specs.forEach((s, i) => {
          const got = byKey(`s${i}`);
          const names = got.map((m) => m.name);
          assert.deepEqual(names, [...names].sort(), 'sorted by extension');
          const want = expected[i]!;
          if (!s.hasUid) {
            const json = got.find((m) => m.name === `s${i}.json`)!;
            assert.deepEqual(Object.keys(JSON.parse(json.data.toString())), ['i', 'key', 'uid']);
            want.push(json);
          }
          assert.deepEqual(got, [...want].sort((x, y) => (x.name < y.name ? -1 : 1)));
        });
        const back = samplesOf(await readAll(shards, { members: true }));
        assert.equal(back.length, specs.length);
        for (const [i, shard] of shards.entries()) {
          const stats = await readShardStats(shard.replace(/\.tar$/, '_stats.json'));
          assert.equal(stats!.successes, back.filter((b) => b.shard === shard).length);
          assert.equal(stats!.loom.tar_bytes, (await readFile(shard)).length);
          assert.equal(stats!.loom.shard, `0000000${i}.tar`);
        }
      });
    }),
    { numRuns: 30 },
  );
});
