// `loom pack` end to end on a small synthetic set: every packed shard is read back and checked
// against the input shards (read independently) and the document builder.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { cp, mkdtemp, readdir, readFile, rm, stat, truncate, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runSynth } from '../../../../src/synth/generate.js';
import { EVEN_MIX } from '../../../../src/synth/noise.js';
import { resolveRunConfig } from '../../../../src/config/resolve.js';
import type { RunConfig } from '../../../../src/config/schema.js';
import { readShards, listShards } from '../../../../src/shards/reader.js';
import { PretrainDocuments } from '../../../../src/pack/sample.js';
import { TextTokenizer } from '../../../../src/tokenize/tokenizer.js';
import { readImageHeader } from '../../../../src/shards/imageHeader.js';
import { rankFromEnv, runPack } from '../../../../src/pack/run.js';
import { repoRoot } from '../../../../src/util/paths.js';
import { assertSameFiles, packedFiles, readPacked } from '../packedOutput.js';

const run = promisify(execFile);
const loom = (args: string[], env: NodeJS.ProcessEnv = {}) =>
  run(process.execPath, [join(repoRoot(), 'bin', 'loom.js'), ...args], { maxBuffer: 1 << 24, env: { ...process.env, ...env } });

let root = '';
let shards = '';

before(async () => {
  root = await mkdtemp(join(tmpdir(), 'loom-pack-'));
  await runSynth({ out: join(root, 'data'), seed: 3, samples: 300, sft: 0, bench: 0, noise: 0.3, noiseMix: { ...EVEN_MIX }, samplesPerShard: 100, threads: 0 });
  shards = join(root, 'data', 'pretrain');
  // A shard cut short: its complete samples are packed, the cut one is counted as bad.
  const last = join(shards, '00000002.tar');
  await truncate(last, Math.floor((await stat(last)).size * 0.6));
});

after(async () => {
  if (root) await rm(root, { recursive: true, force: true });
});

function tinyConfig(sets: string[] = []): RunConfig {
  return resolveRunConfig({ preset: 'tiny', stage: 'pretrain', name: 'run', overrides: [], assignments: sets });
}


let reference: { out: string; json: Record<string, any> } | null = null;

async function referenceRun(): Promise<{ out: string; json: Record<string, any> }> {
  if (reference) return reference;
  const out = join(root, 'cli-out');
  const { stdout } = await loom(['pack', '--preset', 'tiny', '--shards', shards, '--out', out, '--window', '100', '--sequences-per-shard', '2', '--json', '--quiet']);
  reference = { out, json: JSON.parse(stdout) };
  return reference;
}

test('pack: every good input sample lands exactly once, documents match the builder, report adds up', async () => {
  const { out, json } = await referenceRun();
  const config = tinyConfig();
  const seqLen = config.data.seq_len;
  const input = [];
  const bad = new Map<string, number>();
  for await (const item of readShards(await listShards(shards))) {
    if (item.kind === 'sample') input.push(item.sample);
    else bad.set(item.bad.reason, (bad.get(item.bad.reason) ?? 0) + 1);
  }
  assert.ok(bad.get('truncated_tar')! > 0, 'the cut shard yields a bad sample');
  assert.equal(json.windows, Math.ceil(input.length / 100));
  assert.ok(json.windows >= 3);
  assert.equal(json.complete, true);
  const total = json.total;
  assert.deepEqual(total, JSON.parse(await readFile(join(out, 'pack.json'), 'utf8')));
  assert.equal(total.samples_read, input.length);
  assert.deepEqual(total.bad_reasons, Object.fromEntries(bad));

  const tokenizer = await TextTokenizer.load(config.tokenizer.path!);
  const builder = await PretrainDocuments.create(config, tokenizer);
  const expected = await builder.build(input.map((s) => s.caption));
  const byUid = new Map(input.map((s, i) => [s.uid, expected.docs[i]]));
  const keptUids = input.filter((_, i) => expected.docs[i] !== null).map((s) => s.uid);
  assert.equal(total.documents.kept + total.documents.truncated, keptUids.length);
  assert.equal(total.documents.droppedOverlong + total.documents.droppedEmpty, input.length - keptUids.length);

  const { sequences, meta } = await readPacked(out);
  const seen = new Map<string, number>();
  let tokens = 0;
  let images = 0;
  for (const s of sequences) {
    assert.ok(s.tokens.length <= seqLen, `${s.key}: ${s.tokens.length} tokens > seq_len`);
    assert.equal(s.loss.length, s.tokens.length);
    assert.equal(s.doclens.reduce((a, b) => a + b, 0), s.tokens.length, `${s.key}: doclens do not sum to the tokens`);
    assert.equal(s.doclens.length, s.uids.length);
    assert.equal(s.images.length, s.uids.length, 'one image per pre-training document');
    let at = 0;
    s.uids.forEach((uid, d) => {
      seen.set(uid, (seen.get(uid) ?? 0) + 1);
      const doc = byUid.get(uid);
      assert.ok(doc, `${s.key}: uid ${uid} is not a kept input sample`);
      const len = s.doclens[d]!;
      assert.deepEqual(Array.from(s.tokens.subarray(at, at + len)), Array.from(doc.ids), `${uid}: ids differ from the builder's`);
      assert.deepEqual(Array.from(s.loss.subarray(at, at + len)), Array.from(doc.loss));
      at += len;
    });
    for (const img of s.images) {
      const h = readImageHeader(img);
      assert.ok(h.ok && h.format === 'jpg' && h.width === config.model.vision.image_size && h.height === config.model.vision.image_size);
    }
    tokens += s.tokens.length;
    images += s.images.length;
  }
  assert.deepEqual([...seen.keys()].sort(), [...keptUids].sort(), 'every kept uid appears');
  assert.ok([...seen.values()].every((n) => n === 1), 'no uid appears twice');
  assert.equal(total.sequences, sequences.length);
  assert.equal(total.images, images);
  assert.equal(total.real_tokens, tokens);
  assert.equal(total.efficiency, tokens / (sequences.length * seqLen));
  assert.equal(total.images_per_sequence.mean, images / sequences.length);
  assert.equal(total.images_per_sequence.min, Math.min(...sequences.map((s) => s.images.length)));
  assert.equal(total.images_per_sequence.max, Math.max(...sequences.map((s) => s.images.length)));
  assert.equal(meta.reduce((n, m) => n + (m.sequences as number), 0), sequences.length);
  assert.ok(new Set(sequences.map((s) => s.key)).size === sequences.length, 'sequence keys are unique across windows');
  assert.deepEqual(JSON.parse(await readFile(join(out, 'config.json'), 'utf8')), config);
});

