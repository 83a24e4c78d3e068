import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFile, readdir, rm, writeFile } from 'node:fs/promises';
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
import { makeImage, sampleMembers, writeTar } from '../shards/fixtures.js';
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
  await assert.rejects(runReshard({ shards, selection: join(root, 'sel2.npy'), out: root, samplesPerShard: 4 }), /is not empty and holds no earlier reshard/);
  const badUpsample = loom(['reshard', '--shards', shards[0]!, '--selection', join(root, 'sel2.npy'), '--out', foreign, '--upsample', 'x.npy']);
  assert.equal(badUpsample.status, 2);
  assert.match(badUpsample.stderr, /--upsample x\.npy: expected FILE:K/);
});
