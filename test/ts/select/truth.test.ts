// The ground-truth report of a selection on synthetic data: kept/removed per noise kind.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runSynth } from '../../../src/synth/generate.js';
import { EVEN_MIX } from '../../../src/synth/noise.js';
import { listShards, readShards } from '../../../src/shards/reader.js';
import { UidSorter } from '../../../src/select/uidSorter.js';
import { readUidNpy } from '../../../src/select/uidNpy.js';
import { truthReport } from '../../../src/select/truth.js';

test('truth report: per-kind removal recall, removal precision and clean kept match a known selection', async () => {
  const root = await mkdtemp(join(tmpdir(), 'loom-truth-'));
  try {
    await runSynth({ out: join(root, 'data'), seed: 5, samples: 200, sft: 0, bench: 0, noise: 0.3, noiseMix: { ...EVEN_MIX }, samplesPerShard: 100, threads: 0 });
    const shards = await listShards(join(root, 'data', 'pretrain'));
    // Keep every clean pair but the first 10, every wrong-colour pair, and nothing else.
    const byKind = new Map<string, string[]>();
    for await (const item of readShards(shards)) {
      if (item.kind !== 'sample') continue;
      const noise = item.sample.json.noise as { kind: string } | null;
      const kind = noise === null ? 'clean' : noise.kind;
      byKind.set(kind, [...(byKind.get(kind) ?? []), item.sample.uid]);
    }
    const clean = byKind.get('clean')!;
    const sorter = new UidSorter(join(root, 'sel.npy'), 16); // small runs: the merge path too
    for (const uid of [...clean.slice(10), ...byKind.get('wrong_color')!]) await sorter.add(uid);
    await sorter.finish();

    const report = await truthReport(shards, await readUidNpy(join(root, 'sel.npy')));
    assert.equal(report.labelled, 200);
    assert.equal(report.unlabelled, 0);
    assert.deepEqual(Object.keys(report.kinds), ['blank', 'clean', 'gibberish', 'mismatched', 'wrong_color', 'wrong_count']);
    assert.equal(report.kinds.clean!.kept, clean.length - 10);
    assert.equal(report.kinds.wrong_color!.removed, 0);
    for (const kind of ['blank', 'gibberish', 'mismatched', 'wrong_count']) {
      assert.equal(report.kinds[kind]!.kept, 0, kind);
      assert.equal(report.kinds[kind]!.removed_share, 1, kind);
    }
    const noisy = 200 - clean.length;
    const removedNoise = noisy - byKind.get('wrong_color')!.length;
    assert.equal(report.noisy.removed, removedNoise);
    assert.equal(report.removal_precision, removedNoise / (removedNoise + 10));
    assert.equal(report.clean_kept, (clean.length - 10) / clean.length);
  } finally {
    await rm(root, { recursive: true, force: true });
  }
});
