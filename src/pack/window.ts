// Packs one window of samples (a unit of work of `loom pack`): lengths from the captions, bins
// from the chosen packer, then each bin's images read back by offset, prepared, and written as
// one packed sequence, bins in order. Writes DIR/w{window}/ and, last, DIR/w{window}.done.json.
import { open, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import type { RunConfig } from '../config/schema.js';
import { packBestFitDecreasing, packExactFill, packFirstFitDecreasingPerShard, type PackResult } from './algorithms/index.js';
import { PackedShardWriter, type PackedDoc, type PackedShardSpec } from './packedShard.js';
import { prepareImageOrSkip } from './documentImage.js';
import { addCounts, emptyCounts, type DocumentCounts, type DocumentTokens, type PretrainDocuments } from './sample.js';
import type { SftBadRecord, SftDocuments, SftRecord } from './sft.js';
import { clipDetail, readSftImage } from './sftImages.js';
import { writeJsonAtomic } from '../util/atomic.js';
import { Rng } from '../util/rng.js';

export const PACK_ALGORITHMS = ['exact-fill', 'bfd', 'ffd'] as const;
export type PackAlgorithm = (typeof PACK_ALGORITHMS)[number];

/** The original recipe's FFD packs within groups of this many samples (its 10k shards). */
const FFD_SHARD_SIZE = 10_000;
const LENGTH_BATCH = 10_000;
const BINS_PER_CHUNK = 64;
const IMAGE_CONCURRENCY = 8;
/** Rng stream key of the written order of a window's sequences. */
const SEQUENCE_ORDER_STREAM = 0x5e9;
const MAX_BAD_RECORDS = 1000;

/** The samples of one window, as read in pass 1 (no image bytes). */
export interface WindowSamples {
  shard: number[];
  offset: number[];
  size: number[];
  uid: string[];
  caption: string[];
}

export function emptyWindowSamples(): WindowSamples {
  return { shard: [], offset: [], size: [], uid: [], caption: [] };
}

export interface WindowReport {
  window: number;
  first_sample: number;
  samples_read: number;
  bad_samples: number;
  bad_reasons: Record<string, number>;
  /** SFT only: the malformed records skipped, in file order (at most MAX_BAD_RECORDS per window). */
  bad_records?: SftBadRecord[];
  documents: DocumentCounts;
  algorithm: string;
  sequences: number;
  images: number;
  real_tokens: number;
  capacity_tokens: number;
  efficiency: number;
  images_per_sequence: { mean: number; min: number; max: number };
  shards: string[];
  seconds: number;
  samples_per_s: number;
  images_per_s: number;
}

export interface PackWindowOptions {
  window: number;
  firstSample: number;
  samples: WindowSamples;
  badReasons: Record<string, number>;
  badRecords?: SftBadRecord[];
  shardPaths: string[];
  config: RunConfig;
  /** Pre-training documents; for SFT windows pass `sft` instead. */
  documents?: PretrainDocuments;
  /**
   * An SFT window: its conversations and their entry numbers in the JSON, index-aligned with
   * samples.uid (shard/offset/size/caption unused), and the image size cap pass 1 applied.
   */
  sft?: { records: SftRecord[]; indexes: number[]; documents: SftDocuments; maxImageBytes: number };
  spec: PackedShardSpec;
  algorithm: PackAlgorithm;
  outDir: string;
  sequencesPerShard?: number;
  onDocuments?: (n: number) => void;
}

export const windowDirName = (w: number): string => `w${String(w).padStart(6, '0')}`;
export const windowDoneName = (w: number): string => `${windowDirName(w)}.done.json`;

function runPacker(algorithm: PackAlgorithm, lengths: Int32Array, config: RunConfig, seed: number): PackResult {
  const input = { lengths, capacity: config.data.seq_len, maxItemsPerBin: config.data.max_images_per_sequence, seed };
  if (algorithm === 'bfd') return packBestFitDecreasing(input);
  if (algorithm === 'ffd') return packFirstFitDecreasingPerShard({ ...input, shardSize: FFD_SHARD_SIZE });
  return packExactFill(input);
}

export async function packWindow(o: PackWindowOptions): Promise<WindowReport> {
  const started = performance.now();
  const n = o.samples.uid.length;
  // Lengths of every sample's document (0 = dropped), tokenized in batches.
  const lengths = new Int32Array(n);
  const counts = emptyCounts();
  const sft = o.sft;
  const documents = o.documents;
  if (!sft && !documents) throw new Error('packWindow needs documents (pre-training) or sft');
  const measure = (from: number, to: number) =>
    sft ? sft.documents.lengths(sft.records.slice(from, to)) : documents!.lengths(o.samples.caption.slice(from, to));
  const buildDocs = (samples: number[]) =>
    sft ? sft.documents.build(samples.map((i) => sft.records[i]!)) : documents!.build(samples.map((i) => o.samples.caption[i]!));
  for (let from = 0; from < n; from += LENGTH_BATCH) {
    const part = await measure(from, from + LENGTH_BATCH);
    lengths.set(part.lengths, from);
    addCounts(counts, part.counts);
  }
  const kept: number[] = [];
  for (let i = 0; i < n; i++) if (lengths[i]! > 0) kept.push(i);
  o.onDocuments?.(n - kept.length);
  const packed = runPacker(o.algorithm, Int32Array.from(kept, (i) => lengths[i]!), o.config, o.config.seed + o.window);
  // Packers emit sequences in an order that drifts with document length (long documents first);
  // written as is, every epoch would start on the long-caption sequences (a loss bump each epoch
  // with the trainer's local shuffle buffer). A seeded shuffle makes every shard a fair sample.
  const bins = Rng.derive(o.config.seed, o.window, SEQUENCE_ORDER_STREAM).shuffle([...packed.bins]);

  const writer = new PackedShardWriter({
    dir: join(o.outDir, windowDirName(o.window)),
    spec: o.spec,
    ...(o.sequencesPerShard !== undefined ? { sequencesPerShard: o.sequencesPerShard } : {}),
    // A window of W samples makes at most W sequences, so keys stay unique across windows.
    firstSequence: o.firstSample,
  });
  // One handle per shard, opened once (concurrent reads share the pending open).
  const handles = new Map<number, Promise<FileHandle>>();
  let minImages = Infinity;
  let maxImages = 0;
  // Samples whose image failed here (read, decode, resize, encode): skipped, not fatal.
  const badReasons: Record<string, number> = { ...o.badReasons };
  const lateBadRecords: SftBadRecord[] = [];
  let lateBad = 0;
  let next: Promise<{ bins: Int32Array[]; samples: number[]; docs: Array<DocumentTokens | null>; images: ImagesOutcome[] }> | null = null;
  try {
    const readImage = async (i: number): Promise<ImagesOutcome> => {
      const shard = o.samples.shard[i]!;
      const path = o.shardPaths[shard]!;
      let opening = handles.get(shard);
      if (!opening) {
        opening = open(path, 'r');
        handles.set(shard, opening);
      }
      // The shard was read whole in pass 1; failing now means it changed or vanished since.
      let bytes: Buffer;
      try {
        const handle = await opening;
        bytes = Buffer.alloc(o.samples.size[i]!);
        const { bytesRead } = await handle.read(bytes, 0, bytes.length, o.samples.offset[i]!);
        if (bytesRead !== bytes.length) return { ok: false, reason: 'unreadable_file', detail: `${path}: image of uid ${o.samples.uid[i]} ends early (read ${bytesRead} of ${bytes.length} bytes)` };
      } catch (err) {
        return { ok: false, reason: 'unreadable_file', detail: `${path}: ${err instanceof Error ? err.message : String(err)}` };
      }
      const prepared = await prepareImageOrSkip(o.config, bytes);
      return prepared.ok ? { ok: true, images: [prepared.jpeg] } : { ...prepared, detail: `${path}: uid ${o.samples.uid[i]}: ${prepared.detail}` };
    };
    const readImages = async (i: number): Promise<ImagesOutcome> => {
      if (!sft) return readImage(i);
      const path = sft.records[i]!.image;
      if (path === null) return { ok: true, images: [] };
      const read = await readSftImage(path, sft.maxImageBytes);
      if (!read.ok) return read;
      const prepared = await prepareImageOrSkip(o.config, read.data);
      return prepared.ok ? { ok: true, images: [prepared.jpeg] } : { ...prepared, detail: `${path}: ${prepared.detail}` };
    };
    const prepareChunk = async (fromBin: number) => {
      const chunkBins = bins.slice(fromBin, fromBin + BINS_PER_CHUNK);
      const samples = chunkBins.flatMap((bin) => Array.from(bin, (j) => kept[j]!));
      const built = await buildDocs(samples);
      const images = await mapLimited(samples, IMAGE_CONCURRENCY, readImages);
      return { bins: chunkBins, samples, docs: built.docs, images };
    };
    /** A sample skipped here leaves the documents' counts (it was counted when measured) for bad_reasons. */
    const skip = async (i: number, failure: { reason: string; detail: string }) => {
      badReasons[failure.reason] = (badReasons[failure.reason] ?? 0) + 1;
      lateBad++;
      if (sft) lateBadRecords.push({ id: sft.records[i]!.id, index: sft.indexes[i]!, reason: failure.reason, detail: clipDetail(failure.detail) });
      subtractCounts(counts, (await buildDocs([i])).counts);
      o.onDocuments?.(1);
    };
    next = bins.length > 0 ? prepareChunk(0) : null;
    for (let b = 0; next; b += BINS_PER_CHUNK) {
      const chunk = await next;
      // Prepare the next chunk while this one is written.
      next = b + BINS_PER_CHUNK < bins.length ? prepareChunk(b + BINS_PER_CHUNK) : null;
      let at = 0;
      for (const bin of chunk.bins) {
        const docs: PackedDoc[] = [];
        for (let k = 0; k < bin.length; k++, at++) {
          const i = chunk.samples[at]!;
          const doc = chunk.docs[at];
          if (!doc || doc.ids.length !== lengths[i]) {
            throw new Error(`uid ${o.samples.uid[i]}: document has ${doc?.ids.length ?? 0} tokens when built but ${lengths[i]} when measured`);
          }
          const images = chunk.images[at]!;
          if (!images.ok) {
            await skip(i, images);
            continue;
          }
          docs.push({ uid: o.samples.uid[i]!, ids: doc.ids, loss: doc.loss, images: images.images });
        }
        // The bin's other documents still make a sequence; a bin left empty makes none.
        if (docs.length === 0) continue;
        const images = docs.reduce((a, d) => a + d.images.length, 0);
        minImages = Math.min(minImages, images);
        maxImages = Math.max(maxImages, images);
        await writer.write({ docs });
        o.onDocuments?.(docs.length);
      }
    }
  } catch (err) {
    await next?.catch(() => undefined);
    await writer.abort();
    throw err;
  } finally {
    // A chunk still being prepared after a failure may hold reads on these; they fail harmlessly.
    for (const h of handles.values()) await h.then((f) => f.close()).catch(() => undefined);
  }
  const written = await writer.close();
  const seconds = (performance.now() - started) / 1000;
  const capacity = written.sequences * o.config.data.seq_len;
  const report: WindowReport = {
    window: o.window,
    first_sample: o.firstSample,
    samples_read: n - lateBad,
    bad_samples: Object.values(badReasons).reduce((a, b) => a + b, 0),
    bad_reasons: badReasons,
    ...(o.badRecords ? { bad_records: [...o.badRecords, ...lateBadRecords].sort((a, b) => a.index - b.index).slice(0, MAX_BAD_RECORDS) } : {}),
    documents: counts,
    algorithm: packed.algorithm,
    sequences: written.sequences,
    images: written.images,
    real_tokens: written.real_tokens,
    capacity_tokens: capacity,
    efficiency: capacity === 0 ? 0 : written.real_tokens / capacity,
    images_per_sequence: {
      mean: written.sequences === 0 ? 0 : written.images / written.sequences,
      min: written.sequences === 0 ? 0 : minImages,
      max: maxImages,
    },
    shards: written.shards.map((p) => join(windowDirName(o.window), p.slice(p.lastIndexOf('/') + 1))),
    seconds,
    samples_per_s: seconds > 0 ? n / seconds : 0,
    images_per_s: seconds > 0 ? written.images / seconds : 0,
  };
  await writeJsonAtomic(join(o.outDir, windowDoneName(o.window)), report);
  return report;
}

/** A document's image(s) ready for the shard, or why the sample is skipped. */
type ImagesOutcome = { ok: true; images: Buffer[] } | { ok: false; reason: string; detail: string };

function subtractCounts(from: DocumentCounts, less: DocumentCounts): void {
  for (const k of Object.keys(from) as Array<keyof DocumentCounts>) from[k] -= less[k];
}

/** fn over items with at most `limit` calls in flight; results in input order. */
async function mapLimited<T, R>(items: readonly T[], limit: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const out = new Array<R>(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i]!);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return out;
}

