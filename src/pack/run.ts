// `loom pack` as a library: streams the input shards once (no image decode), cuts the good
// samples into windows of W in reading order, and packs the windows this rank owns
// (w % worldSize == rank) that are not done yet. See docs/formats.md, "Packing a dataset".
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { readFile, rm } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { LoomError } from '../util/errors.js';
import type { RunConfig } from '../config/schema.js';
import { readShards, listShards } from '../shards/reader.js';
import { samplesFromStats } from '../shards/stats.js';
import { TextTokenizer } from '../tokenize/tokenizer.js';
import { writeJsonAtomic } from '../util/atomic.js';
import { packedSpecFor, type PackedShardSpec } from './packedShard.js';
import { withOutputDir } from '../util/outputDir.js';
import { PretrainDocuments } from './sample.js';
import { MAX_IMAGE_PIXELS } from '../images/image.js';
import { readSftJson, SftDocuments, sftUid, type SftBadRecord, type SftRecord } from './sft.js';
import { DEFAULT_MAX_IMAGE_BYTES } from './sftImages.js';
import { indexTarMembers, type MemberSpan } from './tarIndex.js';
import {
  emptyWindowSamples,
  packWindow,
  sumReports,
  windowDirName,
  windowDoneName,
  type PackAlgorithm,
  type WindowReport,
  type WindowSamples,
} from './window.js';

const PACK_PLAN_FILE = 'pack-plan.json';
export const PACK_REPORT_FILE = 'pack.json';
export const DEFAULT_WINDOW = 1_000_000;

export interface RunPackOptions {
  config: RunConfig;
  /** Stage sft: the LLaVA conversation JSON; default config.data.shards when it names a .json file. */
  sftJson?: string;
  /** Stage sft: the folder every image path must lie under; default the JSON's folder. */
  imageRoot?: string;
  /** Stage sft: image files larger than this are bad records (image_too_big); default 64 MiB. */
  maxImageBytes?: number;
  /** Input shard spec(s); default config.data.shards. */
  shards?: string | string[];
  out: string;
  window?: number;
  algorithm?: PackAlgorithm;
  rank?: number;
  worldSize?: number;
  sequencesPerShard?: number;
  /** Called with (documents finished, total samples when the input's stats sidecars tell it). */
  onProgress?: (done: number, total: number | undefined) => void;
}

export type PackSummary = ReturnType<typeof sumReports>;

export interface RunPackResult {
  out: string;
  rank: number;
  world_size: number;
  windows: number;
  /** Windows this rank packed in this call, and those it found done already. */
  packed_windows: number[];
  skipped_windows: number[];
  /** True when every window is done (pack.json was written). */
  complete: boolean;
  /** This call's windows summed. */
  this_run: PackSummary;
  /** pack.json when complete, else null. */
  total: PackSummary | null;
}

/** RANK and WORLD_SIZE as torchrun sets them (default 0 and 1). */
export function rankFromEnv(env: NodeJS.ProcessEnv = process.env): { rank: number; worldSize: number } {
  const parse = (name: string, fallback: number, min: number) => {
    const raw = env[name];
    if (raw === undefined || raw === '') return fallback;
    const n = Number(raw);
    if (!/^\d+$/.test(raw.trim()) || n < min) throw new LoomError(`environment ${name}: expected an integer >= ${min}, got '${raw}'`);
    return n;
  };
  const rank = parse('RANK', 0, 0);
  const worldSize = parse('WORLD_SIZE', 1, 1);
  if (rank >= worldSize) throw new LoomError(`environment RANK ${rank} must be less than WORLD_SIZE ${worldSize}`);
  return { rank, worldSize };
}

