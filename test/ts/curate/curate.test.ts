// `loom curate` end to end on synthetic data: train a filter network on trusted pairs, score, select,
// report against the ground truth, reshard; a rerun resumes (filter reused, shards skipped); a CLIP-
// style scorer and the MLM-Filter scorer in one run, selected by their union; a run killed mid-way
// (every process of it, workers included) and relaunched with another process count scores exactly
// the shards left.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { scoreHistogram } from '../../../src/curate/histogram.js';
import { listShards } from '../../../src/shards/reader.js';
import { listSidecars, readSidecar } from '../../../src/select/sidecars.js';
import { readTruthKinds, truthReport } from '../../../src/select/truth.js';
import { readUidNpy } from '../../../src/select/uidNpy.js';
import { isTempPath } from '../../../src/util/atomic.js';
import { pythonExecutable, repoRoot } from '../../../src/util/paths.js';

// One thread everywhere: torchrun gives each worker one, and floats must agree bit for bit across runs.
const env = { ...process.env, OMP_NUM_THREADS: '1' };
const loomArgs = (...args: string[]) => [join(repoRoot(), 'bin', 'loom.js'), ...args];
const loom = (...args: string[]) => spawnSync(process.execPath, loomArgs(...args), { encoding: 'utf8', env });

let dir = '';
let filter = '';
before(() => {
  dir = mkdtempSync(join(tmpdir(), 'loom-curate-'));
  const synth = loom('synth', '--out', join(dir, 'synth'), '--samples', '240', '--samples-per-shard', '40', '--sft', '0', '--bench', '0', '--quiet');
  assert.equal(synth.status, 0, synth.stderr);
  const trusted = loom('synth', '--out', join(dir, 'trusted'), '--samples', '60', '--noise', '0', '--seed', '7', '--sft', '0', '--bench', '0', '--quiet');
  assert.equal(trusted.status, 0, trusted.stderr);
  filter = join(dir, 'filter');
  const trained = spawnSync(pythonExecutable(), ['-m', 'loom_compute', 'train-filter', '--shards', join(dir, 'trusted', 'pretrain'), '--out', filter, '--steps', '3'], {
    encoding: 'utf8',
    env: { ...env, PYTHONPATH: join(repoRoot(), 'python', 'src') },
  });
  assert.equal(trained.status, 0, trained.stderr);
});
after(() => rmSync(dir, { recursive: true, force: true }));

