// Reads shards and summarises them: counts, bad samples by reason, caption and image-size
// distributions, image formats. The engine behind `loom inspect`.
import { readShards } from './reader.js';
import { Log2Histogram, type HistogramSummary } from './histogram.js';
import type { BadReason, ShardItem } from './types.js';
import { readUpstreamStats, type UpstreamStats } from './upstreamStats.js';

export interface InspectOptions {
  /** Fully decode images (default true). */
  decode?: boolean;
  /** Stop after this many samples, good and bad together. */
  limit?: number;
  /** Examples kept per bad reason (default 5). */
  examples?: number;
  /** Called for every item read (progress). */
  onItem?: (item: ShardItem) => void;
}

export interface InspectReport {
  shards: number;
  samples: number;
  bad: number;
  /** True when --limit stopped the reading early. */
  limited: boolean;
  decoded: boolean;
  badByReason: Partial<Record<BadReason, { count: number; examples: Array<{ shard: string; key: string | null; detail: string }> }>>;
  perShard: Array<{ shard: string; samples: number; bad: number }>;
  /** The producer's own failure counts from the shards' _stats.json sidecars (img2dataset's
   *  failed_to_download, failed_to_resize, status_dict), for all listed shards even with --limit. */
  upstream: UpstreamStats;
  formats: Record<string, number>;
  captionChars: HistogramSummary;
  captionWords: HistogramSummary;
  imageWidth: HistogramSummary;
  imageHeight: HistogramSummary;
  seconds: number;
  /** Samples (good and bad) read per second. */
  itemsPerSecond: number;
}

export async function inspectShards(paths: string[], options: InspectOptions = {}): Promise<InspectReport> {
  const decode = options.decode ?? true;
  const maxExamples = options.examples ?? 5;
  const limit = options.limit ?? Infinity;
  const started = performance.now();
  const report: InspectReport = {
    shards: paths.length, samples: 0, bad: 0, limited: false, decoded: decode, badByReason: {},
    perShard: paths.map((shard) => ({ shard, samples: 0, bad: 0 })),
    upstream: await readUpstreamStats(paths),
    formats: {}, captionChars: emptySummary(), captionWords: emptySummary(), imageWidth: emptySummary(),
    imageHeight: emptySummary(), seconds: 0, itemsPerSecond: 0,
  };
  const perShard = new Map(report.perShard.map((s) => [s.shard, s]));
  const chars = new Log2Histogram();
  const words = new Log2Histogram();
  const widths = new Log2Histogram();
  const heights = new Log2Histogram();
  for await (const item of readShards(paths, { decodeImages: decode })) {
    if (report.samples + report.bad >= limit) {
      report.limited = true;
      break;
    }
    options.onItem?.(item);
    if (item.kind === 'bad') {
      const b = item.bad;
      report.bad++;
      perShard.get(b.shard)!.bad++;
      const entry = (report.badByReason[b.reason] ??= { count: 0, examples: [] });
      entry.count++;
      if (entry.examples.length < maxExamples) entry.examples.push({ shard: b.shard, key: b.key, detail: b.detail });
      continue;
    }
    const s = item.sample;
    report.samples++;
    perShard.get(s.shard)!.samples++;
    report.formats[s.image.ext] = (report.formats[s.image.ext] ?? 0) + 1;
    chars.add(codePoints(s.caption));
    words.add(wordCount(s.caption));
    if (s.imageInfo) {
      widths.add(s.imageInfo.width);
      heights.add(s.imageInfo.height);
    }
  }
  report.captionChars = chars.summary();
  report.captionWords = words.summary();
  report.imageWidth = widths.summary();
  report.imageHeight = heights.summary();
  report.seconds = (performance.now() - started) / 1000;
  report.itemsPerSecond = (report.samples + report.bad) / Math.max(report.seconds, 1e-9);
  return report;
}

function emptySummary(): HistogramSummary {
  return { count: 0, min: null, max: null, mean: null, buckets: [] };
}

/** Characters as a reader counts them (code points, so an emoji is one). */
function codePoints(text: string): number {
  let n = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c < 0xdc00 || c > 0xdfff || i === 0 || (text.charCodeAt(i - 1) & 0xfc00) !== 0xd800) n++;
  }
  return n;
}

function wordCount(text: string): number {
  const trimmed = text.trim();
  return trimmed.length === 0 ? 0 : trimmed.split(/\s+/).length;
}
