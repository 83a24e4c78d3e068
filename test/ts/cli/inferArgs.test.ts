// `loom chat`, `generate`, `export` and `import` as a user runs them (node bin/loom.js), up to the
// point where a worker would start: argument errors exit 2 with one clear line and start nothing;
// dry runs print the exact command.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync, type SpawnSyncReturns } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { repoRoot } from '../../../src/util/paths.js';
import { formatCommand } from '../../../src/protocol/command.js';

const cli = join(repoRoot(), 'bin', 'loom.js');

function withRun(body: (dir: string, loom: (...args: string[]) => SpawnSyncReturns<string>) => void): () => void {
  return () => {
    const dir = mkdtempSync(join(tmpdir(), 'loom-infer-cli-'));
    try {
      mkdirSync(join(dir, 'runs', 'sft', 'export'), { recursive: true });
      writeFileSync(join(dir, 'runs', 'sft', 'config.json'), '{}');
      writeFileSync(join(dir, 'runs', 'sft', 'export', 'loom.json'), '{}');
      writeFileSync(join(dir, 'prompts.jsonl'), '{"id": "a", "image": null, "prompt": "hi"}\n');
      // A worker that would start fails the test loudly instead of loading anything.
      const env = { ...process.env, LOOM_PYTHON: join(dir, 'no-python-here') };
      body(dir, (...args) => spawnSync(process.execPath, [cli, ...args], { cwd: dir, encoding: 'utf8', timeout: 30_000, env }));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  };
}

function refused(run: SpawnSyncReturns<string>, pattern: RegExp): void {
  assert.equal(run.status, 2, `expected a usage error, got ${run.status}: ${run.stderr}`);
  assert.match(run.stderr, pattern);
  assert.doesNotMatch(run.stderr, /interpreter|Traceback|    at /, 'refused before any worker started, without a stack');
  assert.equal(run.stdout, '');
}

test(
  'loom chat refuses a model that is not an export, a missing image and bad sampling values, naming each',
  withRun((dir, loom) => {
    refused(loom('chat', '--model', 'runs', 'hi'), /^loom: error: --model runs: not a Loom export: neither runs\/loom\.json nor runs\/export\/loom\.json exists/m);
    refused(loom('chat', '--model', 'missing', 'hi'), /^loom: error: --model missing: no such directory$/m);
    refused(loom('chat', '--model', 'runs/sft', '--image', 'cat.jpg', 'hi'), /^loom: error: --image cat\.jpg: no such file$/m);
    refused(loom('chat', '--model', 'runs/sft', '--temperature', 'warm', 'hi'), /^loom: error: --temperature: expected a number, got 'warm'$/m);
    refused(loom('chat', '--model', 'runs/sft', '--top-p', '0', 'hi'), /^loom: error: --top-p: expected a number in \(0, 1\], got 0$/m);
    refused(loom('chat', '--model', 'runs/sft', '--max-new-tokens', '0', 'hi'), /^loom: error: --max-new-tokens: expected an integer >= 1, got '0'$/m);
    refused(loom('chat', '--model', 'runs/sft', '--dtype', 'int4', 'hi'), /^loom: error: --dtype: expected one of auto, float32, bfloat16, got 'int4'$/m);
    const noModel = loom('chat', 'hi');
    assert.notEqual(noModel.status, 0);
    assert.match(noModel.stderr, /required option '--model <export>' not specified/);
    assert.ok(dir);
  }),
);

test(
  'loom generate --dry-run prints the torchrun command for --gpus N, with a run directory read as its export',
  withRun((dir, loom) => {
    const run = loom('generate', '--model', 'runs/sft', '--input', 'prompts.jsonl', '--out', 'answers.jsonl', '--gpus', '2', '--max-new-tokens', '8', '--stop', '.', '--dry-run', '--json');
    assert.equal(run.status, 0, run.stderr);
    const out = JSON.parse(run.stdout);
    assert.equal(out.command, formatCommand(out.argv));
    assert.deepEqual(out.argv.slice(1, 6), ['-m', 'torch.distributed.run', '--nproc-per-node=2', '--standalone', '--nnodes=1']);
    assert.deepEqual(out.argv.slice(6), [
      '-m', 'loom_compute', 'generate',
      '--model', join(dir, 'runs', 'sft', 'export'),
      '--input', join(dir, 'prompts.jsonl'),
      '--out', join(dir, 'answers.jsonl'),
      '--max-new-tokens', '8', '--stop=.',
    ]);
    const plain = loom('generate', '--model', 'runs/sft/export', '--input', 'prompts.jsonl', '--out', 'answers.jsonl', '--dry-run');
    assert.equal(plain.status, 0, plain.stderr);
    assert.match(plain.stdout, / -m loom_compute generate --model \S+\/runs\/sft\/export --input /);
    assert.doesNotMatch(plain.stdout, /torch\.distributed/);
    refused(loom('generate', '--model', 'runs/sft', '--input', 'nope.jsonl', '--out', 'a.jsonl'), /^loom: error: --input nope\.jsonl: no such file$/m);
    refused(loom('generate', '--model', 'runs/sft', '--input', 'prompts.jsonl', '--out', 'a.jsonl', '--gpus', '0'), /^loom: error: --gpus: expected an integer >= 1, got '0'$/m);
    refused(loom('generate', '--model', 'runs/sft', '--input', 'prompts.jsonl', '--out', 'a.jsonl', '--batch-size', 'x'), /^loom: error: --batch-size: expected an integer >= 1/m);
  }),
);

test(
  'loom export and import check their paths and formats before converting anything',
  withRun((dir, loom) => {
    const dry = loom('export', 'runs/sft', '--out', 'hf', '--dry-run');
    assert.equal(dry.status, 0, dry.stderr);
    assert.match(dry.stdout, / -m loom_compute export --format llava-hf --source \S+\/runs\/sft\/export --out \S+\/hf\n$/);
    refused(loom('export', '--format', 'gguf', 'runs/sft', '--out', 'hf'), /^loom: error: --format 'gguf': expected one of llava-hf, tokenizer$/m);
    refused(loom('export', 'runs', '--out', 'hf'), /^loom: error: RUN_OR_EXPORT runs: not a Loom export/m);
    refused(loom('export', 'runs/sft', '--out', '.'), /^loom: error: --out \. holds files that are not an earlier llava-hf export/m);
    refused(loom('import', '--format', 'prismatic', 'ckpt', '--out', 'runs/imported/export'), /^loom: error: SRC ckpt: no such file or directory$/m);
    mkdirSync(join(dir, 'ckpt'));
    refused(loom('import', '--format', 'prismatic', 'ckpt', '--vision', 'siglip', '--out', 'runs/imported/export'), /^loom: error: --vision siglip: no such file or directory$/m);
    refused(loom('import', '--format', 'llava', 'ckpt', '--preset', 'huge', '--out', 'x'), /^loom: error: --preset 'huge': expected one of tiny, open-qwen2vl-2b$/m);
    refused(loom('import', '--format', 'gguf', 'ckpt', '--out', 'x'), /^loom: error: --format 'gguf': expected one of prismatic, llava, llava-hf$/m);
    const noFormat = loom('import', 'ckpt', '--out', 'x');
    assert.notEqual(noFormat.status, 0);
    assert.match(noFormat.stderr, /required option '--format <format>' not specified/);
  }),
);
