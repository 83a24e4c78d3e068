// Numeric bounds in the config schema, and fuzzing of the resolver: a bad value fails at
// `--set` / `config init` with its key path, never later with a stack trace.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import fc from 'fast-check';
import { configErrorPaths, resolveRunConfig, validateRunConfig } from '../../../src/config/resolve.js';
import { presetDefaults } from '../../../src/config/presets.js';
import { LoomError } from '../../../src/util/errors.js';
import { repoRoot } from '../../../src/util/paths.js';

const resolveWith = (assignments: string[]) => resolveRunConfig({ preset: 'tiny', stage: 'pretrain', name: 'run', overrides: [], assignments });

test('--set data.seq_len=99999999999 fails at config time naming the key', () => {
  assert.throws(() => resolveWith(['data.seq_len=99999999999']), (err: Error) => err instanceof LoomError && /data\.seq_len/.test(err.message));
  const cli = spawnSync(process.execPath, [join(repoRoot(), 'bin', 'loom.js'), 'config', 'init', '--preset', 'tiny', '--name', 'x', '--set', 'data.seq_len=99999999999'], { encoding: 'utf8' });
  assert.notEqual(cli.status, 0);
  assert.match(cli.stderr, /data\.seq_len/);
  assert.doesNotMatch(cli.stderr, /at .*\.js:\d+/, "no stack trace");
});

test('each numeric field with a sane bound refuses values past it, and both presets stay inside', () => {
  const cases: Array<[string, unknown]> = [
    ['data.seq_len', 2 ** 21], ['model.vision.image_size', 9000], ['model.vision.patch_size', 9000], ['image_grid', 257],
    ['train.global_batch', 2 ** 25], ['train.micro_batch', 100_000], ['train.lr', 11], ['train.lr', 0], ['train.eps', 2],
    ['train.weight_decay', -1], ['train.epochs', 1e7], ['train.max_steps', 2e9], ['train.checkpoint_every', 2e9],
    ['train.keep_checkpoints', 20_000], ['train.loader_workers', 257], ['train.shuffle_buffer', 2e7], ['dist.nnodes', 200_000],
    ['dist.nproc_per_node', 1025], ['seed', 2 ** 32], ['model.llm.hidden_size', 100_000], ['model.projector.hidden_size', 100_000],
    ['data.max_images_per_sequence', 100_000], ['model.vision.feature_layer', 5000], ['train.grad_clip', 1e7],
  ];
  for (const [key, value] of cases) {
    assert.throws(() => resolveWith([`${key}=${JSON.stringify(value)}`]), (err: Error) => err instanceof LoomError && err.message.includes(key), `${key}=${value}`);
  }
  for (const preset of ['tiny', 'open-qwen2vl-2b'] as const) {
    for (const stage of ['pretrain', 'sft'] as const) assert.deepEqual(configErrorPaths(presetDefaults(preset, stage, 'x')), []);
  }
});

test('--set refuses prototype keys and empty path parts', () => {
  for (const bad of ['__proto__.x=1', 'train.constructor=1', 'train..lr=1', '.seed=1']) {
    assert.throws(() => resolveWith([bad]), LoomError, bad);
  }
  assert.equal(({} as Record<string, unknown>).x, undefined);
});

const KEYS = ['seed', 'image_grid', 'data.seq_len', 'data.resize', 'train.lr', 'train.betas', 'train.betas.0', 'model.vision.image_std', 'dist.master_port', 'tokenizer.path', 'nope', 'train', 'data.shards'];
const VALUES = fc.oneof(
  fc.constantFrom('1e999', '-0', 'NaN', 'null', 'true', '[]', '{}', '"x"', '99999999999', '-1', '0.5', '1e-400', '[0.9,0.95]', '{"a":1}'),
  fc.string({ maxLength: 12 }),
  fc.double().map((d) => String(d)),
  fc.integer().map((i) => String(i)),
);

test('fuzz: random --set assignments give a valid config or a LoomError, nothing else', () => {
  fc.assert(
    fc.property(fc.array(fc.tuple(fc.oneof(fc.constantFrom(...KEYS), fc.string({ maxLength: 10 })), VALUES), { maxLength: 4 }), (sets) => {
      try {
        const config = resolveWith(sets.map(([k, v]) => `${k}=${v}`));
        assert.deepEqual(configErrorPaths(config), []);
      } catch (err) {
        assert.ok(err instanceof LoomError, `${JSON.stringify(sets)}: ${String(err)}`);
      }
    }),
    { numRuns: 800 },
  );
});

test('fuzz: random JSON values as configs give a config or a LoomError', () => {
  const base = presetDefaults('tiny', 'pretrain', 'x') as unknown as Record<string, unknown>;
  const mutated = fc.tuple(fc.constantFrom(...Object.keys(base)), fc.jsonValue()).map(([k, v]) => ({ ...base, [k]: v }));
  fc.assert(
    fc.property(fc.oneof(fc.jsonValue(), mutated), (value) => {
      try {
        validateRunConfig(value, 'fuzz');
      } catch (err) {
        assert.ok(err instanceof LoomError, String(err));
      }
    }),
    { numRuns: 800 },
  );
});
