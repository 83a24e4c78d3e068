// `loom synth` end to end: pre-training shards with planned noise, SFT conversations, the held-out
// benchmark and the manifest. Deterministic: the same seed and options give the same bytes.
import { mkdir, readdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { availableParallelism } from 'node:os';
import { isClaimFile, withOutputDir } from '../util/outputDir.js';
import { ShardWriter } from '../shards/writer.js';
import { shardFileName, statsFileName } from '../shards/keys.js';
import { isTempPath, tempPathFor, writeFileAtomic, writeJsonAtomic } from '../util/atomic.js';
import { BENCH_COLUMNS, benchTsvRow, planAnswerLetters, planBenchQuestion, type BenchQuestion, type Letter } from './bench.js';
import { NOISE_KINDS, noiseCounts, planNoise, type NoiseKind, type NoiseMix } from './noise.js';
import { orderedMap, range } from './pool.js';
import { buildPretrainSample, planPretrainSample } from './pretrain.js';
import { compositionHash, sceneHash } from './scene.js';
import { encodeSftImage, planSftItem } from './sft.js';
import { EncoderPool } from './encoderPool.js';

/** Bumped whenever the generator's output for a seed changes. */
const SYNTH_VERSION = 2;

export const PLAN_FILE = '.synth-plan.json';
const MANIFEST_FILE = 'synth.json';

export interface SynthOptions {
  out: string;
  seed: number;
  samples: number;
  sft: number;
  bench: number;
  /** Fraction of pre-training pairs that are corrupted, 0..1. */
  noise: number;
  noiseMix: NoiseMix;
  samplesPerShard: number;
  /** Images in flight at once (default: 8 per encoder thread). */
  concurrency?: number;
  /** Worker threads that draw and encode images (default: one per core; 0 = main thread). */
  threads?: number;
  /** Called as work finishes: part name, done, total. */
  onProgress?: (part: 'pretrain' | 'sft' | 'bench', done: number, total: number) => void;
}

export interface SynthManifest {
  version: number;
  seed: number;
  options: { samples: number; sft: number; bench: number; noise: number; noise_mix: NoiseMix; samples_per_shard: number };
  pretrain: {
    samples: number;
    shards: string[];
    clean: number;
    noise: Record<NoiseKind, number>;
    noise_fraction: Record<NoiseKind, number>;
    formats: Record<string, number>;
  };
  sft: { conversations: number; turns: number; file: string; images: string };
  bench: {
    questions: number;
    file: string;
    categories: Record<string, number>;
    answers: Record<Letter, number>;
    held_out: { scene_hash: 'sha256(scene json)[:32]'; training_scenes: number; redrawn_as_training: number; same_composition_as_training: number };
  };
}

/** What must match for a rerun to resume instead of starting over. */
function planOf(o: SynthOptions): Record<string, unknown> {
  return { version: SYNTH_VERSION, seed: o.seed, samples: o.samples, sft: o.sft, bench: o.bench, noise: o.noise, noise_mix: o.noiseMix, samples_per_shard: o.samplesPerShard };
}

async function exists(path: string): Promise<boolean> {
  return stat(path).then(
    () => true,
    () => false,
  );
}

/**
 * Decides between resuming and starting over. Same plan as last time: keep finished shards.
 * Different plan: delete this command's outputs (only those) and regenerate. A non-empty
 * directory that is not a synth output is refused, so a typo never deletes someone's data.
 */
async function prepareOutput(o: SynthOptions): Promise<{ resume: boolean }> {
  // claimOutputDir has refused a folder of foreign files; what is here is an earlier synth run's.
  const entries = (await readdir(o.out)).filter((n) => !isClaimFile(n));
  const planPath = join(o.out, PLAN_FILE);
  const wanted = JSON.stringify(planOf(o));
  if (entries.length > 0) {
    const previous = entries.includes(PLAN_FILE) ? JSON.stringify(JSON.parse(await readFile(planPath, 'utf8'))) : null;
    if (previous === wanted) return { resume: true };
    for (const name of ['pretrain', 'sft', 'bench', MANIFEST_FILE, PLAN_FILE]) await rm(join(o.out, name), { recursive: true, force: true });
  }
  await writeJsonAtomic(planPath, planOf(o));
  return { resume: false };
}

/** A finished shard has its tar and its stats sidecar (written last) with the expected count. */
async function shardDone(dir: string, shard: number, expected: number): Promise<boolean> {
  if (!(await exists(join(dir, shardFileName(shard))))) return false;
  try {
    const stats = JSON.parse(await readFile(join(dir, statsFileName(shard)), 'utf8')) as Record<string, unknown>;
    return stats.successes === expected;
  } catch {
    return false;
  }
}

async function removeTempFiles(dir: string): Promise<void> {
  for (const name of await readdir(dir).catch(() => [] as string[])) if (isTempPath(name)) await rm(join(dir, name), { force: true });
}

/** Temp + rename without fsync: per-image fsyncs would dominate, and a rerun rewrites them anyway. */
async function writeFileRenamed(target: string, data: Buffer): Promise<void> {
  const tmp = tempPathFor(target);
  await writeFile(tmp, data);
  await rename(tmp, target);
}

export async function runSynth(o: SynthOptions): Promise<SynthManifest> {
  const adopt = (names: string[]) => names.includes(PLAN_FILE) || names.includes(MANIFEST_FILE);
  return withOutputDir(o.out, { command: 'synth', adopt }, () => synthesize(o));
}

async function synthesize(o: SynthOptions): Promise<SynthManifest> {
  const { resume } = await prepareOutput(o);
  // One drawing/encoding thread per core: the main thread (planning, tar writing) mostly waits
  // on them, so reserving a core for it wastes most of that core.
  const threads = o.threads ?? Math.max(1, availableParallelism());
  const pool = new EncoderPool(threads);
  try {
    return await generate(o, resume, pool, o.concurrency ?? 8 * Math.max(1, threads));
  } finally {
    await pool.close();
  }
}

async function generate(o: SynthOptions, resume: boolean, pool: EncoderPool, concurrency: number): Promise<SynthManifest> {
  const encode = pool.encode.bind(pool);
  const progress = o.onProgress ?? (() => {});
  const trainingHashes = new Set<string>();
  const trainingCompositions = new Set<string>();

  // Pre-training shards, one ShardWriter per shard so finished shards can be skipped on resume.
  const pretrainDir = join(o.out, 'pretrain');
  await mkdir(pretrainDir, { recursive: true });
  await removeTempFiles(pretrainDir);
  const noisePlan = planNoise(o.seed, o.samples, o.noise, o.noiseMix);
  const formats: Record<string, number> = { jpg: 0, png: 0, webp: 0 };
  const shards: string[] = [];
  let done = 0;
  for (let shard = 0, start = 0; start < o.samples; shard++, start += o.samplesPerShard) {
    const end = Math.min(o.samples, start + o.samplesPerShard);
    const plans = Array.from(range(start, end), (i) => planPretrainSample(o.seed, i, noisePlan[i] ?? null));
    for (const p of plans) {
      trainingHashes.add(sceneHash(p.pair.scene));
      trainingCompositions.add(compositionHash(p.pair.scene));
      formats[p.format] = (formats[p.format] ?? 0) + 1;
    }
    shards.push(`pretrain/${shardFileName(shard)}`);
    if (resume && (await shardDone(pretrainDir, shard, end - start))) {
      done += end - start;
      progress('pretrain', done, o.samples);
      continue;
    }
    const writer = new ShardWriter({ dir: pretrainDir, samplesPerShard: o.samplesPerShard, firstShard: shard });
    try {
      for await (const sample of orderedMap(plans, concurrency, (p) => buildPretrainSample(p, encode))) {
        await writer.write(sample);
        progress('pretrain', ++done, o.samples);
      }
      await writer.close();
    } catch (err) {
      await writer.abort();
      throw err;
    }
  }

  // SFT: LLaVA JSON plus one JPEG per conversation.
  const sftDir = join(o.out, 'sft');
  const imagesDir = join(sftDir, 'images');
  await mkdir(imagesDir, { recursive: true });
  await removeTempFiles(imagesDir);
  const sftItems = Array.from(range(0, o.sft), (i) => planSftItem(o.seed, i));
  for (const item of sftItems) {
    trainingHashes.add(sceneHash(item.scene));
    trainingCompositions.add(compositionHash(item.scene));
  }
  let sftDone = 0;
  for await (const _ of orderedMap(sftItems, concurrency, async (item) => writeFileRenamed(join(sftDir, item.record.image), await encodeSftImage(item, encode)))) {
    progress('sft', ++sftDone, o.sft);
  }
  await writeJsonAtomic(join(sftDir, 'llava.json'), sftItems.map((s) => s.record));
  await writeFileAtomic(
    join(sftDir, 'truth.jsonl'),
    sftItems.map((s) => JSON.stringify({ id: s.record.id, scene: s.scene, qa: s.qa.map((q) => ({ kind: q.kind, truth: q.truth })) }) + '\n').join(''),
  );

  // Held-out benchmark.
  const benchDir = join(o.out, 'bench');
  const letters = planAnswerLetters(o.seed, o.bench);
  const questions: BenchQuestion[] = Array.from(range(0, o.bench), (i) => planBenchQuestion(o.seed, i, letters[i] as Letter, trainingHashes));
  const rows: string[] = [BENCH_COLUMNS.join('\t')];
  let benchDone = 0;
  for await (const row of orderedMap(questions, concurrency, (q) => benchTsvRow(q, encode))) {
    rows.push(row);
    progress('bench', ++benchDone, o.bench);
  }
  await writeFileAtomic(join(benchDir, 'mmbench_synth.tsv'), rows.join('\n') + '\n');
  await writeFileAtomic(
    join(benchDir, 'scenes.jsonl'),
    questions.map((q) => JSON.stringify({ index: q.index, scene_hash: q.sceneHash, scene: q.scene }) + '\n').join(''),
  );

  const counts = noiseCounts(o.samples, o.noise, o.noiseMix);
  const categories: Record<string, number> = {};
  const answers: Record<Letter, number> = { A: 0, B: 0, C: 0, D: 0 };
  for (const q of questions) {
    categories[q.category] = (categories[q.category] ?? 0) + 1;
    answers[q.answer]++;
  }
  const manifest: SynthManifest = {
    version: SYNTH_VERSION,
    seed: o.seed,
    options: { samples: o.samples, sft: o.sft, bench: o.bench, noise: o.noise, noise_mix: o.noiseMix, samples_per_shard: o.samplesPerShard },
    pretrain: {
      samples: o.samples,
      shards,
      clean: o.samples - NOISE_KINDS.reduce((s, k) => s + counts[k], 0),
      noise: counts,
      noise_fraction: Object.fromEntries(NOISE_KINDS.map((k) => [k, o.samples > 0 ? counts[k] / o.samples : 0])) as Record<NoiseKind, number>,
      formats,
    },
    sft: { conversations: o.sft, turns: sftItems.reduce((s, x) => s + x.qa.length, 0), file: 'sft/llava.json', images: 'sft/images' },
    bench: {
      questions: o.bench,
      file: 'bench/mmbench_synth.tsv',
      categories,
      answers,
      held_out: {
        scene_hash: 'sha256(scene json)[:32]',
        training_scenes: trainingHashes.size,
        redrawn_as_training: questions.reduce((s, q) => s + q.rejectedAsTraining, 0),
        same_composition_as_training: questions.filter((q) => trainingCompositions.has(compositionHash(q.scene))).length,
      },
    },
  };
  await writeJsonAtomic(join(o.out, MANIFEST_FILE), manifest);
  return manifest;
}