/** The sum of window reports (pack.json). */
export function sumReports(reports: WindowReport[]): Omit<WindowReport, 'window' | 'first_sample' | 'algorithm'> & { windows: number; algorithm: string[] } {
  const documents = emptyCounts();
  const badReasons: Record<string, number> = {};
  let t = { samples_read: 0, bad_samples: 0, sequences: 0, images: 0, real_tokens: 0, capacity_tokens: 0, seconds: 0 };
  let min = Infinity;
  let max = 0;
  for (const r of reports) {
    addCounts(documents, r.documents);
    for (const [k, v] of Object.entries(r.bad_reasons)) badReasons[k] = (badReasons[k] ?? 0) + v;
    t = {
      samples_read: t.samples_read + r.samples_read,
      bad_samples: t.bad_samples + r.bad_samples,
      sequences: t.sequences + r.sequences,
      images: t.images + r.images,
      real_tokens: t.real_tokens + r.real_tokens,
      capacity_tokens: t.capacity_tokens + r.capacity_tokens,
      seconds: t.seconds + r.seconds,
    };
    if (r.sequences > 0) {
      min = Math.min(min, r.images_per_sequence.min);
      max = Math.max(max, r.images_per_sequence.max);
    }
  }
  return {
    windows: reports.length,
    algorithm: [...new Set(reports.map((r) => r.algorithm))],
    ...t,
    bad_reasons: badReasons,
    ...(reports.some((r) => r.bad_records) ? { bad_records: reports.flatMap((r) => r.bad_records ?? []).slice(0, MAX_BAD_RECORDS) } : {}),
    documents,
    efficiency: t.capacity_tokens === 0 ? 0 : t.real_tokens / t.capacity_tokens,
    images_per_sequence: { mean: t.sequences === 0 ? 0 : t.images / t.sequences, min: t.sequences === 0 ? 0 : min, max },
    shards: reports.flatMap((r) => r.shards),
    samples_per_s: t.seconds > 0 ? t.samples_read / t.seconds : 0,
    images_per_s: t.seconds > 0 ? t.images / t.seconds : 0,
  };
}
