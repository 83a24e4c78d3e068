// `loom synth`: renders the bundled synthetic dataset (pre-training pairs with known noise, SFT
// conversations, a held-out MMBench-style benchmark).
import type { Command } from 'commander';
import { LoomError, EXIT_USAGE } from '../../util/errors.js';
import { printSummary, table } from '../output.js';
import { startProgress } from '../progress.js';
import type { Progress } from '../../util/progress.js';
import { runSynth, type SynthManifest } from '../../synth/generate.js';
import { EVEN_MIX, NOISE_KINDS, parseNoiseMix } from '../../synth/noise.js';
import { integerOption } from '../options.js';

interface SynthCliOptions {
  out: string;
  seed: string;
  samples: string;
  sft: string;
  bench: string;
  noise: string;
  noiseMix: string;
  samplesPerShard: string;
  concurrency?: string;
  threads?: string;
  json?: boolean;
  quiet?: boolean;
}


export function registerSynth(program: Command): void {
  program
    .command('synth')
    .summary('render the synthetic dataset: pairs, SFT, bench')
    .description(
      'Render the bundled synthetic dataset: shapes on varied backgrounds with accurate captions.\n' +
        'Writes OUT/pretrain/{00000000..}.tar (WebDataset image-caption pairs; a --noise fraction is\n' +
        'deliberately corrupted, with the truth in each sample json), OUT/sft/llava.json (+ images/),\n' +
        'OUT/bench/mmbench_synth.tsv (held-out multiple choice, MMBench layout) and OUT/synth.json.\n' +
        'Same seed and options give the same bytes. Rerunning with the same options resumes (finished\n' +
        'shards are kept); with different options the previous synth output in OUT is replaced.',
    )
    .requiredOption('--out <dir>', 'output directory (created; must be empty or a previous synth output)')
    .option('--seed <n>', 'random seed', '0')
    .option('--samples <n>', 'pre-training image-caption pairs', '10000')
    .option('--sft <n>', 'SFT conversations', '2000')
    .option('--bench <n>', 'benchmark questions', '500')
    .option('--noise <fraction>', 'fraction of corrupted pre-training pairs, 0..1', '0.3')
    .option('--noise-mix <spec>', `weights of noise kinds, e.g. "mismatched=2,blank=1" or "even" (kinds: ${NOISE_KINDS.join(', ')})`, 'even')
    .option('--samples-per-shard <n>', 'pairs per pre-training shard', '10000')
    .option('--threads <n>', 'worker threads that draw and encode images (default: one per core; 0 = main thread only)')
    .option('--concurrency <n>', 'images in flight at once (default: 8 per thread)')
    .option('--quiet', 'no progress bars')
    .option('--json', 'print the manifest as JSON on stdout')
    .action(async (opts: SynthCliOptions) => {
      const noise = Number(opts.noise);
      if (!Number.isFinite(noise) || noise < 0 || noise > 1) throw new LoomError(`--noise: expected a fraction between 0 and 1, got '${opts.noise}'`, EXIT_USAGE);
      let noiseMix = { ...EVEN_MIX };
      try {
        noiseMix = parseNoiseMix(opts.noiseMix);
      } catch (err) {
        throw new LoomError(`--noise-mix: ${(err as Error).message}`, EXIT_USAGE);
      }
      const options = {
        out: opts.out,
        seed: integerOption(opts.seed, '--seed', 0),
        samples: integerOption(opts.samples, '--samples', 0),
        sft: integerOption(opts.sft, '--sft', 0),
        bench: integerOption(opts.bench, '--bench', 0),
        noise,
        noiseMix,
        samplesPerShard: integerOption(opts.samplesPerShard, '--samples-per-shard', 1),
        ...(opts.concurrency !== undefined ? { concurrency: integerOption(opts.concurrency, '--concurrency', 1) } : {}),
        ...(opts.threads !== undefined ? { threads: integerOption(opts.threads, '--threads', 0) } : {}),
      };
      const bars = new Map<string, Progress>();
      const started = Date.now();
      const manifest = await runSynth({
        ...options,
        onProgress: (part, done, total) => {
          let bar = bars.get(part);
          if (!bar) {
            for (const b of bars.values()) b.stop();
            bars.clear();
            bar = startProgress(`synth ${part}`, total, { silent: opts.quiet || opts.json, unit: part === 'bench' ? 'questions' : part === 'sft' ? 'chats' : 'samples' });
            bars.set(part, bar);
          }
          bar.update(done, total);
        },
      });
      for (const b of bars.values()) b.stop();
      const seconds = (Date.now() - started) / 1000;
      printSummary(opts, manifest, () => humanSummary(opts.out, manifest, seconds));
    });
}

function humanSummary(out: string, m: SynthManifest, seconds: number): string {
  const noisy = m.pretrain.samples - m.pretrain.clean;
  return [
    `synth: wrote ${out} (seed ${m.seed}) in ${seconds.toFixed(1)} s`,
    table([
      ['pre-training pairs', `${m.pretrain.samples} in ${m.pretrain.shards.length} shard(s)`],
      ['  clean', m.pretrain.clean],
      ['  noisy', `${noisy} (${NOISE_KINDS.filter((k) => m.pretrain.noise[k] > 0).map((k) => `${k} ${m.pretrain.noise[k]}`).join(', ') || 'none'})`],
      ['  formats', Object.entries(m.pretrain.formats).map(([k, v]) => `${k} ${v}`).join(', ')],
      ['SFT conversations', `${m.sft.conversations} (${m.sft.turns} Q/A turns) -> ${m.sft.file}`],
      ['benchmark questions', `${m.bench.questions} -> ${m.bench.file}`],
      ['  answers', Object.entries(m.bench.answers).map(([k, v]) => `${k} ${v}`).join(', ')],
      ['  held out', `${m.bench.held_out.redrawn_as_training} scene(s) redrawn for matching training scenes`],
    ]),
  ].join('\n');
}
