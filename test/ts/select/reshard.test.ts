import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdir, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import fc from 'fast-check';
import { join } from 'node:path';
import { runSynth } from '../../../src/synth/generate.js';
import { EVEN_MIX } from '../../../src/synth/noise.js';
import { readShards } from '../../../src/shards/reader.js';
import { listShards } from '../../../src/shards/listShards.js';
import { deriveUid } from '../../../src/shards/keys.js';
import type { Sample } from '../../../src/shards/types.js';
import { repoRoot } from '../../../src/util/paths.js';
import { UidSorter } from '../../../src/select/uidSorter.js';
import { runReshard } from '../../../src/select/reshard.js';
import { readShardStats } from '../../../src/shards/stats.js';
import type { ImageExt } from '../../../src/shards/types.js';
import { extraExtArb, makeImage, sampleMembers, tarFileMembers, writeTar, type RawMember } from '../shards/fixtures.js';
import { tempDir } from './helpers.js';

async function samplesIn(paths: string[]): Promise<{ samples: Sample[]; bad: number }> {
  const samples: Sample[] = [];
  let bad = 0;
  for await (const item of readShards(paths)) {
    if (item.kind === 'sample') samples.push(item.sample);
    else bad++;
  }
  return { samples, bad };
}

async function writeSelection(path: string, uids: string[]): Promise<void> {
  const sorter = new UidSorter(path, 8);
  for (const u of uids) await sorter.add(u);
  await sorter.finish();
}

/** `loom synth` output (two shards) plus a hand-made shard: a sample without json uid, and a bad one. */
const inputs = (async () => {
  const root = await tempDir('reshard');
  await runSynth({ out: join(root, 'synth'), seed: 4, samples: 50, sft: 2, bench: 2, noise: 0.3, noiseMix: { ...EVEN_MIX }, samplesPerShard: 25, threads: 0 });
  const image = await makeImage('png', 16, 16, 3);
  await writeTar(join(root, 'synth', 'pretrain'), '00000002.tar', [
    // Same key as a synth sample: resharding must keep output keys unique within a shard.
    ...sampleMembers('0000000049', image, 'png', 'a hand-made sample', { note: 'no uid' }),
    { name: '0000000099.png', data: image }, // no caption, no json: a bad sample
  ]);
  const shards = await listShards(join(root, 'synth', 'pretrain'));
  return { root, shards, ...(await samplesIn(shards)) };
})();

