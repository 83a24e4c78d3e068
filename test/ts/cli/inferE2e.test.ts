// `loom chat` and `loom generate` end to end, with the real Python verbs, on a tiny export with
// random weights (python/tests/fixtures/tiny_export.py): the answers are gibberish, but every
// field, count and session rule is the real one.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import sharp from 'sharp';
import { pythonExecutable, repoRoot } from '../../../src/util/paths.js';

const cli = join(repoRoot(), 'bin', 'loom.js');
let dir = '';
let model = '';
/** The first test's answer, which the llava-hf round trip must reproduce. */
let firstAnswer: string | undefined;

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'loom-infer-e2e-'));
  model = join(dir, 'runs', 'tiny', 'export');
  const made = spawnSync(pythonExecutable(), [join(repoRoot(), 'python', 'tests', 'fixtures', 'tiny_export.py'), model], { encoding: 'utf8' });
  assert.equal(made.status, 0, made.stderr);
  await sharp({ create: { width: 40, height: 30, channels: 3, background: { r: 200, g: 30, b: 30 } } }).png().toFile(join(dir, 'red.png'));
  writeFileSync(join(dir, 'broken.jpg'), 'not an image at all');
});

after(() => rmSync(dir, { recursive: true, force: true }));

function loom(...args: string[]) {
  return spawnSync(process.execPath, [cli, ...args], { cwd: dir, encoding: 'utf8', timeout: 120_000 });
}

/** Processes whose command line mentions `text` (the worker is found by its --model path). */
function processesMentioning(text: string): number[] {
  return readdirSync('/proc')
    .filter((name) => /^\d+$/.test(name) && Number(name) !== process.pid)
    .filter((pid) => {
      try {
        return readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes(text);
      } catch {
        return false;
      }
    })
    .map(Number);
}

test('loom chat --json answers one question about an image with every field; the run directory stands for its export', { timeout: 120_000 }, () => {
  const run = loom('chat', '--model', 'runs/tiny', '--image', 'red.png', '--max-new-tokens', '5', '--json', 'How', 'many', 'shapes?');
  assert.equal(run.status, 0, run.stderr);
  const out = JSON.parse(run.stdout);
  assert.deepEqual(Object.keys(out).sort(), ['answer', 'finish_reason', 'image', 'new_tokens', 'question', 'seconds']);
  assert.equal(out.question, 'How many shapes?');
  assert.equal(out.image, join(dir, 'red.png'));
  assert.equal(typeof out.answer, 'string');
  assert.ok(out.new_tokens >= 1 && out.new_tokens <= 5, String(out.new_tokens));
  assert.ok(out.finish_reason === 'stop' || (out.finish_reason === 'length' && out.new_tokens === 5));
  assert.ok(out.seconds > 0);
  firstAnswer = out.answer;

  const refused = loom('chat', '--model', 'runs/tiny', '--image', 'broken.jpg', '--max-new-tokens', '2', 'What is it?');
  assert.equal(refused.status, 1);
  assert.match(refused.stderr, /^loom: error: chat: the model refused the request: .*broken\.jpg/m);
});

