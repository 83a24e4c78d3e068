// `loom train` as a user runs it (node bin/loom.js) up to the point where the trainer would start
// (--dry-run, refusals), the config it writes checked by the Python side, and the pieces that
// turn the worker's events into what the user reads.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { repoRoot } from '../../../src/util/paths.js';
import { formatCommand, runWorker } from '../../../src/protocol/worker.js';
import { configDifferences } from '../../../src/train/resume.js';
import { TrainMonitor } from '../../../src/train/run.js';
import { formatMetricLine, renderTrainSummary } from '../../../src/cli/render/train.js';
import { fixture } from '../protocol/helpers.js';
import { startProgress } from '../../../src/cli/progress.js';

const cli = join(repoRoot(), 'bin', 'loom.js');

function inTempDir(body: (dir: string) => void | Promise<void>): () => Promise<void> {
  return async () => {
    const dir = mkdtempSync(join(tmpdir(), 'loom-train-'));
    try {
      await body(dir);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  };
}

function loom(cwd: string, ...args: string[]) {
  return spawnSync(process.execPath, [cli, 'train', ...args], { cwd, encoding: 'utf8', timeout: 60_000 });
}

const readJson = (path: string): Record<string, any> => JSON.parse(readFileSync(path, 'utf8'));

test(
  '--dry-run --nproc-per-node 2 writes a config the Python side accepts and prints the torchrun command for it',
  inTempDir(async (dir) => {
    const run = loom(dir, '--name', 'pt', '--nproc-per-node', '2', '--packed', 'data/packed', '--stop-after-steps', '5', '--dry-run');
    assert.equal(run.status, 0, run.stderr);
    const configPath = join(dir, 'runs', 'pt', 'config.json');
    const escaped = configPath.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');
    assert.match(
      run.stdout.trim(),
      new RegExp(`^\\S+ -m torch\\.distributed\\.run --nproc-per-node=2 .* -m loom_compute train --config ${escaped} --stop-after-steps 5$`),
    );
    const config = readJson(configPath);
    assert.equal(config.name, 'pt');
    assert.equal(config.dist.nproc_per_node, 2);
    assert.equal(config.data.packed, join(dir, 'data', 'packed'), 'data.packed is made absolute');
    const { done } = await runWorker({ verb: 'validate-config', configPath, silent: true });
    assert.equal(done.valid, true);

    const json = loom(dir, '--name', 'pt', '--nproc-per-node', '2', '--dry-run', '--json');
    assert.equal(json.status, 0, json.stderr);
    const out = JSON.parse(json.stdout);
    assert.equal(out.run_dir, join(dir, 'runs', 'pt'));
    assert.equal(out.command, formatCommand(out.argv));
    assert.deepEqual(out.argv.slice(out.argv.indexOf('-m', 2)), ['-m', 'loom_compute', 'train', '--config', configPath]);
    assert.deepEqual(out.config, readJson(configPath));
  }),
);

test(
  'several nodes need --master-addr; with it every node gets the same rendezvous and its own rank',
  inTempDir((dir) => {
    const missing = loom(dir, '--name', 'mn', '--nnodes', '2', '--nproc-per-node', '8', '--dry-run');
    assert.equal(missing.status, 2);
    assert.match(missing.stderr, /^loom: error: training on 2 nodes needs --master-addr/m);
    assert.equal(existsSync(join(dir, 'runs', 'mn', 'config.json')), false, 'nothing written on a usage error');

    const node1 = loom(dir, '--name', 'mn', '--nnodes', '2', '--nproc-per-node', '8', '--node-rank', '1', '--master-addr', 'node0', '--dry-run');
    assert.equal(node1.status, 0, node1.stderr);
    assert.match(node1.stdout, / -m torch\.distributed\.run --nproc-per-node=8 --nnodes=2 --node-rank=1 --master-addr=node0 --master-port=29500 -m loom_compute train /);
    assert.deepEqual(readJson(join(dir, 'runs', 'mn', 'config.json')).dist, {
      nnodes: 2,
      nproc_per_node: 8,
      backend: 'gloo',
      master_addr: 'node0',
      master_port: 29500,
    });

    const badRank = loom(dir, '--name', 'mn', '--nnodes', '2', '--node-rank', '2', '--master-addr', 'node0', '--dry-run');
    assert.equal(badRank.status, 2);
    assert.match(badRank.stderr, /--node-rank must be below --nnodes \(2\), got 2/);
  }),
);

test(
  'a fresh run into a directory with a checkpoint is refused; --resume may change the schedule but not the lr',
  inTempDir((dir) => {
    const first = loom(dir, '--name', 'r', '--set', 'train.max_steps=10', '--dry-run');
    assert.equal(first.status, 0, first.stderr);
    const configPath = join(dir, 'runs', 'r', 'config.json');
    const saved = readFileSync(configPath, 'utf8');
    // A killed save (.tmp) and a directory without trainer.json are not checkpoints; a complete one is.
    mkdirSync(join(dir, 'runs', 'r', 'checkpoints', 'step_00000002.tmp'), { recursive: true });
    mkdirSync(join(dir, 'runs', 'r', 'checkpoints', 'step_00000003'), { recursive: true });
    const notYet = loom(dir, '--name', 'r', '--set', 'train.max_steps=10', '--dry-run');
    assert.equal(notYet.status, 0, notYet.stderr);
    mkdirSync(join(dir, 'runs', 'r', 'checkpoints', 'step_00000001'), { recursive: true });
    writeFileSync(join(dir, 'runs', 'r', 'checkpoints', 'step_00000001', 'trainer.json'), '{}');

    const fresh = loom(dir, '--name', 'r', '--set', 'train.max_steps=10', '--dry-run');
    assert.equal(fresh.status, 2);
    assert.match(fresh.stderr, /^loom: error: .*already holds a checkpoint \(step_00000001\): pass --resume/m);
    assert.equal(readFileSync(configPath, 'utf8'), saved, 'the saved config is left alone');

    const lr = loom(dir, '--name', 'r', '--set', 'train.max_steps=10', '--set', 'train.lr=0.1', '--resume', '--dry-run');
    assert.equal(lr.status, 2);
    assert.match(lr.stderr, /^loom: error: --resume: the config differs from the run's .* under train\.lr;/m);
    assert.equal(readFileSync(configPath, 'utf8'), saved);

    const longer = loom(dir, '--name', 'r', '--set', 'train.max_steps=20', '--resume', '--dry-run');
    assert.equal(longer.status, 0, longer.stderr);
    assert.match(longer.stdout.trim(), / -m loom_compute train --config \S+ --resume$/);
    const updated = readJson(configPath);
    assert.equal(updated.train.max_steps, 20, 'the new schedule is what the worker reads');
    assert.deepEqual(configDifferences(JSON.parse(saved), updated), ['train.max_steps']);

    const asIs = loom(dir, '--name', 'r', '--resume', '--dry-run', '--json');
    assert.equal(asIs.status, 0, asIs.stderr);
    assert.deepEqual(JSON.parse(asIs.stdout).config, updated, 'no config options: the saved config as is');

    const otherName = loom(dir, '--config', configPath, '--name', 'other', '--resume', '--dry-run');
    assert.equal(otherName.status, 2);
    assert.match(otherName.stderr, /--name other does not match the name 'r' in /);

    const nothing = loom(dir, '--name', 'never-ran', '--resume', '--dry-run');
    assert.equal(nothing.status, 2);
    assert.match(nothing.stderr, /--resume: .*never-ran.config\.json does not exist/);
  }),
);

test(
  'training needs data.packed to be set and to be a directory',
  inTempDir((dir) => {
    const unset = loom(dir, '--name', 'p');
    assert.equal(unset.status, 2);
    assert.match(unset.stderr, /^loom: error: data\.packed is not set: give --packed DIR/m);
    const missing = loom(dir, '--name', 'p', '--packed', 'nowhere');
    assert.equal(missing.status, 2);
    assert.match(missing.stderr, new RegExp(`data\\.packed ${join(dir, 'nowhere').replace(/[.\\/]/g, '\\$&')} is not a directory`));
  }),
);

test('configDifferences names exactly the leaves that differ', () => {
  const leaf = fc.oneof(fc.integer(), fc.string(), fc.boolean(), fc.constant(null), fc.array(fc.integer(), { maxLength: 3 }));
  const key = fc.constantFrom('a', 'b', 'c', 'd');
  const tree = fc.letrec<{ node: unknown }>((tie) => ({
    node: fc.oneof({ depthSize: 'small' }, leaf, fc.dictionary(key, tie('node'), { minKeys: 1, maxKeys: 4 })),
  })).node;
  fc.assert(
    fc.property(fc.dictionary(key, tree, { minKeys: 1 }), fc.nat(), fc.string(), (config, pick, replacement) => {
      assert.deepEqual(configDifferences(config, structuredClone(config)), []);
      const leaves: string[][] = [];
      const walk = (value: unknown, path: string[]): void => {
        if (typeof value === 'object' && value !== null && !Array.isArray(value)) {
          for (const [k, v] of Object.entries(value)) walk(v, [...path, k]);
        } else leaves.push(path);
      };
      walk(config, []);
      const path = leaves[pick % leaves.length]!;
      const changed = structuredClone(config) as Record<string, any>;
      let parent = changed;
      for (const k of path.slice(0, -1)) parent = parent[k];
      const before = parent[path[path.length - 1]!];
      parent[path[path.length - 1]!] = `changed:${replacement}`;
      const expected = JSON.stringify(before) === JSON.stringify(`changed:${replacement}`) ? [] : [path.join('.')];
      assert.deepEqual(configDifferences(config, changed), expected);
    }),
  );
});

test('the summary shows the worker\'s numbers, derives missing rates, and says how to continue a stopped run', () => {
  const done = {
    run_dir: '/r/pt',
    steps: 30,
    total_steps: 100,
    finished: false,
    resumed_from_step: 10,
    final_loss: 2.345678,
    seconds: 12.5,
    seen: { tokens: 250_000, images: 1000 },
    mean_mfu: null,
    checkpoint: '/r/pt/checkpoints/step_00000030',
    export: null,
    metrics: '/r/pt/metrics.jsonl',
    loss_curve: '/r/pt/loss.png',
  };
  const text = renderTrainSummary(done);
  assert.match(text, /^stopped \/r\/pt at step 30 of 100 \(resumed from step 10\) in 12\.5 s; rerun with --resume to continue$/m);
  assert.match(text, /^ {2}final loss +2\.3457$/m);
  assert.match(text, new RegExp(`^ {2}tokens/s +${(250_000 / 12.5 / 1000).toFixed(1)}k$`, 'm'));
  assert.match(text, new RegExp(`^ {2}images/s +${(1000 / 12.5).toFixed(1)}$`, 'm'));
  assert.match(text, /^ {2}MFU +n\/a on CPU/m);
  assert.match(text, /^ {2}export +n\/a$/m);
  assert.match(text, /^ {2}checkpoint +\/r\/pt\/checkpoints\/step_00000030$/m);

  const finished = renderTrainSummary({ ...done, finished: true, resumed_from_step: null, mean_mfu: 0.4123, mean_tokens_per_s: 1234.5, export: '/r/pt/export' });
  assert.match(finished, /^trained \/r\/pt at step 30 of 100 in 12\.5 s$/m);
  assert.match(finished, /^ {2}MFU +41\.2%$/m);
  assert.match(finished, /^ {2}tokens\/s +1235$/m, 'the worker\'s own mean wins over count / seconds');
  assert.match(finished, /^ {2}export +\/r\/pt\/export$/m);
});

test('metric events from a real worker become one line each, with the step out of the total', async () => {
  const lines: string[] = [];
  const monitor = new TrainMonitor((metric, total) => lines.push(formatMetricLine(metric, total)));
  await runWorker(fixture('progress', ['--steps', '3'], { onEvent: monitor.onEvent }));
  assert.deepEqual(lines, [1, 2, 3].map((step) => `train step ${step}/3: loss ${(1 / step).toFixed(4)}`));
  assert.equal(monitor.barSuffix(), `loss ${(1 / 3).toFixed(4)}`);
  assert.equal(
    formatMetricLine({ step: 7, loss: 1.5, lr: 0.002, grad_norm: 0.25, tokens_per_s: 20_400, images_per_s: 88, mfu: 0.26, mem_gib: 41.26 }, 10),
    'train step 7/10: loss 1.5000, lr 2.00e-3, grad_norm 0.250, 20.4k tokens/s, 88.0 images/s, MFU 26.0%, 41.3 GiB',
  );
});

test('a progress suffix (the loss) ends each plain progress line; without one the line is unchanged', () => {
  const written: string[] = [];
  const original = process.stderr.write;
  const isTTY = process.stderr.isTTY;
  process.stderr.isTTY = false;
  process.stderr.write = ((chunk: string) => (written.push(chunk), true)) as typeof process.stderr.write;
  try {
    let loss = '';
    const withSuffix = startProgress('train', 4, { unit: 'steps', plainIntervalS: 0, suffix: () => loss });
    withSuffix.update(1);
    loss = 'loss 0.5000';
    withSuffix.update(2);
    startProgress('pack', undefined, { unit: 'samples', plainIntervalS: 0 }).update(7);
  } finally {
    process.stderr.write = original;
    process.stderr.isTTY = isTTY;
  }
  assert.equal(written.length, 3, written.join(''));
  assert.match(written[0]!, /^train: 1\/4 steps \([\d.]+\/s\)\n$/);
  assert.match(written[1]!, /^train: 2\/4 steps \([\d.]+\/s\), loss 0\.5000\n$/);
  assert.match(written[2]!, /^pack: 7 samples \([\d.]+\/s\)\n$/);
});