test('reshard writes each selected sample once, upsampled ones K times, in input order, and nothing else', async () => {
  const { root, shards, samples, bad } = await inputs;
  assert.equal(samples.length, 51);
  assert.equal(bad, 1);
  const handMade = samples[50]!;
  assert.equal(handMade.uid, deriveUid(shards[2]!, '0000000049'));
  const selected = samples.filter((_, i) => i % 3 !== 0 || i === 50).map((s) => s.uid);
  const boosted = samples.filter((_, i) => i % 5 === 1).map((s) => s.uid); // some not selected (i = 6, 21, ...)
  const notSelected = samples.filter((_, i) => i % 3 === 0 && i !== 50).map((s) => s.uid);
  await writeSelection(join(root, 'sel.npy'), [...selected, 'f'.repeat(32)]);
  await writeSelection(join(root, 'boost.npy'), boosted);
  const out = join(root, 'out');
  const summary = await runReshard({ shards, selection: join(root, 'sel.npy'), out, samplesPerShard: 7, upsample: [{ path: join(root, 'boost.npy'), k: 3 }] });

  const copies = (uid: string) => (selected.includes(uid) ? (boosted.includes(uid) ? 3 : 1) : 0);
  const expected = samples.flatMap((s) => Array.from({ length: copies(s.uid) }, () => s));
  const outShards = await listShards(out);
  const written = await samplesIn(outShards);
  assert.equal(written.bad, 0);
  assert.deepEqual(written.samples.map((s) => s.uid), expected.map((s) => s.uid));
  for (let i = 0; i < expected.length; i++) {
    assert.ok(written.samples[i]!.image.data.equals(expected[i]!.image.data));
    assert.equal(written.samples[i]!.caption, expected[i]!.caption);
    assert.equal(written.samples[i]!.json.uid, expected[i]!.uid, 'copies keep the same uid in their json');
    for (const [k, v] of Object.entries(expected[i]!.json)) if (k !== 'key') assert.deepEqual(written.samples[i]!.json[k], v);
  }
  for (const u of notSelected) assert.ok(!written.samples.some((s) => s.uid === u));
  // Keys are unique within each output shard; upsampled copies get "_u{j}".
  for (const path of outShards) {
    const keys = written.samples.filter((s) => s.shard === path).map((s) => s.key);
    assert.equal(new Set(keys).size, keys.length, path);
  }
  assert.ok(written.samples.some((s) => /_u3$/.test(s.key)));
  assert.equal(outShards.length, Math.ceil(expected.length / 7));
  for (let i = 0; i < outShards.length; i++) {
    const stats = JSON.parse(await readFile(outShards[i]!.replace(/\.tar$/, '_stats.json'), 'utf8'));
    assert.equal(stats.successes, Math.min(7, expected.length - 7 * i));
  }
  assert.equal(summary.written, expected.length);
  assert.equal(summary.selection_size, selected.length + 1);
  assert.equal(summary.selected_not_found, 1);
  assert.equal(summary.input_bad, 1);
  assert.equal(summary.upsample_not_selected, boosted.filter((u) => !selected.includes(u)).length);
  assert.equal(summary.upsampled_uids, boosted.filter((u) => selected.includes(u)).length);
  // Renames happen only where two samples would share a key within one output shard.
  let clashes = 0;
  for (let start = 0; start < expected.length; start += 7) {
    const seen = new Set<string>();
    const chunk = expected.slice(start, start + 7);
    chunk.forEach((s, i) => {
      const copy = chunk.slice(0, i).filter((t) => t.uid === s.uid).length + 1 + expected.slice(0, start).filter((t) => t.uid === s.uid).length;
      const key = copy === 1 ? s.key : `${s.key}_u${copy}`;
      if (seen.has(key)) clashes++;
      seen.add(key);
    });
  }
  assert.equal(summary.renamed_keys, clashes);
  assert.ok(clashes >= 1, 'the hand-made sample shares its key with synth sample 49');
  assert.ok(written.samples.some((s) => s.key === '00000002_0000000049'));
});

function loom(args: string[]): { status: number | null; stdout: string; stderr: string } {
  const run = spawnSync(process.execPath, [join(repoRoot(), 'bin', 'loom.js'), ...args], { encoding: 'utf8' });
  return { status: run.status, stdout: run.stdout, stderr: run.stderr };
}

test('loom reshard resumes after the last finished shard with identical bytes, and refuses foreign output directories', async () => {
  const { root, shards, samples } = await inputs;
  await writeSelection(join(root, 'sel2.npy'), samples.filter((_, i) => i % 2 === 0).map((s) => s.uid));
  const out = join(root, 'out2');
  const args = ['reshard', '--shards', join(root, 'synth', 'pretrain'), '--selection', join(root, 'sel2.npy'), '--out', out, '--samples-per-shard', '4', '--json'];
  const first = loom(args);
  assert.equal(first.status, 0, first.stderr);
  const summary = JSON.parse(first.stdout);
  assert.equal(summary.written, 26);
  const names = (await readdir(out)).filter((n) => n.endsWith('.tar')).sort();
  const bytes = await Promise.all(names.map((n) => readFile(join(out, n))));
  // A run killed while writing shard 3: shards 3.. are gone, a temp file is left behind.
  for (const n of names.slice(3)) await rm(join(out, n));
  await rm(join(out, '00000003_stats.json'));
  await writeFile(join(out, '.00000003.tar.tmp-123-abcdef01'), 'partial');
  const again = await runReshard({ shards, selection: join(root, 'sel2.npy'), out, samplesPerShard: 4 });
  assert.equal(again.resumed_from_shard, 3);
  assert.equal(again.written, 26);
  const after = (await readdir(out)).filter((n) => n.endsWith('.tar')).sort();
  assert.deepEqual(after, names);
  for (let i = 0; i < names.length; i++) assert.ok((await readFile(join(out, names[i]!))).equals(bytes[i]!), names[i]);
  assert.ok(!(await readdir(out)).some((n) => n.includes('.tmp-')), 'temporary files removed');

  await assert.rejects(runReshard({ shards, selection: join(root, 'sel.npy'), out, samplesPerShard: 4 }), /holds a reshard of other inputs, selection or options/);
  const foreign = join(root, 'foreign');
  await writeFile(join(root, 'keep.txt'), 'x');
  await assert.rejects(runReshard({ shards, selection: join(root, 'sel2.npy'), out: root, samplesPerShard: 4 }), /holds files Loom did not write/);
  const badUpsample = loom(['reshard', '--shards', shards[0]!, '--selection', join(root, 'sel2.npy'), '--out', foreign, '--upsample', 'x.npy']);
  assert.equal(badUpsample.status, 2);
  assert.match(badUpsample.stderr, /--upsample x\.npy: expected FILE:K/);
});