export async function runPack(o: RunPackOptions): Promise<RunPackResult> {
  const { config, out } = o;
  const W = o.window ?? DEFAULT_WINDOW;
  const algorithm = o.algorithm ?? 'exact-fill';
  const rank = o.rank ?? 0;
  const worldSize = o.worldSize ?? 1;
  if (!Number.isSafeInteger(W) || W < 1) throw new LoomError(`window must be a positive integer, got ${W}`);
  if (config.stage !== 'pretrain' && config.stage !== 'sft') throw new LoomError(`loom pack packs stage pretrain or sft; config stage is '${config.stage}'`);
  const isSft = config.stage === 'sft';
  let shardPaths: string[];
  let sftImages = { imageRoot: '', maxImageBytes: DEFAULT_MAX_IMAGE_BYTES };
  if (!isSft && o.imageRoot !== undefined) throw new LoomError(`--image-root needs a stage sft config; config stage is '${config.stage}'`);
  if (!isSft && o.maxImageBytes !== undefined) throw new LoomError(`--max-image-bytes needs a stage sft config; config stage is '${config.stage}'`);
  if (isSft) {
    if (o.shards !== undefined) throw new LoomError('stage sft packs a LLaVA conversation JSON: pass --sft-json, not --shards');
    const fromConfig = typeof config.data.shards === 'string' && config.data.shards.endsWith('.json') ? config.data.shards : undefined;
    const json = o.sftJson ?? fromConfig;
    if (json === undefined) throw new LoomError('stage sft packs a LLaVA conversation JSON: pass --sft-json PATH or set data.shards to a .json file');
    if (!existsSync(json)) throw new LoomError(`--sft-json ${json}: no such file`);
    shardPaths = [resolve(json)];
    const maxImageBytes = o.maxImageBytes ?? DEFAULT_MAX_IMAGE_BYTES;
    if (!Number.isSafeInteger(maxImageBytes) || maxImageBytes < 1) throw new LoomError(`--max-image-bytes must be a positive integer, got ${maxImageBytes}`);
    sftImages = { imageRoot: resolve(o.imageRoot ?? dirname(shardPaths[0]!)), maxImageBytes };
  } else {
    if (o.sftJson !== undefined) throw new LoomError(`--sft-json needs a stage sft config; config stage is '${config.stage}'`);
    const spec = o.shards ?? config.data.shards;
    if (spec === null || spec === undefined) throw new LoomError('no input shards: pass --shards or set data.shards in the config');
    shardPaths = await listShards(spec);
  }
  if (config.tokenizer.path === null) throw new LoomError('tokenizer.path is null and no local LLM checkpoint names a tokenizer.json; set tokenizer.path');
  let tokenizer: TextTokenizer;
  let documents: PretrainDocuments | undefined;
  let sftDocuments: SftDocuments | undefined;
  try {
    tokenizer = await TextTokenizer.load(config.tokenizer.path);
    if (isSft) sftDocuments = await SftDocuments.create(config, tokenizer);
    else documents = await PretrainDocuments.create(config, tokenizer);
  } catch (err) {
    throw new LoomError((err as Error).message);
  }
  const packedSpec = packedSpecFor(config, tokenizer);
  // Ranks of one launch each lock the folder on their own: their windows never overlap.
  const adopt = (names: string[]) => names.includes(PACK_PLAN_FILE);
  return withOutputDir(out, { command: 'pack', adopt, rank, worldSize }, () =>
    packInto({ ...o, window: W, algorithm, rank, worldSize }, { isSft, shardPaths, sftImages, tokenizer, documents, sftDocuments, packedSpec }),
  );
}

