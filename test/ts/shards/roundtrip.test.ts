// What ShardWriter writes, the reader gives back unchanged; the same samples give the same bytes.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import fc from 'fast-check';
import { ShardWriter, type SampleToWrite } from '../../../src/shards/writer.js';
import { listShards } from '../../../src/shards/listShards.js';
import { deriveUid } from '../../../src/shards/keys.js';
import { readShardStats } from '../../../src/shards/stats.js';
import type { ImageExt } from '../../../src/shards/types.js';
import { makeImage, readAll, withTempDir } from './fixtures.js';

const keyPart = fc.stringMatching(/^[A-Za-z0-9_-]{1,12}$/);
const keyArb = fc.oneof(keyPart, fc.tuple(keyPart, keyPart).map(([a, b]) => `${a}/${b}`));
const captionArb = fc.string({ unit: 'grapheme', minLength: 1, maxLength: 60 }).filter((s) => s.trim().length > 0);
const jsonArb = fc.dictionary(fc.string({ maxLength: 8 }).filter((k) => k !== 'key' && k !== 'uid' && k !== '__proto__'), fc.jsonValue({ maxDepth: 2 }), { maxKeys: 4 });
const uidArb = fc.option(fc.stringMatching(/^[0-9a-f]{32}$/), { nil: undefined });

async function images(): Promise<Record<ImageExt, Buffer[]>> {
  return {
    jpg: [await makeImage('jpg', 16, 12, 1), await makeImage('jpg', 9, 31, 2)],
    png: [await makeImage('png', 7, 5, 3)],
    webp: [await makeImage('webp', 10, 10, 4)],
  };
}

/** JSON as it comes back after a text round trip (e.g. -0 becomes 0). */
function viaJson(value: unknown): unknown {
  return JSON.parse(JSON.stringify(value));
}

test('round trip: keys, uids, captions, json and image bytes come back as written (property)', async () => {
  const pool = await images();
  const sampleArb = fc.record({ key: keyArb, caption: captionArb, json: jsonArb, uid: uidArb, ext: fc.constantFrom<ImageExt>('jpg', 'png', 'webp'), pick: fc.nat() });
  await fc.assert(
    fc.asyncProperty(fc.uniqueArray(sampleArb, { selector: (s) => s.key, minLength: 1, maxLength: 12 }), fc.integer({ min: 1, max: 5 }), fc.nat(3), async (specs, perShard, firstShard) => {
      await withTempDir(async (dir) => {
        const writer = new ShardWriter({ dir, samplesPerShard: perShard, firstShard });
        const written: SampleToWrite[] = specs.map((s) => {
          const choices = pool[s.ext];
          return { key: s.key, image: { ext: s.ext, data: choices[s.pick % choices.length]! }, caption: s.caption, json: s.json, ...(s.uid ? { uid: s.uid } : {}) };
        });
        for (const s of written) await writer.write(s);
        const result = await writer.close();
        assert.equal(result.samples, written.length);
        assert.equal(result.shards.length, Math.ceil(written.length / perShard));
        assert.deepEqual(result.shards, await listShards(dir));
        const items = await readAll(result.shards);
        assert.ok(items.every((i) => i.kind === 'sample'), JSON.stringify(items.filter((i) => i.kind === 'bad')));
        const back = items.flatMap((i) => (i.kind === 'sample' ? [i.sample] : []));
        assert.deepEqual(back.map((s) => s.key), written.map((s) => s.key));
        back.forEach((s, i) => {
          const w = written[i]!;
          const shard = result.shards[Math.floor(i / perShard)]!;
          assert.equal(s.shard, shard);
          assert.equal(s.caption, w.caption);
          assert.ok(s.image.data.equals(w.image.data));
          assert.equal(s.image.ext, w.image.ext);
          const uid = w.uid ?? deriveUid(shard, w.key);
          assert.equal(s.uid, uid);
          assert.deepEqual(s.json, { ...(viaJson(w.json) as object), key: w.key, uid });
        });
        for (const [i, shard] of result.shards.entries()) {
          const stats = await readShardStats(shard.replace(/\.tar$/, '_stats.json'));
          const n = back.filter((s) => s.shard === shard).length;
          assert.ok(stats, `stats for ${shard}`);
          assert.equal(stats.successes, n);
          assert.equal(stats.count, n);
          assert.equal(stats.loom.shard, `${String(firstShard + i).padStart(8, '0')}.tar`);
          assert.equal(stats.loom.first_key, back.find((s) => s.shard === shard)!.key);
        }
      });
    }),
    { numRuns: 25 },
  );
});