// ---- Every member of a sample is copied byte for byte -------------------------------------------

interface InputSample {
  key: string;
  uid: string;
  /** Its tar members as written into the input shard. */
  members: Array<{ name: string; data: Buffer }>;
}

const asBuffer = (m: RawMember) => ({ name: m.name, data: typeof m.data === 'string' ? Buffer.from(m.data, 'utf8') : m.data });
const keyOf = (name: string) => name.slice(0, name.indexOf('.'));
const extOf = (name: string) => name.slice(name.indexOf('.') + 1);

/** Consecutive members sharing a key, as read by tar-stream (independent of Loom's reader). */
function groupByKey(members: Array<{ name: string; data: Buffer }>): Array<{ key: string; members: Array<{ name: string; data: Buffer }> }> {
  const groups: Array<{ key: string; members: Array<{ name: string; data: Buffer }> }> = [];
  for (const m of members) {
    const key = keyOf(m.name);
    if (groups.at(-1)?.key !== key) groups.push({ key, members: [] });
    groups.at(-1)!.members.push(m);
  }
  return groups;
}

/**
 * Checks that output sample i is a faithful copy of expected[i]: the same members under the new
 * key, sorted by extension, bytes untouched, except a json without the uid, or whose key is not
 * the new key, which becomes {...json, uid, key}. Returns how many jsons were kept as they were.
 */
async function assertFaithful(outShards: string[], expected: InputSample[]): Promise<{ keptJson: number; rewrittenJson: number }> {
  let keptJson = 0;
  let rewrittenJson = 0;
  let at = 0;
  for (const shard of outShards) {
    const groups = groupByKey(await tarFileMembers(shard));
    for (const group of groups) {
      const source = expected[at++];
      assert.ok(source, `${shard}: more samples than expected`);
      const where = `${shard} ${group.key} (copy of ${source.key})`;
      const names = group.members.map((m) => m.name);
      assert.deepEqual(names, [...names].sort(), `${where}: sorted by extension`);
      const want = source.members.map((m) => ({ name: `${group.key}.${extOf(m.name)}`, data: m.data })).sort((a, b) => (a.name < b.name ? -1 : 1));
      assert.deepEqual(names, want.map((m) => m.name), where);
      for (const [i, m] of group.members.entries()) {
        if (extOf(m.name) !== 'json') {
          assert.ok(m.data.equals(want[i]!.data), `${where}: ${m.name} is byte-identical`);
          continue;
        }
        const original = JSON.parse(want[i]!.data.toString('utf8')) as Record<string, unknown>;
        if (original.uid === source.uid && (original.key === undefined || original.key === group.key)) {
          assert.ok(m.data.equals(want[i]!.data), `${where}: json kept as stored`);
          keptJson++;
        } else {
          assert.deepEqual(JSON.parse(m.data.toString('utf8')), { ...original, uid: source.uid, key: group.key }, `${where}: json gets uid and key`);
          rewrittenJson++;
        }
      }
    }
    const stats = await readShardStats(shard.replace(/\.tar$/, '_stats.json'));
    assert.equal(stats!.successes, groups.length, `${shard}: stats count its samples`);
    assert.equal(stats!.loom.tar_bytes, (await readFile(shard)).length, `${shard}: stats tar_bytes`);
  }
  assert.equal(at, expected.length, 'every expected sample was written');
  return { keptJson, rewrittenJson };
}

