// Packing speed and efficiency on image-caption lengths: Loom's exact-fill against
// best-fit-decreasing (the baseline) and the original recipe's first-fit-decreasing per 10k
// shard, all in this one process on the same draws, plus the growth check from the smallest
// to the largest size (time ratio against the n log n ratio).
// Usage: node dist/bench/pack.js [--sizes 1000000,10000000] [--capacity 4096] [--repeats 3]
//        [--seed 1] [--max-items N] [--ffd-shards N]
//   Lengths: 144 image tokens + a lognormal caption (median 24 tokens, sigma 0.485, mean 27.0,
//   rounded, >= 1), see src/pack/algorithms/captionLengths.ts.
//   --ffd-shards N times the per-shard FFD on the first N shards only (its cost is linear in
//   the number of shards); by default it packs them all.
// Prints one JSON line per (algorithm, size) with the median time of --repeats runs, then one
// "growth" line per algorithm and one "target" line (exact-fill >= 1M samples/s at 1M).
import {
  packBestFitDecreasing,
  packExactFill,
  packFirstFitDecreasingPerShard,
  type PackInput,
  type PackResult,
} from '../src/pack/algorithms/index.js';
import { CAPTION_MEDIAN_TOKENS, CAPTION_SIGMA, IMAGE_TOKENS, sampleCaptionLengths } from '../src/pack/algorithms/captionLengths.js';

function option(name: string): string | undefined {
  const i = process.argv.indexOf(`--${name}`);
  return i < 0 ? undefined : process.argv[i + 1];
}

function positiveInt(name: string, fallback: number): number {
  const raw = option(name);
  if (raw === undefined) return fallback;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 1) throw new Error(`--${name}: expected a positive integer, got '${raw}'`);
  return n;
}

const sizes = (option('sizes') ?? '1000000,10000000').split(',').map((s) => {
  const n = Number(s);
  if (!Number.isInteger(n) || n < 1) throw new Error(`--sizes: expected positive integers, got '${s}'`);
  return n;
});
const capacity = positiveInt('capacity', 4096);
const repeats = positiveInt('repeats', 3);
const seed = positiveInt('seed', 1);
const maxItemsPerBin = option('max-items') === undefined ? null : positiveInt('max-items', 1);
const ffdShards = option('ffd-shards') === undefined ? Infinity : positiveInt('ffd-shards', 1);
const SHARD = 10_000;

type Packer = (input: PackInput) => PackResult;
const algorithms: [string, Packer][] = [
  ['exact-fill', packExactFill],
  ['best-fit-decreasing', packBestFitDecreasing],
  ['first-fit-decreasing-per-shard', (input) => packFirstFitDecreasingPerShard({ ...input, shardSize: SHARD })],
];

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

function emit(line: object): void {
  process.stdout.write(`${JSON.stringify(line)}\n`);
}

emit({
  distribution: 'image-caption',
  image_tokens: IMAGE_TOKENS,
  caption_lognormal: { median: CAPTION_MEDIAN_TOKENS, sigma: CAPTION_SIGMA, mean: CAPTION_MEDIAN_TOKENS * Math.exp((CAPTION_SIGMA * CAPTION_SIGMA) / 2) },
  capacity,
  max_items_per_bin: maxItemsPerBin,
  seed,
  repeats,
});

// Warm the JIT on a small draw so the first timed size is not charged for compilation.
const warm = sampleCaptionLengths(200_000, seed + 1);
for (const [, pack] of algorithms) pack({ lengths: warm, capacity, maxItemsPerBin, seed });

const seconds = new Map<string, Map<number, number>>();
for (const n of sizes) {
  const lengths = sampleCaptionLengths(n, seed);
  let min = Infinity;
  let max = 0;
  let sum = 0;
  for (const len of lengths) {
    min = Math.min(min, len);
    max = Math.max(max, len);
    sum += len;
  }
  emit({ n, mean_length: sum / n, min_length: min, max_length: max });
  for (const [name, pack] of algorithms) {
    const subset = name.startsWith('first-fit') && n > ffdShards * SHARD;
    const sample = subset ? lengths.subarray(0, ffdShards * SHARD) : lengths;
    const times: number[] = [];
    let result: PackResult | null = null;
    for (let r = 0; r < repeats; r++) {
      const t0 = process.hrtime.bigint();
      result = pack({ lengths: sample, capacity, maxItemsPerBin, seed });
      times.push(Number(process.hrtime.bigint() - t0) / 1e9);
    }
    const t = median(times);
    // A subset's time is scaled to the whole n: per-shard FFD costs the same for every shard.
    const scaled = (t * n) / sample.length;
    if (!seconds.has(name)) seconds.set(name, new Map());
    seconds.get(name)!.set(n, scaled);
    emit({
      algorithm: name,
      result_from: result!.algorithm,
      n,
      packed: sample.length,
      efficiency: Number(result!.efficiency.toFixed(6)),
      bins: result!.bins.length,
      seconds: Number(scaled.toFixed(4)),
      samples_per_s: Math.round(sample.length / t),
      ...(subset ? { note: `timed on the first ${ffdShards} shards of ${SHARD}; seconds scaled to n` } : {}),
    });
  }
}

if (sizes.length >= 2) {
  const small = Math.min(...sizes);
  const large = Math.max(...sizes);
  const nlogn = (large * Math.log(large)) / (small * Math.log(small));
  for (const [name, bySize] of seconds) {
    const ratio = bySize.get(large)! / bySize.get(small)!;
    emit({ growth: name, n_small: small, n_large: large, time_ratio: Number(ratio.toFixed(3)), nlogn_ratio: Number(nlogn.toFixed(3)), within_nlogn: ratio <= nlogn });
  }
}
const exactAtMillion = seconds.get('exact-fill')?.get(1_000_000);
if (exactAtMillion !== undefined) {
  emit({ target: 'exact-fill >= 1M samples/s at 1M', samples_per_s: Math.round(1_000_000 / exactAtMillion), met: exactAtMillion <= 1 });
}
