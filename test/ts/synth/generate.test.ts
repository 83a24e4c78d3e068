// End to end: `runSynth` output read back through the shard reader, sharp, and plain parsing.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtemp, readFile, readdir, rm, stat, writeFile, mkdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import sharp from 'sharp';
import { listShards, readShards } from '../../../src/shards/reader.js';
import type { Sample } from '../../../src/shards/types.js';
import { isValidUid } from '../../../src/shards/keys.js';
import { BENCH_COLUMNS, LETTERS, type BenchQuestion, type Letter } from '../../../src/synth/bench.js';
import { runSynth, type SynthManifest, type SynthOptions } from '../../../src/synth/generate.js';
import { EVEN_MIX, NOISE_KINDS } from '../../../src/synth/noise.js';
import type { QaKind } from '../../../src/synth/qa.js';
import { sceneHash, type Scene } from '../../../src/synth/scene.js';
import { repoRoot } from '../../../src/util/paths.js';
import { checkAnswer, expectedAnswer, parsedKey, truthKey } from './helpers.js';

let root = '';
const base = (out: string, extra: Partial<SynthOptions> = {}): SynthOptions => ({
  out,
  seed: 7,
  samples: 240,
  sft: 24,
  bench: 40,
  noise: 0.3,
  noiseMix: { ...EVEN_MIX },
  samplesPerShard: 100,
  threads: 1,
  ...extra,
});

async function filesUnder(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) out.push(...(await filesUnder(path)));
    else out.push(path);
  }
  return out.sort();
}

async function samplesOf(dir: string): Promise<Sample[]> {
  const samples: Sample[] = [];
  for await (const item of readShards(await listShards(join(dir, 'pretrain')), { decodeImages: true })) {
    assert.equal(item.kind, 'sample', item.kind === 'bad' ? JSON.stringify(item.bad) : '');
    if (item.kind === 'sample') samples.push(item.sample);
  }
  return samples;
}

let manifestA: SynthManifest;
before(async () => {
  root = await mkdtemp(join(tmpdir(), 'loom-synth-'));
  manifestA = await runSynth(base(join(root, 'a')));
});
after(async () => {
  await rm(root, { recursive: true, force: true });
});

test('same seed and options give the same bytes, with or without worker threads; another seed differs', async () => {
  await runSynth(base(join(root, 'b'), { threads: 0, concurrency: 3 }));
  const a = await filesUnder(join(root, 'a'));
  const b = await filesUnder(join(root, 'b'));
  assert.deepEqual(a.map((p) => relative(join(root, 'a'), p)), b.map((p) => relative(join(root, 'b'), p)));
  for (let i = 0; i < a.length; i++) assert.ok((await readFile(a[i]!)).equals(await readFile(b[i]!)), `${relative(root, a[i]!)} differs`);

  await runSynth(base(join(root, 'c'), { seed: 8, samples: 100, sft: 4, bench: 4 }));
  for (const file of ['pretrain/00000000.tar', 'sft/llava.json', 'bench/mmbench_synth.tsv']) {
    assert.ok(!(await readFile(join(root, 'a', file))).equals(await readFile(join(root, 'c', file))), `${file} same for seeds 7 and 8`);
  }
});

test('pre-training shards: every sample reads back, with the planned noise and truthful clean captions', async () => {
  const dir = join(root, 'a');
  assert.deepEqual(manifestA.pretrain.shards, ['pretrain/00000000.tar', 'pretrain/00000001.tar', 'pretrain/00000002.tar']);
  const samples = await samplesOf(dir);
  assert.equal(samples.length, 240);
  assert.equal(new Set(samples.map((s) => s.uid)).size, 240);
  const kinds: Record<string, number> = {};
  const formats: Record<string, number> = {};
  for (const s of samples) {
    assert.ok(isValidUid(s.json.uid));
    const scene = s.json.scene as Scene;
    const noise = s.json.noise as { kind: string } | null;
    kinds[noise?.kind ?? 'clean'] = (kinds[noise?.kind ?? 'clean'] ?? 0) + 1;
    formats[s.image.ext] = (formats[s.image.ext] ?? 0) + 1;
    assert.deepEqual(s.imageInfo, { width: scene.width, height: scene.height });
    // The clean caption always describes the image; the shard caption only when the pair is clean.
    assert.equal(parsedKey(s.json.clean_caption as string), truthKey(scene), s.key);
    if (noise === null) assert.equal(s.caption, s.json.clean_caption);
    else assert.notEqual(parsedKey(s.caption), truthKey(scene), `${s.key} ${noise.kind}: ${s.caption}`);
  }
  // round(0.3 * 240) = 72 noisy pairs, split evenly by largest remainder: 15, 15, 14, 14, 14.
  assert.equal(kinds.clean, 168);
  assert.deepEqual(NOISE_KINDS.map((k) => kinds[k]).sort(), [14, 14, 14, 15, 15]);
  for (const k of NOISE_KINDS) assert.equal(manifestA.pretrain.noise[k], kinds[k]);
  assert.deepEqual(formats, Object.fromEntries(Object.entries(manifestA.pretrain.formats).filter(([, n]) => n > 0)));
});