test('reshard copies every member of a sample byte for byte (.npy, .cls, a second caption, .webp, .JPEG), upsampled copies too', async () => {
  const root = await tempDir('members');
  const dir = join(root, 'in');
  await mkdir(dir);
  const jpg = await makeImage('jpg', 9, 7, 11);
  const webp = await makeImage('webp', 8, 8, 12);
  const png = await makeImage('png', 6, 6, 13);
  const npy = Buffer.concat([Buffer.from('\x93NUMPY\x01\x00'), Buffer.from(Float32Array.from({ length: 64 }, (_, i) => Math.sin(i)).buffer)]);
  const uid = (c: string) => c.repeat(32);
  const a: RawMember[][] = [
    [
      { name: 'a0.cls', data: '7' },
      { name: 'a0.jpg', data: jpg },
      { name: 'a0.json', data: JSON.stringify({ key: 'a0', uid: uid('0'), url: 'http://x/0', caption: 'alt' }) },
      { name: 'a0.npy', data: npy },
      { name: 'a0.txt', data: 'a photo of a cat' },
    ],
    [
      { name: 'a1.caption', data: 'a second caption' },
      { name: 'a1.emb.npz', data: Buffer.from([0, 1, 2, 255, 254, 0, 0]) },
      { name: 'a1.json', data: JSON.stringify({ uid: uid('1'), n: 1.5e-7 }, null, 2) + '\n' },
      { name: 'a1.txt', data: Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from('with a byte order mark')]) },
      { name: 'a1.webp', data: webp },
    ],
    [
      { name: 'a2.JPEG', data: jpg },
      { name: 'a2.NPY', data: npy.subarray(0, 100) },
      { name: 'a2.json', data: '{"note": "no uid"}' },
      { name: 'a2.txt', data: 'derived uid' },
    ],
    [...sampleMembers('a3', png, 'png', 'not selected', { uid: uid('3') }), { name: 'a3.npy', data: npy }],
    [{ name: 'a4.jpg', data: jpg }, { name: 'a4.npy', data: npy }], // bad: no caption, no json
  ];
  const b: RawMember[][] = [[{ name: 'a0.cls', data: '1' }, ...sampleMembers('a0', png, 'png', 'same key, other shard', { key: 'a0', uid: uid('5') })]];
  const pathA = await writeTar(dir, '00000000.tar', a.flat());
  const pathB = await writeTar(dir, '00000001.tar', b.flat());
  const sample = (members: RawMember[], shard: string): InputSample => {
    const key = keyOf(members[0]!.name);
    const json = members.find((m) => m.name === `${key}.json`);
    const parsed = JSON.parse(String(json!.data)) as { uid?: string };
    return { key, uid: parsed.uid ?? deriveUid(shard, key), members: members.map(asBuffer) };
  };
  const [s0, s1, s2] = a.slice(0, 3).map((m) => sample(m, pathA));
  const t0 = sample(b[0]!, pathB);
  await writeSelection(join(root, 'sel.npy'), [s0!.uid, s1!.uid, s2!.uid, t0.uid]);
  await writeSelection(join(root, 'boost.npy'), [s0!.uid, s1!.uid]);
  const out = join(root, 'out');
  const summary = await runReshard({ shards: [pathA, pathB], selection: join(root, 'sel.npy'), out, samplesPerShard: 6, upsample: [{ path: join(root, 'boost.npy'), k: 2 }] });
  assert.equal(summary.written, 6);
  assert.equal(summary.input_bad, 1);
  assert.equal(summary.renamed_keys, 1, 'the second a0 shares the output shard with the first');
  const outShards = await listShards(out);
  const groups = groupByKey(await tarFileMembers(outShards[0]!));
  assert.deepEqual(groups.map((g) => g.key), ['a0', 'a0_u2', 'a1', 'a1_u2', 'a2', '00000001_a0']);
  const counts = await assertFaithful(outShards, [s0!, s0!, s1!, s1!, s2!, t0]);
  // Kept: a0 (its own key), a1 and a1_u2 (uid, no key). Rewritten: a0_u2 and 00000001_a0 (stale key), a2 (derived uid).
  assert.deepEqual(counts, { keptJson: 3, rewrittenJson: 3 });
  const read = await samplesIn(outShards);
  assert.equal(read.bad, 0);
  assert.deepEqual(read.samples.map((s) => s.uid), [s0, s0, s1, s1, s2, t0].map((s) => s!.uid));
  await rm(root, { recursive: true, force: true });
});