test('loom curate: filter network, scores, selection with truth, histogram, reshard; a rerun resumes', async () => {
  const args = ['curate', '--shards', join(dir, 'synth', 'pretrain'), '--train-filter', join(dir, 'trusted', 'pretrain'), '--filter-steps', '3',
    '--rule', 'top(dfn.cosine, 0.5)', '--truth', '--reshard', '--out', join(dir, 'out'), '--json'];
  const first = loom(...args);
  assert.equal(first.status, 0, first.stderr);
  const report = JSON.parse(first.stdout);
  assert.deepEqual(report, JSON.parse(readFileSync(join(dir, 'out', 'curate.json'), 'utf8')));
  assert.deepEqual(report.scorers, [{ name: 'dfn', kind: 'clip', model: join(dir, 'out', 'filter') }]);
  assert.equal(report.scores.dfn.samples, 240);
  assert.equal(report.selection.total, 240);
  assert.ok(report.selection.kept >= 120 && report.selection.kept < 240, `top half kept ${report.selection.kept}`);
  assert.equal(report.truth.labelled, 240);
  const kinds = report.truth.kinds as Record<string, { kept: number; total: number }>;
  assert.equal(Object.values(kinds).reduce((s, k) => s + k.kept, 0), report.selection.kept, 'truth counts add up to the selection');
  assert.equal(report.reshard.written, report.selection.kept);
  const png = readFileSync(report.histograms[0]);
  assert.deepEqual([...png.subarray(0, 8)], [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
  assert.ok(existsSync(join(dir, 'out', 'filter', 'config.json')) && existsSync(join(dir, 'out', 'selection.npy')));

  // The histogram behind the PNG: every scored row in one bin, split by ground-truth kind as the truth report counts them.
  const shards = await listShards(join(dir, 'synth', 'pretrain'));
  const truthKinds = await readTruthKinds(shards);
  const h = await scoreHistogram(join(dir, 'out', 'scores'), 'dfn', 'cosine', 10, (uid) => truthKinds.kinds.get(uid));
  assert.equal(h.rows, 240);
  assert.ok(h.min >= -1 && h.min < h.max && h.max <= 1);
  for (const [kind, c] of Object.entries(kinds)) assert.equal(h.counts[kind]!.reduce((a, b) => a + b, 0), c.total, kind);
  // The report from truth read once equals the one that streams the shards (what `loom select --truth` runs).
  assert.deepEqual(report.truth, await truthReport(shards, await readUidNpy(join(dir, 'out', 'selection.npy'))));

  const again = loom(...args);
  assert.equal(again.status, 0, again.stderr);
  const second = JSON.parse(again.stdout);
  assert.equal(second.filter, null, 'the trained filter is reused');
  assert.equal(second.scores.dfn.shards_skipped, 6);
  assert.equal(second.selection.kept, report.selection.kept);
});

test('loom curate refuses runs that cannot work, before any scoring', () => {
  const shards = join(dir, 'synth', 'pretrain');
  const cases: Array<[string[], RegExp]> = [
    [['--model', 'x', '--rule', 'clip.cosine > 0'], /names scorer\(s\) clip but this run scores only 'dfn'/],
    [['--rule', 'dfn.cosine > 0'], /nothing to score with/],
    [['--model', 'x', '--train-filter', 'y', '--rule', 'dfn.cosine > 0'], /at most one of --model/],
    [['--model', 'x', '--mlm-filter', 'y', '--mlm-name', 'dfn', '--rule', 'dfn.cosine > 0'], /need different names/],
    [['--mlm-filter', 'y', '--mlm-name', 'Bad!', '--rule', 'dfn.cosine > 0'], /--mlm-name 'Bad!'/],
  ];
  for (const [args, message] of cases) {
    const run = loom('curate', '--shards', shards, '--out', join(dir, 'refused'), ...args);
    assert.equal(run.status, 2, `${args.join(' ')}: ${run.stderr}`);
    assert.match(run.stderr, message);
  }
  assert.ok(!existsSync(join(dir, 'refused', 'scores')), 'nothing was scored');
});

test('loom curate with a CLIP-style scorer and MLM-Filter selects the union of their rules', async () => {
  const exportDir = join(dir, 'mlmf-export');
  const made = spawnSync(pythonExecutable(), [join(repoRoot(), 'python', 'tests', 'fixtures', 'tiny_export.py'), exportDir], { encoding: 'utf8', env });
  assert.equal(made.status, 0, made.stderr);
  const out = join(dir, 'union');
  const rule = 'top(dfn.cosine, 0.2) | top(mlmf.semantic_understanding, 0.25)';
  // A pool of 12: the tiny model's MLM-Filter prompts are long (the criteria in byte-level tokens).
  const small = loom('synth', '--out', join(dir, 'small'), '--samples', '12', '--seed', '5', '--sft', '0', '--bench', '0', '--quiet');
  assert.equal(small.status, 0, small.stderr);
  const run = loom('curate', '--shards', join(dir, 'small', 'pretrain'), '--model', filter, '--mlm-filter', exportDir, '--mlm-batch-size', '4',
    '--rule', rule, '--truth', '--out', out, '--json');
  assert.equal(run.status, 0, run.stderr);
  const report = JSON.parse(run.stdout);
  assert.deepEqual(report.scorers.map((s: { name: string; kind: string }) => [s.name, s.kind]), [['dfn', 'clip'], ['mlmf', 'mlm-filter']]);
  assert.equal(report.scores.dfn.samples, 12);
  assert.equal(report.scores.mlmf.samples, 12);
  assert.deepEqual(report.histograms.map((p: string) => p.slice(out.length + 1)), ['hist_dfn.cosine.png', 'hist_mlmf.semantic_understanding.png']);

  // The union, recomputed from the sidecars with the thresholds the selection resolved for the two top fractions.
  const [dfnAtom, mlmfAtom] = report.selection.atoms as Array<{ threshold: number; passed: number }>;
  const [dfnCut, mlmfCut] = [Math.fround(dfnAtom!.threshold), Math.fround(mlmfAtom!.threshold)];
  const expected = new Set<string>();
  const index = await listSidecars(join(out, 'scores'));
  for (const perScorer of index.shards.values()) {
    const dfn = await readSidecar(perScorer.get('dfn')!, ['cosine'], { uids: true });
    const mlmf = await readSidecar(perScorer.get('mlmf')!, ['semantic_understanding'], { uids: true });
    assert.deepEqual(mlmf.uids, dfn.uids, 'both scorers score the same samples in the same order');
    dfn.uids.forEach((uid, i) => {
      const su = mlmf.columns.get('semantic_understanding')![i]!;
      assert.ok(su >= 0 && su <= 100, `semantic_understanding ${su} is on the 0-100 scale`);
      if (dfn.columns.get('cosine')![i]! >= dfnCut || su >= mlmfCut) expected.add(uid);
    });
  }
  const selected = await readUidNpy(join(out, 'selection.npy'));
  assert.equal(selected.size, expected.size);
  for (const uid of expected) assert.ok(selected.indexOf(uid) >= 0, `${uid} is selected`);
  assert.equal(report.selection.kept, expected.size);
  assert.ok(dfnAtom!.passed > 0 && mlmfAtom!.passed > 0 && expected.size >= Math.max(dfnAtom!.passed, mlmfAtom!.passed));
});

/** Every process under `root` (torchrun's workers run in sessions of their own), stopped first so none
 * can finish a file while the others are being killed: a node lost mid-job. */
function killTree(root: number): void {
  const ps = spawnSync('ps', ['-e', '-o', 'pid=,ppid='], { encoding: 'utf8' });
  const children = new Map<number, number[]>();
  for (const line of ps.stdout.trim().split('\n')) {
    const [pid, ppid] = line.trim().split(/\s+/).map(Number) as [number, number];
    children.set(ppid, [...(children.get(ppid) ?? []), pid]);
  }
  const tree: number[] = [];
  for (const queue = [root]; queue.length > 0; ) {
    const pid = queue.shift()!;
    tree.push(pid);
    queue.push(...(children.get(pid) ?? []));
  }
  for (const signal of ['SIGSTOP', 'SIGKILL'] as const) {
    for (const pid of tree) {
      try {
        process.kill(pid, signal);
      } catch {
        // already gone
      }
    }
  }
}

// Byte-identity with an uninterrupted run after a kill and a relaunch with another process count is
// python/tests/test_curate_runner.py's (the score verb, killed, relaunched with 2 ranks, sidecars
// compared byte for byte); here the CLI's part: killing the whole torchrun tree mid-way leaves no
// sidecar a relaunch trusts wrongly, and the relaunch reports and finishes the rest.
test('loom curate killed mid-way under torchrun and relaunched with one process finishes the rest', async () => {
  const shards = join(dir, 'synth', 'pretrain');
  const curate = (out: string, nproc: string) => ['curate', '--shards', shards, '--model', filter, '--batch-size', '2', '--rule', 'dfn.cosine > -2', '--nproc-per-node', nproc, '--out', out, '--json'];

  const killedOut = join(dir, 'killed');
  const scores = join(killedOut, 'scores');
  const child = spawn(process.execPath, loomArgs(...curate(killedOut, '2')), { env, stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const finishedSidecars = () => (existsSync(scores) ? readdirSync(scores).filter((n) => n.endsWith('.parquet') && !isTempPath(n)) : []);
  const deadline = Date.now() + 180_000;
  while (finishedSidecars().length === 0) {
    assert.equal(child.exitCode, null, `the run ended before a shard was scored: ${stderr}`);
    assert.ok(Date.now() < deadline, 'no shard was scored in time');
    await sleep(5);
  }
  killTree(child.pid!);
  await new Promise((done) => (child.exitCode !== null || child.signalCode !== null ? done(null) : child.on('close', done)));
  const done = finishedSidecars().length;
  assert.ok(done >= 1 && done < 6, `killed after ${done} of 6 shards: not mid-way`);

  const relaunch = loom(...curate(killedOut, '1'));
  assert.equal(relaunch.status, 0, relaunch.stderr);
  const report = JSON.parse(relaunch.stdout);
  assert.equal(report.scores.dfn.shards_skipped, done);
  assert.equal(report.scores.dfn.shards_scored, 6 - done);
  assert.deepEqual(readdirSync(scores).filter(isTempPath), [], 'no temporary files are left');
  const names = (await listShards(shards)).map((p) => p.split('/').at(-1)!.replace(/\.tar$/, '')).sort();
  const sidecarNames = readdirSync(scores).sort();
  assert.equal(sidecarNames.length, 6);
  names.forEach((shard, i) => assert.ok(sidecarNames[i]!.startsWith(shard), `${sidecarNames[i]} is the sidecar of ${shard}`));
  let rows = 0;
  for (const name of sidecarNames) rows += (await readSidecar(join(scores, name), ['cosine'], { uids: true })).uids.length;
  assert.equal(rows, 240, 'every sample scored exactly once');
  assert.equal(report.selection.kept, 240);
});