test('decoded pixels agree with the scene: each object centre has its colour (JPEG/WebP tolerance)', async () => {
  const samples = (await samplesOf(join(root, 'a'))).slice(0, 60);
  for (const s of samples) {
    const scene = s.json.scene as Scene;
    const { data, info } = await sharp(s.image.data).removeAlpha().raw().toBuffer({ resolveWithObject: true });
    for (const o of scene.objects) {
      const i = (Math.floor(o.y) * info.width + Math.floor(o.x)) * 3;
      const tol = s.image.ext === 'png' ? 0 : 48;
      for (let c = 0; c < 3; c++) assert.ok(Math.abs(data[i + c]! - o.rgb[c]!) <= tol, `${s.key} ${o.color} ${o.shape} channel ${c}: ${data[i + c]} vs ${o.rgb[c]}`);
    }
  }
});

test('SFT: LLaVA JSON is well formed, images exist, and every answer matches the scene', async () => {
  const dir = join(root, 'a', 'sft');
  const records = JSON.parse(await readFile(join(dir, 'llava.json'), 'utf8')) as Array<{ id: string; image: string; conversations: Array<{ from: string; value: string }> }>;
  const truth = (await readFile(join(dir, 'truth.jsonl'), 'utf8')).trim().split('\n').map((l) => JSON.parse(l) as { id: string; scene: Scene; qa: Array<{ kind: QaKind }> });
  assert.equal(records.length, 24);
  assert.equal(new Set(records.map((r) => r.id)).size, 24);
  for (const [n, r] of records.entries()) {
    assert.deepEqual(Object.keys(r).sort(), ['conversations', 'id', 'image']);
    assert.equal(r.image, `images/${r.id}.jpg`);
    const meta = await sharp(join(dir, r.image)).metadata();
    assert.equal(meta.format, 'jpeg');
    const t = truth[n]!;
    assert.equal(t.id, r.id);
    assert.deepEqual([meta.width, meta.height], [t.scene.width, t.scene.height]);
    assert.ok(r.conversations.length >= 4 && r.conversations.length % 2 === 0);
    assert.ok(r.conversations[0]!.value.startsWith('<image>\n'));
    assert.equal(r.conversations.filter((c) => c.value.includes('<image>')).length, 1);
    for (let k = 0; k < r.conversations.length; k += 2) {
      assert.equal(r.conversations[k]!.from, 'human');
      assert.equal(r.conversations[k + 1]!.from, 'gpt');
      const qa = { kind: t.qa[k / 2]!.kind, question: r.conversations[k]!.value.replace('<image>\n', ''), answer: r.conversations[k + 1]!.value, truth: '' };
      checkAnswer(t.scene, qa);
    }
  }
  assert.equal((await readdir(join(dir, 'images'))).length, 24);
});

test('benchmark: MMBench TSV columns, balanced answers, correct options, images decode, held out', async () => {
  const dir = join(root, 'a');
  const lines = (await readFile(join(dir, 'bench', 'mmbench_synth.tsv'), 'utf8')).trimEnd().split('\n');
  assert.deepEqual(lines[0]!.split('\t'), [...BENCH_COLUMNS]);
  const rows = lines.slice(1).map((l) => Object.fromEntries(l.split('\t').map((v, i) => [BENCH_COLUMNS[i], v])) as Record<(typeof BENCH_COLUMNS)[number], string>);
  assert.equal(rows.length, 40);
  for (const l of lines) assert.equal(l.split('\t').length, BENCH_COLUMNS.length);
  const scenes = (await readFile(join(dir, 'bench', 'scenes.jsonl'), 'utf8')).trim().split('\n').map((l) => JSON.parse(l) as { index: number; scene_hash: string; scene: Scene });
  const letters: Record<string, number> = {};
  const categories: Record<string, number> = {};
  for (const [i, row] of rows.entries()) {
    assert.equal(row.index, String(i));
    assert.ok((LETTERS as readonly string[]).includes(row.answer));
    letters[row.answer] = (letters[row.answer] ?? 0) + 1;
    categories[row.category] = (categories[row.category] ?? 0) + 1;
    assert.equal(new Set([row.A, row.B, row.C, row.D]).size, 4);
    assert.equal(row.split, 'dev');
    assert.ok(row['l2-category'].length > 0);
    const jpeg = Buffer.from(row.image, 'base64');
    const meta = await sharp(jpeg).metadata();
    assert.equal(meta.format, 'jpeg');
    const s = scenes[i]!;
    assert.equal(sceneHash(s.scene), s.scene_hash);
    assert.deepEqual([meta.width, meta.height], [s.scene.width, s.scene.height]);
    const q = { category: row.category, question: row.question, scene: s.scene } as BenchQuestion;
    assert.equal(row[row.answer as Letter], expectedAnswer(q), row.question);
  }
  assert.deepEqual(letters, { A: 10, B: 10, C: 10, D: 10 });
  assert.deepEqual(Object.values(categories), [10, 10, 10, 10]);

  // Held out: no benchmark scene equals any pre-training or SFT scene, checked from the files.
  const training = new Set<string>();
  for (const s of await samplesOf(dir)) training.add(sceneHash(s.json.scene as Scene));
  for (const l of (await readFile(join(dir, 'sft', 'truth.jsonl'), 'utf8')).trim().split('\n')) training.add(sceneHash((JSON.parse(l) as { scene: Scene }).scene));
  assert.equal(training.size, 240 + 24);
  for (const s of scenes) assert.ok(!training.has(s.scene_hash), `bench ${s.index} is a training scene`);
  assert.equal(manifestA.bench.held_out.training_scenes, 264);
});