test('the same samples give byte-identical shards and sidecars', async () => {
  const pool = await images();
  const write = async (dir: string) => {
    const writer = new ShardWriter({ dir, samplesPerShard: 3 });
    for (let i = 0; i < 7; i++) {
      await writer.write({ key: `k${i}`, image: { ext: 'jpg', data: pool.jpg[i % 2]! }, caption: `caption ${i} é`, json: { i, url: `http://x/${i}` } });
    }
    writer.noteFailure('failed_to_download', 2);
    return writer.close();
  };
  await withTempDir(async (a) =>
    withTempDir(async (b) => {
      await write(a);
      await new Promise((r) => setTimeout(r, 1100)); // a different wall-clock second
      await write(b);
      const names = (await readdir(a)).sort();
      assert.deepEqual(names, (await readdir(b)).sort());
      assert.equal(names.length, 6);
      for (const n of names) assert.ok((await readFile(join(a, n))).equals(await readFile(join(b, n))), n);
      const stats = await readShardStats(join(a, '00000002_stats.json'));
      assert.equal(stats!.count, 3);
      assert.equal(stats!.successes, 1);
      assert.equal(stats!.failed_to_download, 2);
    }),
  );
});

test('members are written as img2dataset writes them: sorted by extension, fixed headers', async () => {
  const pool = await images();
  await withTempDir(async (dir) => {
    const writer = new ShardWriter({ dir });
    await writer.write({ key: 'a', image: { ext: 'png', data: pool.png[0]! }, caption: 'x', json: {} });
    await writer.write({ key: 'b', image: { ext: 'webp', data: pool.webp[0]! }, caption: 'y', json: {} });
    const { shards } = await writer.close();
    const bytes = await readFile(shards[0]!);
    const names: string[] = [];
    for (let at = 0; at + 512 <= bytes.length && bytes[at] !== 0; ) {
      names.push(bytes.subarray(at, at + 100).toString('utf8').replace(/\0.*$/s, ''));
      assert.equal(bytes.subarray(at + 136, at + 147).toString('ascii'), '00000000000', 'mtime 0');
      const size = parseInt(bytes.subarray(at + 124, at + 135).toString('ascii'), 8);
      at += 512 + Math.ceil(size / 512) * 512;
    }
    assert.deepEqual(names, ['a.json', 'a.png', 'a.txt', 'b.json', 'b.txt', 'b.webp']);
  });
});

test('the writer rejects bad samples with a clear error and stays usable', async () => {
  const pool = await images();
  await withTempDir(async (dir) => {
    const writer = new ShardWriter({ dir, samplesPerShard: 10 });
    const good = { image: { ext: 'jpg' as const, data: pool.jpg[0]! }, caption: 'ok', json: {} };
    await assert.rejects(writer.write({ ...good, key: 'a.b' }), /contains a dot/);
    await assert.rejects(writer.write({ ...good, key: '' }), /empty/);
    await assert.rejects(writer.write({ ...good, key: '../x' }), /\.\./);
    await assert.rejects(writer.write({ ...good, key: 'c', caption: '  ' }), /caption is empty/);
    await assert.rejects(writer.write({ ...good, key: 'c', json: { uid: 'XYZ' } }), /uid/);
    await assert.rejects(writer.write({ ...good, key: 'c', image: { ext: 'png', data: pool.jpg[0]! } }), /not PNG/);
    await writer.write({ ...good, key: 'c' });
    await assert.rejects(writer.write({ ...good, key: 'c' }), /already in shard/);
    await writer.write({ ...good, key: 'd' });
    const { samples, shards } = await writer.close();
    assert.equal(samples, 2);
    const items = await readAll(shards);
    assert.deepEqual(items.map((i) => (i.kind === 'sample' ? i.sample.key : i.bad.reason)), ['c', 'd']);
    await assert.rejects(writer.write({ ...good, key: 'e' }), /closed/);
  });
});

test('abort leaves no temporary file behind; a writer with no samples writes nothing', async () => {
  const pool = await images();
  await withTempDir(async (dir) => {
    const writer = new ShardWriter({ dir, samplesPerShard: 2 });
    for (const key of ['a', 'b', 'c']) await writer.write({ key, image: { ext: 'jpg', data: pool.jpg[0]! }, caption: key, json: {} });
    await writer.abort();
    assert.deepEqual((await readdir(dir)).sort(), ['00000000.tar', '00000000_stats.json']);
    const empty = new ShardWriter({ dir: join(dir, 'none') });
    assert.deepEqual(await empty.close(), { shards: [], samples: 0 });
  });
});