test('an interactive session over stdin: several turns, a bad /image and a refused image keep the session, Ctrl-C ends it cleanly', { timeout: 120_000 }, async () => {
  const child = spawn(process.execPath, [cli, 'chat', '--model', model, '--image', 'red.png', '--max-new-tokens', '3', '--json'], { cwd: dir, stdio: ['pipe', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const lines = createInterface({ input: child.stdout })[Symbol.asyncIterator]();
  const next = async () => JSON.parse(((await lines.next()).value as string) ?? 'null');
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  try {
    child.stdin.write('First question?\n');
    const first = await next();
    assert.equal(first.question, 'First question?');
    assert.equal(first.image, join(dir, 'red.png'));
    child.stdin.write('/image nope.png\n/image broken.jpg\nWhat about this one?\n/image red.png\n/reset\nSecond question?\n');
    const second = await next();
    assert.equal(second.question, 'Second question?', 'the refused turn printed no answer');
    assert.match(stderr, /error: image nope\.png: no such file/);
    assert.match(stderr, /error: .*broken\.jpg/, 'the worker refused the unreadable image and the session went on');
    child.kill('SIGINT');
    assert.equal(await exited, 130);
    assert.doesNotMatch(stderr, /loom: (internal )?error|Traceback/);
    // The worker went with it.
    for (let i = 0; i < 50 && processesMentioning(model).length > 0; i++) await new Promise((r) => setTimeout(r, 100));
    assert.deepEqual(processesMentioning(model), []);
  } finally {
    child.kill('SIGKILL');
  }
});

test('loom generate answers a prompts file, writes a bad row with its error, and a rerun skips what is answered', { timeout: 180_000 }, () => {
  writeFileSync(
    join(dir, 'prompts.jsonl'),
    [
      { id: 'img', image: 'red.png', prompt: 'How many shapes?' },
      { id: 'text', image: null, messages: [{ role: 'system', content: 'Be brief.' }, { role: 'user', content: 'Hello' }] },
      { id: 'bad', image: 'missing.png', prompt: 'x' },
    ].map((row) => JSON.stringify(row)).join('\n') + '\n',
  );
  const first = loom('generate', '--model', 'runs/tiny', '--input', 'prompts.jsonl', '--out', 'answers.jsonl', '--max-new-tokens', '5', '--batch-size', '1', '--json');
  assert.equal(first.status, 0, first.stderr);
  const summary = JSON.parse(first.stdout);
  assert.equal(summary.out, join(dir, 'answers.jsonl'));
  assert.deepEqual([summary.answered, summary.skipped_existing, summary.bad_rows], [2, 0, 1]);
  const rows = readFileSync(join(dir, 'answers.jsonl'), 'utf8').trim().split('\n').map((line) => JSON.parse(line));
  assert.deepEqual(rows.map((r) => r.id), ['img', 'text', 'bad']);
  assert.equal(summary.new_tokens, rows[0].new_tokens + rows[1].new_tokens);
  assert.match(rows[2].error, /missing\.png/);


  const again = loom('generate', '--model', 'runs/tiny', '--input', 'prompts.jsonl', '--out', 'answers.jsonl', '--max-new-tokens', '5', '--json');
  assert.equal(again.status, 0, again.stderr);
  const resumed = JSON.parse(again.stdout);
  assert.deepEqual([resumed.answered, resumed.skipped_existing, resumed.bad_rows], [0, 2, 1], 'answered ids are skipped; the bad row is tried again');
  assert.ok(!existsSync(join(dir, 'answers.jsonl.part-0')));
});

test('loom export --format llava-hf, then loom import --format llava-hf (its base config from the tiny preset), gives a model that answers the same', { timeout: 180_000 }, () => {
  const exported = loom('export', '--format', 'llava-hf', 'runs/tiny', '--out', 'hf/tiny', '--json');
  assert.equal(exported.status, 0, exported.stderr);
  assert.deepEqual(JSON.parse(exported.stdout).out, join(dir, 'hf', 'tiny'));
  assert.ok(existsSync(join(dir, 'hf', 'tiny', 'config.json')) && existsSync(join(dir, 'hf', 'tiny', 'tokenizer_config.json')));
  const imported = loom('import', '--format', 'llava-hf', 'hf/tiny', '--preset', 'tiny', '--out', 'runs/back/export', '--json');
  assert.equal(imported.status, 0, imported.stderr);
  const summary = JSON.parse(imported.stdout);
  assert.deepEqual([summary.out, summary.format, summary.stage, summary.prompt_format], [join(dir, 'runs', 'back', 'export'), 'llava-hf', 'sft', 'chatml']);
  const baseConfig = /--config (\S+base-config\.json)/.exec(summary.command)?.[1];
  assert.ok(baseConfig !== undefined, summary.command);
  assert.equal(existsSync(baseConfig), false, 'the temporary base config is removed after the import');
  const chat = loom('chat', '--model', 'runs/back', '--image', 'red.png', '--max-new-tokens', '5', '--json', 'How many shapes?');
  assert.equal(chat.status, 0, chat.stderr);
  assert.ok(firstAnswer !== undefined, 'runs after the first test');
  assert.equal(JSON.parse(chat.stdout).answer, firstAnswer);
});