test('rerun with the same options resumes: a missing shard is rebuilt identically, finished ones are kept', async () => {
  const dir = join(root, 'resume');
  await runSynth(base(dir, { sft: 4, bench: 4 }));
  const shard1 = join(dir, 'pretrain', '00000001.tar');
  const original = await readFile(shard1);
  const keptMtime = (await stat(join(dir, 'pretrain', '00000000.tar'))).mtimeMs;
  await rm(shard1);
  await rm(join(dir, 'pretrain', '00000001_stats.json'));
  await writeFile(join(dir, 'pretrain', '.00000002.tar.tmp-1-deadbeef'), 'partial');
  await runSynth(base(dir, { sft: 4, bench: 4 }));
  assert.ok((await readFile(shard1)).equals(original));
  assert.equal((await stat(join(dir, 'pretrain', '00000000.tar'))).mtimeMs, keptMtime, 'finished shard rewritten');
  assert.ok(!(await readdir(join(dir, 'pretrain'))).some((n) => n.includes('.tmp-')), 'stale temp file left');
});

test('rerun with other options replaces the previous output (no stale shards)', async () => {
  const dir = join(root, 'replace');
  await runSynth(base(dir, { sft: 4, bench: 4 }));
  const m = await runSynth(base(dir, { samples: 150, sft: 2, bench: 4 }));
  assert.deepEqual((await readdir(join(dir, 'pretrain'))).sort(), ['00000000.tar', '00000000_stats.json', '00000001.tar', '00000001_stats.json']);
  assert.equal((await readdir(join(dir, 'sft', 'images'))).length, 2);
  assert.equal(m.pretrain.samples, 150);
  assert.equal(JSON.parse(await readFile(join(dir, 'synth.json'), 'utf8')).pretrain.samples, 150);
});

test('refuses a non-empty directory that is not a synth output', async () => {
  const dir = join(root, 'foreign');
  await mkdir(dir, { recursive: true });
  await writeFile(join(dir, 'precious.txt'), 'keep me');
  await assert.rejects(runSynth(base(dir)), /holds files Loom did not write \("precious.txt"\)/);
  assert.equal(await readFile(join(dir, 'precious.txt'), 'utf8'), 'keep me');
});

test('CLI: --json prints the manifest; bad options are usage errors naming the option', () => {
  const cli = join(repoRoot(), 'bin', 'loom.js');
  const out = join(root, 'cli');
  const run = spawnSync(process.execPath, [cli, 'synth', '--out', out, '--samples', '30', '--sft', '3', '--bench', '8', '--noise', '0.2', '--noise-mix', 'blank=1,gibberish=1', '--json'], { encoding: 'utf8' });
  assert.equal(run.status, 0, run.stderr);
  const m = JSON.parse(run.stdout) as SynthManifest;
  assert.equal(m.pretrain.samples, 30);
  assert.deepEqual(m.pretrain.noise, { mismatched: 0, wrong_color: 0, wrong_count: 0, gibberish: 3, blank: 3 });
  assert.equal(m.bench.questions, 8);

  const bad = spawnSync(process.execPath, [cli, 'synth', '--out', join(root, 'bad'), '--noise', '1.5'], { encoding: 'utf8' });
  assert.equal(bad.status, 2);
  assert.match(bad.stderr, /--noise: expected a fraction between 0 and 1/);
  const badMix = spawnSync(process.execPath, [cli, 'synth', '--out', join(root, 'bad'), '--noise-mix', 'typo=1'], { encoding: 'utf8' });
  assert.equal(badMix.status, 2);
  assert.match(badMix.stderr, /--noise-mix: .*unknown kind 'typo'/);
});
