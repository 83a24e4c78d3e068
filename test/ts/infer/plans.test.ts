// What `loom chat`, `generate`, `export` and `import` decide before a worker starts: which folder is
// the model (a run directory means its export), which outputs may be replaced, the sampling
// arguments, the torchrun command, and the base config an import starts from (checked by Python).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { importBaseConfig, planExport, planImport, runNameFor, writeBaseConfig } from '../../../src/infer/convert.js';
import { planGenerate } from '../../../src/infer/generate.js';
import { resolveExportDir } from '../../../src/infer/paths.js';
import { samplingArgs } from '../../../src/infer/sampling.js';
import { runWorker } from '../../../src/protocol/worker.js';
import { LoomError } from '../../../src/util/errors.js';

function inTemp(body: (dir: string) => void | Promise<void>): () => Promise<void> {
  return async () => {
    const dir = mkdtempSync(join(tmpdir(), 'loom-infer-plans-'));
    try {
      await body(dir);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  };
}

/** A run directory with config.json and, unless `withExport` is false, export/loom.json. */
function runDir(dir: string, name: string, withExport = true): string {
  const run = join(dir, 'runs', name);
  mkdirSync(run, { recursive: true });
  writeFileSync(join(run, 'config.json'), '{}');
  if (withExport) {
    mkdirSync(join(run, 'export'));
    writeFileSync(join(run, 'export', 'loom.json'), '{}');
  }
  return run;
}

const usageError = (pattern: RegExp) => (err: unknown) => {
  assert.ok(err instanceof LoomError, String(err));
  assert.match(err.message, pattern);
  assert.equal(err.exitCode, 2);
  return true;
};

test(
  'a model is an export folder, or a run directory whose export/ holds loom.json; anything else is refused with the reason',
  inTemp((dir) => {
    const run = runDir(dir, 'sft');
    assert.equal(resolveExportDir(join(run, 'export'), '--model'), join(run, 'export'));
    assert.equal(resolveExportDir('runs/sft', '--model', dir), join(run, 'export'), 'a run directory, relative to cwd');
    const early = runDir(dir, 'early', false);
    assert.throws(() => resolveExportDir(early, '--model'), usageError(/not a Loom export: .*has not written export\/ yet/));
    const hf = join(dir, 'hf');
    mkdirSync(hf);
    writeFileSync(join(hf, 'config.json'), '{}');
    mkdirSync(join(hf, 'export'));
    assert.throws(() => resolveExportDir(hf, '--model'), usageError(/--model .*hf: not a Loom export/));
    assert.throws(() => resolveExportDir(join(dir, 'nope'), '--model'), usageError(/nope: no such directory/));
    writeFileSync(join(dir, 'file'), 'x');
    assert.throws(() => resolveExportDir(join(dir, 'file'), '--model'), usageError(/file: not a directory/));
  }),
);

test('sampling flags become worker arguments; out-of-range values name the flag', () => {
  assert.deepEqual(samplingArgs({}), [], 'nothing given: the verb applies its defaults');
  assert.deepEqual(samplingArgs({ maxNewTokens: 16, temperature: 0.7, topP: 0.9, topK: 40, seed: 3, stop: ['\n\n', '--'], device: 'cpu', dtype: 'float32' }), [
    '--max-new-tokens', '16', '--temperature', '0.7', '--top-p', '0.9', '--top-k', '40', '--seed', '3', '--stop=\n\n', '--stop=--', '--device', 'cpu', '--dtype', 'float32',
  ]);
  assert.throws(() => samplingArgs({ temperature: -1 }), usageError(/--temperature: expected a number >= 0/));
  assert.throws(() => samplingArgs({ topP: 0 }), usageError(/--top-p: expected a number in \(0, 1\]/));
  assert.throws(() => samplingArgs({ topP: 1.5 }), usageError(/--top-p/));
  assert.throws(() => samplingArgs({ maxNewTokens: 0 }), usageError(/--max-new-tokens/));
  assert.throws(() => samplingArgs({ topK: 1.5 }), usageError(/--top-k/));
  assert.throws(() => samplingArgs({ stop: [''] }), usageError(/--stop: an empty stop string/));
  assert.throws(() => samplingArgs({ device: 'tpu' }), usageError(/--device: expected one of auto, cpu, cuda or cuda:N/));
  assert.deepEqual(samplingArgs({ device: 'cuda:1' }), ['--device', 'cuda:1']);
});

test(
  'generate: absolute paths, torchrun for several GPUs, and refusals before anything starts',
  inTemp((dir) => {
    const run = runDir(dir, 'sft');
    writeFileSync(join(dir, 'prompts.jsonl'), '{"id": "a", "image": null, "prompt": "hi"}\n');
    const one = planGenerate({ model: 'runs/sft', input: 'prompts.jsonl', out: 'answers.jsonl', gpus: 1, sampling: { maxNewTokens: 8 } }, dir);
    assert.equal(one.launcher, undefined);
    assert.deepEqual(one.argv.slice(1), [
      '-m', 'loom_compute', 'generate', '--model', join(run, 'export'), '--input', join(dir, 'prompts.jsonl'), '--out', join(dir, 'answers.jsonl'), '--max-new-tokens', '8',
    ]);
    const eight = planGenerate({ model: 'runs/sft', input: 'prompts.jsonl', out: 'answers.jsonl', gpus: 8, batchSize: 32, sampling: {} }, dir);
    assert.deepEqual(eight.argv.slice(1, 6), ['-m', 'torch.distributed.run', '--nproc-per-node=8', '--standalone', '--nnodes=1']);
    assert.deepEqual(eight.argv.slice(6, 9), ['-m', 'loom_compute', 'generate']);
    assert.ok(eight.args.join(' ').includes('--batch-size 32'));
    const request = { model: 'runs/sft', input: 'prompts.jsonl', out: 'answers.jsonl', gpus: 1, sampling: {} };
    assert.throws(() => planGenerate({ ...request, input: 'missing.jsonl' }, dir), usageError(/--input missing\.jsonl: no such file/));
    assert.throws(() => planGenerate({ ...request, out: 'prompts.jsonl' }, dir), usageError(/--out prompts\.jsonl is the --input file/));
    assert.throws(() => planGenerate({ ...request, model: 'runs' }, dir), usageError(/--model runs: not a Loom export/));
    assert.throws(() => planGenerate({ ...request, sampling: { topP: 2 } }, dir), usageError(/--top-p/));
  }),
);

test(
  'export: a run directory means its export; --out must be new, empty or an earlier output of that format, and apart from the source',
  inTemp((dir) => {
    const run = runDir(dir, 'sft');
    const plan = planExport({ format: 'llava-hf', source: 'runs/sft', out: 'hf/sft' }, dir);
    assert.equal(plan.source, join(run, 'export'));
    assert.deepEqual(plan.args, ['--format', 'llava-hf', '--source', join(run, 'export'), '--out', join(dir, 'hf', 'sft')]);
    assert.deepEqual(plan.argv.slice(1, 4), ['-m', 'loom_compute', 'export']);

    const earlier = join(dir, 'earlier');
    mkdirSync(earlier);
    writeFileSync(join(earlier, 'config.json'), '{}');
    assert.equal(planExport({ format: 'llava-hf', source: run, out: earlier }).out, earlier, 'an earlier llava-hf output is replaced');
    assert.throws(() => planExport({ format: 'tokenizer', source: run, out: earlier }), usageError(/--out .*earlier holds files that are not an earlier tokenizer export \("config\.json"\)/));
    const foreign = join(dir, 'photos');
    mkdirSync(foreign);
    writeFileSync(join(foreign, 'holiday.jpg'), 'x');
    assert.throws(() => planExport({ format: 'llava-hf', source: run, out: foreign }), usageError(/holds files that are not .*"holiday\.jpg".*nothing was written/));
    // A native export is never taken for an earlier output, and --out may not overlap the source.
    const other = runDir(dir, 'other');
    writeFileSync(join(other, 'export', 'config.json'), '{}');
    assert.throws(() => planExport({ format: 'llava-hf', source: run, out: join(other, 'export') }), usageError(/holds files that are not an earlier llava-hf export/));
    assert.throws(() => planExport({ format: 'llava-hf', source: run, out: join(run, 'export', 'hf') }), usageError(/overlap/));
    assert.throws(() => planExport({ format: 'gguf', source: run, out: 'x' }), usageError(/--format 'gguf': expected one of llava-hf, tokenizer/));
  }),
);

test(
  'import: SRC and the optional folders must exist; the base config is the preset\'s SFT config, named after the run, and Python accepts it',
  inTemp(async (dir) => {
    const src = join(dir, 'Open-Qwen2VL');
    mkdirSync(join(src, 'checkpoints'), { recursive: true });
    const vision = join(dir, 'siglip');
    mkdirSync(vision);
    const plan = planImport({ format: 'prismatic', source: 'Open-Qwen2VL', out: 'runs/oq2vl/export', vision: 'siglip' }, dir);
    assert.equal(plan.preset, 'open-qwen2vl-2b', 'the released models are the 2B recipe');
    assert.deepEqual(plan.argsWithoutConfig, ['--format', 'prismatic', '--source', src, '--out', join(dir, 'runs', 'oq2vl', 'export'), '--vision', vision]);
    assert.equal(plan.baseConfig.stage, 'sft');
    assert.equal(plan.baseConfig.name, 'oq2vl');
    assert.equal(plan.baseConfig.image_grid, 27);
    assert.equal(importBaseConfig('tiny', join(dir, 'x')).image_grid, 8);
    assert.equal(runNameFor('/a/b/My Model!'), 'My-Model-');
    assert.equal(runNameFor('/a/__'), 'imported');

    const base = await writeBaseConfig(plan.baseConfig);
    try {
      assert.deepEqual(JSON.parse(readFileSync(base.path, 'utf8')), plan.baseConfig);
      const { done } = await runWorker({ verb: 'validate-config', configPath: base.path, silent: true });
      assert.equal(done.valid, true);
      assert.equal(done.stage, 'sft');
    } finally {
      await base.cleanup();
    }
    assert.equal(existsSync(base.path), false, 'the temporary config is removed');

    const request = { format: 'prismatic', source: src, out: join(dir, 'out') };
    assert.throws(() => planImport({ ...request, source: join(dir, 'nope') }), usageError(/SRC .*nope: no such file or directory/));
    assert.throws(() => planImport({ ...request, vision: join(dir, 'no-siglip') }), usageError(/--vision .*no-siglip: no such file or directory/));
    assert.throws(() => planImport({ ...request, format: 'gguf' }), usageError(/--format 'gguf': expected one of prismatic, llava, llava-hf/));
    assert.throws(() => planImport({ ...request, preset: 'huge' }), usageError(/--preset 'huge'/));
    assert.throws(() => planImport({ ...request, out: join(src, 'export') }), usageError(/overlap/));
    const earlier = join(dir, 'earlier');
    mkdirSync(earlier);
    writeFileSync(join(earlier, 'loom.json'), '{}');
    assert.equal(planImport({ ...request, out: earlier }).out, earlier, 'an earlier export is replaced');
    writeFileSync(join(dir, 'out-file'), 'x');
    assert.throws(() => planImport({ ...request, out: join(dir, 'out-file') }), usageError(/exists and is not a directory/));
  }),
);