async function packInto(
  o: RunPackOptions & { window: number; algorithm: PackAlgorithm; rank: number; worldSize: number },
  p: { isSft: boolean; shardPaths: string[]; sftImages: { imageRoot: string; maxImageBytes: number }; tokenizer: TextTokenizer; documents?: PretrainDocuments | undefined; sftDocuments?: SftDocuments | undefined; packedSpec: PackedShardSpec },
): Promise<RunPackResult> {
  const { config, out, window: W, algorithm, rank, worldSize } = o;
  const { isSft, shardPaths, sftImages, tokenizer, documents, sftDocuments, packedSpec } = p;
  // Only what decides the packed bytes: another run name or training setting may resume.
  const decides = {
    stage: config.stage,
    seed: config.seed,
    image_grid: config.image_grid,
    image_size: config.model.vision.image_size,
    tokenizer: { ...config.tokenizer, path: null, sha256: tokenizer.sha256 },
    data: { ...config.data, shards: null },
  };
  // An edited conversation JSON must not resume into windows packed from the old one.
  // The image root and size cap decide which records are packed, so they are part of the plan too.
  const sftSha = isSft
    ? {
        sft_json_sha256: createHash('sha256').update(await readFile(shardPaths[0]!)).digest('hex'),
        image_root: sftImages.imageRoot,
        max_image_bytes: sftImages.maxImageBytes,
      }
    : {};
  await checkPlan(out, { format: 'loom-pack-plan', version: 1, shards: shardPaths, ...sftSha, window: W, algorithm, sequences_per_shard: o.sequencesPerShard ?? 1000, packing: decides });
  await writeJsonAtomic(join(out, 'config.json'), config);

  let sftEntries: Awaited<ReturnType<typeof readSftJson>> = [];
  if (isSft) {
    try {
      sftEntries = await readSftJson(shardPaths[0]!, sftImages);
    } catch (err) {
      throw new LoomError((err as Error).message);
    }
  }
  const total = isSft ? sftEntries.length : await samplesFromStats(shardPaths);
  let progressDone = 0;
  const tick = (n: number) => {
    progressDone += n;
    o.onProgress?.(progressDone, total);
  };

  const packed: WindowReport[] = [];
  const skipped: number[] = [];
  let window = 0;
  let samples = emptyWindowSamples();
  let bad: Record<string, number> = {};
  let sftRecords: SftRecord[] = [];
  let sftIndexes: number[] = [];
  let sftBad: SftBadRecord[] = [];
  let good = 0;
  let indexed = null as { shard: number; members: Map<string, MemberSpan> } | null;
  const shardNumber = new Map(shardPaths.map((p, i) => [p, i]));

  const finishWindow = async () => {
    const mine = window % worldSize === rank;
    const done = join(out, windowDoneName(window));
    // An SFT window's malformed records count toward progress too (progress runs over file entries).
    const entries = samples.uid.length + (isSft ? sftBad.length : 0);
    if (!mine) tick(entries);
    else if (existsSync(done)) {
      skipped.push(window);
      tick(entries);
    } else {
      // A window directory without its done file is what a killed run left: redo it from scratch.
      await rm(join(out, windowDirName(window)), { recursive: true, force: true });
      packed.push(
        await packWindow({
          window,
          firstSample: window * W,
          samples,
          badReasons: bad,
          shardPaths,
          config,
          ...(documents ? { documents } : {}),
          ...(sftDocuments
            ? { sft: { records: sftRecords, indexes: sftIndexes, documents: sftDocuments, maxImageBytes: sftImages.maxImageBytes }, badRecords: sftBad }
            : {}),
          spec: packedSpec,
          algorithm,
          outDir: out,
          ...(o.sequencesPerShard !== undefined ? { sequencesPerShard: o.sequencesPerShard } : {}),
          onDocuments: tick,
        }),
      );
      tick(sftBad.length);
    }
    window++;
    samples = emptyWindowSamples();
    bad = {};
    sftRecords = [];
    sftIndexes = [];
    sftBad = [];
  };

  if (isSft) {
    // A window is the entries [wW, (w+1)W) of the file, malformed ones included (skipped, counted).
    for (const [i, entry] of sftEntries.entries()) {
      if (i > 0 && i % W === 0) await finishWindow();
      if (!entry.ok) {
        bad[entry.bad.reason] = (bad[entry.bad.reason] ?? 0) + 1;
        sftBad.push(entry.bad);
        continue;
      }
      pushSample(samples, 0, { offset: 0, size: 0 }, sftUid(entry.record.id), '');
      sftRecords.push(entry.record);
      sftIndexes.push(i);
    }
  } else {
    for await (const item of readShards(shardPaths)) {
      if (item.kind === 'bad') {
        // A bad sample belongs to the window of the good sample read before it (window 0 at the start).
        bad[item.bad.reason] = (bad[item.bad.reason] ?? 0) + 1;
        continue;
      }
      const s = item.sample;
      // The pixel limit from the header, as for SFT images, so that pass 2 never meets an image
      // pass 1 could have refused (the shard reader may check it too; the reason is the same).
      if (s.imageInfo && s.imageInfo.width * s.imageInfo.height > MAX_IMAGE_PIXELS) {
        bad['image_too_large'] = (bad['image_too_large'] ?? 0) + 1;
        continue;
      }
      if (good > 0 && good % W === 0) await finishWindow();
      const shard = shardNumber.get(s.shard)!;
      if (indexed?.shard !== shard) indexed = { shard, members: await indexTarMembers(s.shard) };
      const span = imageSpan(indexed.members, s.key, s.image.data.length);
      if (!span) {
        bad['image_not_indexed'] = (bad['image_not_indexed'] ?? 0) + 1;
        continue;
      }
      pushSample(samples, shard, span, s.uid, s.caption);
      good++;
    }
  }
  await finishWindow();
  const windows = window;

  const result: RunPackResult = {
    out,
    rank,
    world_size: worldSize,
    windows,
    packed_windows: packed.map((r) => r.window),
    skipped_windows: skipped,
    complete: false,
    this_run: sumReports(packed),
    total: null,
  };
  const all = await readDoneReports(out, windows);
  if (all) {
    const summary = sumReports(all);
    await writeJsonAtomic(join(out, PACK_REPORT_FILE), summary);
    result.complete = true;
    result.total = summary;
  }
  return result;
}