test('reshard keeps any set of members byte for byte, for kept samples and upsampled copies (property)', async () => {
  const pool: Record<ImageExt, Buffer> = { jpg: await makeImage('jpg', 5, 5, 21), png: await makeImage('png', 5, 4, 22), webp: await makeImage('webp', 4, 5, 23) };
  const spellings: Record<ImageExt, string[]> = { jpg: ['jpg', 'jpeg', 'JPG'], png: ['png', 'PNG'], webp: ['webp', 'Webp'] };
  const specArb = fc.record({
    ext: fc.constantFrom<ImageExt>('jpg', 'png', 'webp'),
    spelling: fc.nat(2),
    extra: fc.uniqueArray(fc.record({ ext: extraExtArb, data: fc.uint8Array({ maxLength: 600 }) }), { selector: (m) => m.ext.toLowerCase(), maxLength: 4 }),
    json: fc.constantFrom('uid', 'uid+key', 'none'),
    selected: fc.boolean(),
    k: fc.integer({ min: 1, max: 3 }),
    shuffle: fc.nat(),
  });
  const root = await tempDir('members-prop');
  let run = 0;
  await fc.assert(
    fc.asyncProperty(fc.array(specArb, { minLength: 1, maxLength: 6 }), fc.integer({ min: 1, max: 4 }), async (specs, perShard) => {
      const dir = join(root, `run${run++}`);
      await mkdir(dir);
      const path = join(dir, '00000007.tar');
      const inputs: InputSample[] = specs.map((s, i) => {
        const key = `k${i}`;
        const uid = s.json === 'none' ? deriveUid(path, key) : createUid(i);
        const json = s.json === 'none' ? { i } : s.json === 'uid' ? { uid, i } : { i, key, uid };
        const members = [
          { name: `${key}.${spellings[s.ext][s.spelling % spellings[s.ext].length]}`, data: pool[s.ext] },
          { name: `${key}.json`, data: Buffer.from(JSON.stringify(json, null, i % 2 === 0 ? undefined : 1)) },
          { name: `${key}.txt`, data: Buffer.from(`caption ${i}`) },
          ...s.extra.map((m) => ({ name: `${key}.${m.ext}`, data: Buffer.from(m.data) })),
        ];
        // Any member order within a sample is read.
        const rotate = s.shuffle % members.length;
        return { key, uid, members: [...members.slice(rotate), ...members.slice(0, rotate)] };
      });
      await writeTar(dir, '00000007.tar', inputs.flatMap((s) => s.members));
      const selected = inputs.filter((_, i) => specs[i]!.selected);
      await writeSelection(join(dir, 'sel.npy'), selected.map((s) => s.uid));
      const upsample = [2, 3].map((k) => ({ path: join(dir, `k${k}.npy`), k }));
      for (const u of upsample) await writeSelection(u.path, inputs.filter((_, i) => specs[i]!.k === u.k).map((s) => s.uid));
      const summary = await runReshard({ shards: [path], selection: join(dir, 'sel.npy'), out: join(dir, 'out'), samplesPerShard: perShard, upsample });
      const expected = inputs.flatMap((s, i) => (specs[i]!.selected ? Array.from({ length: specs[i]!.k }, () => s) : []));
      assert.equal(summary.written, expected.length);
      const outTars = (await readdir(join(dir, 'out'))).filter((n) => n.endsWith('.tar')).sort();
      assert.equal(outTars.length, Math.ceil(expected.length / perShard));
      await assertFaithful(outTars.map((n) => join(dir, 'out', n)), expected);
    }),
    { numRuns: 15 },
  );
  await rm(root, { recursive: true, force: true });
});

function createUid(i: number): string {
  return (i + 1).toString(16).padStart(32, 'c');
}
