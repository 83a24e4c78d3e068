import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import fc from 'fast-check';
import { configErrorPaths, deepMerge, resolveRunConfig, applyAssignment } from '../../../src/config/resolve.js';
import { runConfigJsonSchema, PRESETS, STAGES, imageTokensPerImage } from '../../../src/config/schema.js';
import { pythonExecutable, repoRoot } from '../../../src/util/paths.js';
import { loadConfigVectors } from './vectors.js';

const vectors = loadConfigVectors();

/** A missing key is reported at its parent by JSON Schema and at the key itself by zod: both count. */
function reportsAtOrBelow(paths: string[], key: string): boolean {
  return paths.some((p) => key === '' || p === key || p.startsWith(`${key}.`));
}

test('shared vectors: TypeScript verdicts match the expected ones and name the bad key', () => {
  assert.ok(vectors.filter((v) => v.valid).length >= 4 && vectors.filter((v) => !v.valid).length >= 20);
  for (const v of vectors) {
    const paths = configErrorPaths(v.config);
    if (v.valid) assert.deepEqual(paths, [], `${v.file} should be valid`);
    else {
      assert.ok(paths.length > 0, `${v.file} should be invalid`);
      assert.ok(reportsAtOrBelow(paths, v.errorAt ?? ''), `${v.file}: expected an error at '${v.errorAt}', got ${JSON.stringify(paths)}`);
    }
  }
});

test('shared vectors: Python (jsonschema on the exported schema) gives the same verdicts and paths', () => {
  const script = [
    'import json, sys',
    'from loom_compute.config import config_error_paths',
    'cases = json.load(sys.stdin)',
    'print(json.dumps([config_error_paths(c) for c in cases]))',
  ].join('\n');
  const run = spawnSync(pythonExecutable(), ['-c', script], { input: JSON.stringify(vectors.map((v) => v.config)), encoding: 'utf8' });
  assert.equal(run.status, 0, run.stderr);
  const pythonPaths = JSON.parse(run.stdout) as string[][];
  vectors.forEach((v, i) => {
    const py = pythonPaths[i] ?? [];
    const ts = configErrorPaths(v.config);
    assert.equal(py.length === 0, ts.length === 0, `${v.file}: Python and TypeScript disagree (py ${JSON.stringify(py)}, ts ${JSON.stringify(ts)})`);
    if (!v.valid) assert.ok(reportsAtOrBelow(py, v.errorAt ?? ''), `${v.file}: Python did not report '${v.errorAt}': ${JSON.stringify(py)}`);
  });
});

test('the schema the Python package ships is exactly the one TypeScript exports', () => {
  const shipped = JSON.parse(readFileSync(join(repoRoot(), 'python/src/loom_compute/schema/run-config.schema.json'), 'utf8'));
  assert.deepEqual(shipped, runConfigJsonSchema(), 'run `node bin/loom.js config schema --out python/src/loom_compute/schema/run-config.schema.json`');
});

test('every preset resolves to a valid config at every stage, with the recipe image tokens', () => {
  for (const preset of PRESETS) {
    for (const stage of STAGES) {
      const config = resolveRunConfig({ preset, stage, name: `${preset}-${stage}` });
      assert.deepEqual(configErrorPaths(config), []);
      assert.equal(config.stage, stage);
    }
  }
  assert.equal(imageTokensPerImage(resolveRunConfig({ preset: 'open-qwen2vl-2b', stage: 'pretrain', name: 'a' })), 144);
  assert.equal(imageTokensPerImage(resolveRunConfig({ preset: 'open-qwen2vl-2b', stage: 'sft', name: 'a' })), 729);
});

test('overrides: --set parses JSON values, unknown keys and bad values are rejected with their path', () => {
  const config = resolveRunConfig({ preset: 'tiny', stage: 'pretrain', name: 'x', assignments: ['train.lr=0.5', 'data.shards=some/dir', 'train.max_steps=7'] });
  assert.equal(config.train.lr, 0.5);
  assert.equal(config.train.max_steps, 7);
  assert.ok(config.data.shards?.endsWith('/some/dir') && config.data.shards.startsWith('/'));
  assert.throws(() => resolveRunConfig({ preset: 'tiny', stage: 'pretrain', name: 'x', assignments: ['train.lrr=1'] }), /at train: Unrecognized key: "lrr"/);
  assert.throws(() => resolveRunConfig({ preset: 'tiny', stage: 'pretrain', name: 'x', assignments: ['train.lr=abc'] }), /at train\.lr/);
  assert.throws(() => resolveRunConfig({ preset: 'nope', stage: 'pretrain', name: 'x' }), /unknown preset 'nope'/);
  assert.throws(() => applyAssignment({}, 'novalue'), /key\.path=value/);
});

test('deepMerge: the override wins on every leaf it sets and the base keeps every other leaf (property)', () => {
  const leaf = fc.oneof(fc.integer(), fc.string(), fc.boolean(), fc.constant(null));
  const tree = fc.letrec((tie) => ({ node: fc.dictionary(fc.constantFrom('a', 'b', 'c', 'd'), fc.oneof({ depthSize: 'small' }, leaf, tie('node')), { noNullPrototype: true }) })).node;
  fc.assert(
    fc.property(tree, tree, (base, override) => {
      const merged = deepMerge(base, override) as Record<string, unknown>;
      for (const [k, v] of Object.entries(override)) {
        if (typeof v !== 'object' || v === null) assert.equal(merged[k], v);
      }
      for (const [k, v] of Object.entries(base)) if (!(k in override)) assert.deepEqual(merged[k], v);
      assert.deepEqual(deepMerge(merged, override), merged);
    }),
  );
});

test('CLI: `loom config init` writes a config that `loom config validate` accepts; a bad one exits 1 naming the key', () => {
  const cli = join(repoRoot(), 'bin', 'loom.js');
  const init = spawnSync(process.execPath, [cli, 'config', 'init', '--preset', 'open-qwen2vl-2b', '--stage', 'sft'], { encoding: 'utf8' });
  assert.equal(init.status, 0, init.stderr);
  assert.equal(JSON.parse(init.stdout).image_grid, 27);
  const bad = spawnSync(process.execPath, [cli, 'config', 'init', '--set', 'train.global_batch=0'], { encoding: 'utf8' });
  assert.equal(bad.status, 1);
  assert.match(bad.stderr, /loom: error: invalid run config[\s\S]*at train\.global_batch/);
});

test('the tiny preset fits its bundled tokenizer: every token id has an embedding row', async () => {
  const { TextTokenizer } = await import('../../../src/tokenize/tokenizer.js');
  const config = resolveRunConfig({ preset: 'tiny', stage: 'pretrain', name: 'x' });
  const tokenizer = await TextTokenizer.load(config.tokenizer.path!);
  const llm = config.model.llm.source.config as { vocab_size: number; max_position_embeddings: number };
  assert.ok(llm.vocab_size >= tokenizer.vocabSize, `vocab_size ${llm.vocab_size} < tokenizer ${tokenizer.vocabSize}`);
  assert.ok(llm.max_position_embeddings >= config.data.seq_len);
  for (const token of [config.tokenizer.image_token, config.tokenizer.eos_token, config.tokenizer.pad_token]) tokenizer.tokenId(token);
});
