// `loom curate --unifilter`: its options (refused before any scoring), an end-to-end run on a few
// synthetic shards with a tiny imported UniFilter classifier (python/tests/fixtures/llava_sources.py)
// whose quality_score the rule selects on, and a non-UniFilter export refused with its reason.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { listSidecars, readSidecar } from '../../../src/select/sidecars.js';
import { readUidNpy } from '../../../src/select/uidNpy.js';
import { pythonExecutable, repoRoot } from '../../../src/util/paths.js';

const env = { ...process.env, OMP_NUM_THREADS: '1' };
const loom = (...args: string[]) => spawnSync(process.execPath, [join(repoRoot(), 'bin', 'loom.js'), ...args], { encoding: 'utf8', env });
const fixture = (script: string, out: string) => spawnSync(pythonExecutable(), [join(repoRoot(), 'python', 'tests', 'fixtures', script), out], { encoding: 'utf8', env });

let dir = '';
let shards = '';
before(() => {
  dir = mkdtempSync(join(tmpdir(), 'loom-curate-unifilter-'));
  const synth = loom('synth', '--out', join(dir, 'synth'), '--samples', '12', '--samples-per-shard', '5', '--seed', '3', '--sft', '0', '--bench', '0', '--quiet');
  assert.equal(synth.status, 0, synth.stderr);
  shards = join(dir, 'synth', 'pretrain');
});
after(() => rmSync(dir, { recursive: true, force: true }));

test('loom curate --unifilter: option sets that cannot work are refused before any scoring', () => {
  const cases: Array<[string[], RegExp]> = [
    [['--rule', 'unifilter.quality_score > 0.5'], /nothing to score with: .*--unifilter/],
    [['--model', 'x', '--rule', 'unifilter.quality_score > 0.5'], /names scorer\(s\) unifilter but this run scores only 'dfn'/],
    [['--unifilter', 'y', '--mlm-filter', 'z', '--unifilter-name', 'mlmf', '--rule', 'mlmf.quality_score > 0.5'], /--mlm-name and --unifilter-name are both 'mlmf'/],
    [['--unifilter', 'y', '--model', 'x', '--unifilter-name', 'dfn', '--rule', 'dfn.cosine > 0'], /--scorer-name and --unifilter-name are both 'dfn'/],
    [['--unifilter', 'y', '--unifilter-name', 'Bad!', '--rule', 'dfn.cosine > 0'], /--unifilter-name 'Bad!'/],
    [['--unifilter', 'y', '--unifilter-batch-size', '0', '--rule', 'unifilter.quality_score > 0.5'], /--unifilter-batch-size/],
  ];
  for (const [args, message] of cases) {
    const run = loom('curate', '--shards', shards, '--out', join(dir, 'refused'), ...args);
    assert.equal(run.status, 2, `${args.join(' ')}: ${run.stderr}`);
    assert.match(run.stderr, message);
  }
  assert.ok(!existsSync(join(dir, 'refused', 'scores')), 'nothing was scored');
});

test('loom curate --unifilter scores with an imported UniFilter classifier and selects on quality_score', async () => {
  const exportDir = join(dir, 'unifilter-export');
  const made = fixture('llava_sources.py', exportDir);
  assert.equal(made.status, 0, made.stderr);
  const out = join(dir, 'curated');
  const run = loom('curate', '--shards', shards, '--unifilter', exportDir, '--unifilter-batch-size', '4', '--rule', 'top(unifilter.quality_score, 0.5)', '--out', out, '--json');
  assert.equal(run.status, 0, run.stderr);
  const report = JSON.parse(run.stdout);
  assert.deepEqual(report.scorers.map((s: { name: string; kind: string }) => [s.name, s.kind]), [['unifilter', 'unifilter']]);
  assert.equal(report.scores.unifilter.samples, 12);
  assert.deepEqual(report.histograms.map((p: string) => p.slice(out.length + 1)), ['hist_unifilter.quality_score.png']);

  const cut = Math.fround((report.selection.atoms as Array<{ threshold: number }>)[0]!.threshold);
  const expected = new Set<string>();
  const scores: number[] = [];
  const index = await listSidecars(join(out, 'scores'));
  assert.equal(index.shards.size, 3);
  for (const perScorer of index.shards.values()) {
    const sidecar = await readSidecar(perScorer.get('unifilter')!, ['quality_score', 'quality_class', 'logit_0', 'logit_1'], { uids: true });
    sidecar.uids.forEach((uid, i) => {
      const [score, cls, l0, l1] = ['quality_score', 'quality_class', 'logit_0', 'logit_1'].map((c) => sidecar.columns.get(c)![i]!) as [number, number, number, number];
      // UniFilter's script: softmax(logits)[1] and argmax(logits)
      assert.ok(Math.abs(score - 1 / (1 + Math.exp(l0 - l1))) < 1e-5, `quality_score ${score} is the positive class's softmax`);
      assert.equal(cls, l1 > l0 ? 1 : 0);
      scores.push(score);
      if (score >= cut) expected.add(uid);
    });
  }
  assert.equal(scores.length, 12);
  assert.ok(new Set(scores).size > 1, 'different pairs get different scores');
  const selected = await readUidNpy(join(out, 'selection.npy'));
  assert.equal(selected.size, expected.size);
  for (const uid of expected) assert.ok(selected.indexOf(uid) >= 0, `${uid} is selected`);
  assert.equal(report.selection.kept, 6);
});

test('loom curate --unifilter refuses an export without a classifier head, naming it', () => {
  const exportDir = join(dir, 'loom-export');
  const made = fixture('tiny_export.py', exportDir);
  assert.equal(made.status, 0, made.stderr);
  const run = loom('curate', '--shards', shards, '--unifilter', exportDir, '--rule', 'unifilter.quality_score > 0.5', '--out', join(dir, 'no-head'));
  assert.notEqual(run.status, 0);
  assert.match(run.stderr, /loom\.json: source\.head is missing: .* not a UniFilter classifier/);
});