function pushSample(into: WindowSamples, shard: number, span: MemberSpan, uid: string, caption: string): void {
  into.shard.push(shard);
  into.offset.push(span.offset);
  into.size.push(span.size);
  into.uid.push(uid);
  into.caption.push(caption);
}

/** The image member of a sample: its key with an image extension, of the size the reader saw. */
function imageSpan(members: Map<string, MemberSpan>, key: string, size: number): MemberSpan | null {
  for (const ext of ['jpg', 'jpeg', 'png', 'webp', 'JPG', 'JPEG', 'PNG', 'WEBP']) {
    const span = members.get(`${key}.${ext}`);
    if (span && span.size === size) return span;
  }
  return null;
}


/** Every window's report, or null while some window is not done. */
async function readDoneReports(out: string, windows: number): Promise<WindowReport[] | null> {
  const reports: WindowReport[] = [];
  for (let w = 0; w < windows; w++) {
    const path = join(out, windowDoneName(w));
    if (!existsSync(path)) return null;
    reports.push((await readJsonOrRefuse(path, `delete it to pack window ${w} again`)) as WindowReport);
  }
  return reports;
}

/** A file of the output folder; one that does not parse (edited by hand, a foreign file) is the user's to fix. */
async function readJsonOrRefuse(path: string, fix: string): Promise<unknown> {
  try {
    return JSON.parse(await readFile(path, 'utf8'));
  } catch (err) {
    throw new LoomError(`${path}: cannot read (${(err as Error).message}); ${fix}`);
  }
}

/** Refuses to resume into a directory packed with other inputs or settings. */
async function checkPlan(out: string, plan: Record<string, unknown>): Promise<void> {
  const path = join(out, PACK_PLAN_FILE);
  const text = JSON.stringify(plan);
  if (existsSync(path)) {
    const previous = JSON.stringify(await readJsonOrRefuse(path, 'pack into a new --out (or delete it to start over)'));
    if (previous !== text) {
      throw new LoomError(
        `${path}: ${out} was packed with other shards, window, algorithm, config or tokenizer; pack into a new --out (or delete it to start over)`,
      );
    }
    return;
  }
  await writeJsonAtomic(path, plan);
}
