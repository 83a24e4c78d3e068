// `loom curate` end to end on synthetic data: train a filter network on trusted pairs, score, select,
// report against the ground truth, reshard; a rerun resumes (filter reused, shards skipped).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { repoRoot } from '../../../src/util/paths.js';

const loom = (...args: string[]) => spawnSync(process.execPath, [join(repoRoot(), 'bin', 'loom.js'), ...args], { encoding: 'utf8' });

test('loom curate: filter network, scores, selection with truth, histogram, reshard; a rerun resumes', () => {
  const dir = mkdtempSync(join(tmpdir(), 'loom-curate-'));
  try {
    const synth = loom('synth', '--out', join(dir, 'synth'), '--samples', '120', '--samples-per-shard', '40', '--sft', '0', '--bench', '0', '--quiet');
    assert.equal(synth.status, 0, synth.stderr);
    const trusted = loom('synth', '--out', join(dir, 'trusted'), '--samples', '60', '--noise', '0', '--seed', '7', '--sft', '0', '--bench', '0', '--quiet');
    assert.equal(trusted.status, 0, trusted.stderr);
    const args = ['curate', '--shards', join(dir, 'synth', 'pretrain'), '--train-filter', join(dir, 'trusted', 'pretrain'), '--filter-steps', '3',
      '--rule', 'top(dfn.cosine, 0.5)', '--truth', '--reshard', '--out', join(dir, 'out'), '--json'];
    const first = loom(...args);
    assert.equal(first.status, 0, first.stderr);
    const report = JSON.parse(first.stdout);
    assert.deepEqual(report, JSON.parse(readFileSync(join(dir, 'out', 'curate.json'), 'utf8')));
    assert.equal(report.score.samples, 120);
    assert.equal(report.selection.total, 120);
    assert.ok(report.selection.kept >= 60 && report.selection.kept < 120, `top half kept ${report.selection.kept}`);
    assert.equal(report.truth.labelled, 120);
    const kinds = report.truth.kinds as Record<string, { kept: number; total: number }>;
    assert.equal(Object.values(kinds).reduce((s, k) => s + k.kept, 0), report.selection.kept, 'truth counts add up to the selection');
    assert.equal(report.reshard.written, report.selection.kept);
    const png = readFileSync(report.histograms[0]);
    assert.deepEqual([...png.subarray(0, 8)], [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
    assert.ok(existsSync(join(dir, 'out', 'filter', 'config.json')) && existsSync(join(dir, 'out', 'selection.npy')));

    const again = loom(...args);
    assert.equal(again.status, 0, again.stderr);
    const second = JSON.parse(again.stdout);
    assert.equal(second.filter, null, 'the trained filter is reused');
    assert.equal(second.score.shards_skipped, 3);
    assert.equal(second.selection.kept, report.selection.kept);

    const bad = loom('curate', '--shards', join(dir, 'synth', 'pretrain'), '--model', 'x', '--rule', 'clip.cosine > 0', '--out', join(dir, 'o2'));
    assert.equal(bad.status, 2);
    assert.match(bad.stderr, /names scorer\(s\) clip but this run scores only 'dfn'/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