test('pack: same input and seed give identical bytes; two ranks give what one process gives', async () => {
  const { out } = await referenceRun();
  const config = tinyConfig();
  const again = join(root, 'again');
  await runPack({ config, shards, out: again, window: 100, sequencesPerShard: 2 });
  assertSameFiles(await packedFiles(out), await packedFiles(again));

  const ranked = join(root, 'ranked');
  const first = await runPack({ config, shards, out: ranked, window: 100, sequencesPerShard: 2, rank: 0, worldSize: 2 });
  assert.deepEqual(first.packed_windows, Array.from({ length: first.windows }, (_, w) => w).filter((w) => w % 2 === 0));
  assert.equal(first.complete, false);
  assert.equal(existsSync(join(ranked, 'pack.json')), false, 'no pack.json while a window is missing');
  const second = await runPack({ config, shards, out: ranked, window: 100, sequencesPerShard: 2, rank: 1, worldSize: 2 });
  assert.deepEqual(second.packed_windows, Array.from({ length: second.windows }, (_, w) => w).filter((w) => w % 2 === 1));
  assert.equal(second.complete, true);
  assertSameFiles(await packedFiles(out), await packedFiles(ranked));
  const stripTimes = (s: Record<string, unknown>) => ({ ...s, seconds: 0, samples_per_s: 0, images_per_s: 0 });
  assert.deepEqual(stripTimes(second.total!), stripTimes(JSON.parse(await readFile(join(out, 'pack.json'), 'utf8'))));
});

test('pack: a killed window (directory without done file) is redone cleanly; done windows are kept', async () => {
  const { out } = await referenceRun();
  const killed = join(root, 'killed');
  await cp(out, killed, { recursive: true });
  await rm(join(killed, 'w000001.done.json'));
  await rm(join(killed, 'pack.json'));
  const tars = (await readdir(join(killed, 'w000001'))).filter((n) => n.endsWith('.tar')).sort();
  await truncate(join(killed, 'w000001', tars.at(-1)!), 700);
  await writeFile(join(killed, 'w000001', '00000099.tar.tmp-123'), 'partial');
  const result = await runPack({ config: tinyConfig(), shards, out: killed, window: 100, sequencesPerShard: 2 });
  assert.deepEqual(result.packed_windows, [1]);
  assert.deepEqual(result.skipped_windows, Array.from({ length: result.windows }, (_, w) => w).filter((w) => w !== 1));
  assert.equal(result.complete, true);
  assertSameFiles(await packedFiles(out), await packedFiles(killed));
});

test('pack: refuses to resume with other settings; overlong documents dropped and image cap honoured', async () => {
  const { out } = await referenceRun();
  await assert.rejects(runPack({ config: tinyConfig(), shards, out, window: 50 }), /packed with other/);

  const config = tinyConfig(['data.seq_len=40', 'data.overlong="drop"', 'data.max_images_per_sequence=1']);
  const small = join(root, 'small');
  const result = await runPack({ config, shards, out: small, window: 1000, algorithm: 'bfd' });
  const total = result.total!;
  assert.ok(total.documents.droppedOverlong > 0, 'some captions are too long for 40 tokens');
  const { sequences } = await readPacked(small);
  assert.ok(sequences.every((s) => s.images.length === 1 && s.tokens.length <= 40));
  assert.equal(sequences.length, total.documents.kept);
  assert.equal(total.sequences, total.documents.kept);
});

test('pack: --help explains windows, ranks and resume; RANK/WORLD_SIZE are checked', async () => {
  const { stdout } = await loom(['pack', '--help']);
  for (const word of ['--window', 'WORLD_SIZE', 'RANK', 'done', 'exact-fill', 'bfd', 'ffd', 'efficiency', 'max_images_per_sequence']) {
    assert.ok(stdout.includes(word), `help mentions ${word}`);
  }
  assert.deepEqual(rankFromEnv({}), { rank: 0, worldSize: 1 });
  assert.deepEqual(rankFromEnv({ RANK: '3', WORLD_SIZE: '4' }), { rank: 3, worldSize: 4 });
  assert.throws(() => rankFromEnv({ RANK: '4', WORLD_SIZE: '4' }), /less than WORLD_SIZE/);
  assert.throws(() => rankFromEnv({ RANK: 'x' }), /RANK/);
});
