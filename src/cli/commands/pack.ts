// `loom pack`: tokenize curated pre-training pairs, pack them into fixed-length sequences
// (exact-fill by default) and write packed shards, a window at a time, resumably, across ranks.
import type { Command } from 'commander';
import { LoomError, EXIT_USAGE } from '../../util/errors.js';
import { printSummary, table } from '../output.js';
import { startProgress } from '../progress.js';
import { DEFAULT_WINDOW, rankFromEnv, runPack, type PackSummary, type RunPackResult } from '../../pack/run.js';
import { DEFAULT_MAX_IMAGE_BYTES } from '../../pack/sftImages.js';
import { PACK_ALGORITHMS, type PackAlgorithm } from '../../pack/window.js';
import { integerOption } from '../options.js';
import { addRunConfigOptions, resolveRunConfigOptions, type RunConfigCliOptions } from '../runConfigOptions.js';

interface PackCliOptions extends RunConfigCliOptions {
  shards?: string;
  sftJson?: string;
  imageRoot?: string;
  maxImageBytes?: string;
  out: string;
  window: string;
  algorithm: string;
  sequencesPerShard: string;
  json?: boolean;
  quiet?: boolean;
}

const HELP = [
  'Tokenize each curated image-caption pair with the run\'s tokenizer and data.pretrain_template, measure its ' +
    'document (text tokens + the stage\'s image tokens, image_grid^2), truncate or drop documents longer than ' +
    'data.seq_len (data.overlong), pack them into sequences of at most seq_len tokens and write packed shards ' +
    '(docs/formats.md section 6): token ids, per-document lengths, loss mask and each document\'s image as a ' +
    'JPEG at model.vision.image_size.',
  'Packers (--algorithm): exact-fill (default; fills ~99.9% at 4096), bfd (best-fit-decreasing baseline), ffd ' +
    '(the original recipe: first-fit-decreasing within each 10k samples). data.max_images_per_sequence caps ' +
    'images per sequence. Same input, config and seed give byte-identical shards (seed = config.seed + window).',
  'Windows: the good samples, in reading order (shards in order, tar order inside), are cut into windows of ' +
    '--window samples; each window is packed on its own with bounded memory (~100 bytes per sample plus the ' +
    'images of the sequences in flight), so a billion-sample set streams. Bad samples are skipped, counted by ' +
    'reason, and charged to the window of the good sample before them. An image that fails later, when it is ' +
    'read back, decoded, resized or encoded (a truncated or corrupt JPEG: corrupt_image, truncated_image), is ' +
    'skipped and counted the same way; its sequence is written with the other documents. Images over ' +
    'MAX_IMAGE_PIXELS (89,478,485) are refused from their header (image_too_large). A bad sample never stops the job.',
  'Output: OUT/config.json (the resolved config), OUT/pack-plan.json (inputs and settings; resuming with other ' +
    'settings is refused), per window OUT/w{000000}/{00000000}.tar + _pack.json sidecars and, last, ' +
    'OUT/w{000000}.done.json (the window\'s report), and OUT/pack.json (all windows summed) once every window is done.',
  'Parallel and resumable: a process takes the windows w with w % WORLD_SIZE == RANK (environment variables as ' +
    'torchrun sets them; default 0 and 1); every process reads the whole input (cheap: no image decode) but ' +
    'packs only its windows. A window with a done file is never redone; a window directory without one (a ' +
    'killed run) is deleted and packed again. Rerun the same command after a kill to finish.',
  'SFT (--stage sft, or a stage sft --config): packs a LLaVA conversation JSON (--sft-json PATH, default ' +
    'data.shards when it names a .json file) with the same packers into ' +
    'the same format with stage \'sft\' in the header. Each conversation is rendered with the ChatML template and ' +
    'system prompt "You are a helpful assistant."; its image (the <image> placeholder of the first human turn) ' +
    'expands to image_grid^2 tokens; the loss mask is 1 exactly on assistant answers and their <|im_end|>. ' +
    'Overlong conversations lose whole trailing turn pairs (data.overlong truncate) or are dropped. A window is ' +
    'the conversations [wW, (w+1)W) in file order; malformed records are skipped and listed (id, index, reason).',
  'SFT images (--image-root DIR, default the JSON\'s folder): every record\'s image path is relative to DIR and ' +
    'must stay inside it. Absolute paths, paths that leave DIR through .. or through a symlink ' +
    '(image_outside_root), missing files (image_missing), directories, devices, FIFOs and sockets ' +
    '(image_not_a_file), files over --max-image-bytes (default 64 MiB; image_too_big) and files that are not a ' +
    'JPEG, PNG or WebP within the pixel limit (corrupt_image, image_too_large) are bad records: counted, listed, ' +
    'and never read.',
  'Report: samples read, bad samples by reason, documents kept/truncated/dropped, sequences, images, real ' +
    'tokens, efficiency (real tokens / (sequences x seq_len)), images per sequence (mean, min, max), seconds, ' +
    'samples/s and images/s (summed over windows: seconds are per-process work time).',
].join('\n\n');

export function registerPack(program: Command): void {
  const command = program
    .command('pack')
    .summary('tokenize and pack samples into packed shards')
    .description(HELP)
    .requiredOption('--out <dir>', 'output directory (created; rerun into it to resume)');
  addRunConfigOptions(command)
    .option('--shards <spec>', 'input shards: directory, file or {a..b} brace range (default: data.shards)')
    .option('--sft-json <path>', 'stage sft: the LLaVA conversation JSON to pack (default: data.shards when it ends in .json)')
    .option('--image-root <dir>', 'stage sft: image paths are relative to DIR and confined to it (default: the JSON file\'s folder)')
    .option('--max-image-bytes <n>', `stage sft: larger image files are bad records, never read (default ${DEFAULT_MAX_IMAGE_BYTES} = 64 MiB)`)
    .option('--window <n>', 'samples per window (the unit of work and of packing)', String(DEFAULT_WINDOW))
    .option('--algorithm <name>', `packer: ${PACK_ALGORITHMS.join(', ')}`, 'exact-fill')
    .option('--sequences-per-shard <n>', 'packed sequences per output shard', '1000')
    .option('--quiet', 'no progress bars')
    .option('--json', 'print the summary as JSON on stdout')
    .addHelpText(
      'after',
      '\nExamples:\n' +
        '  loom pack --preset tiny --shards data/synth/pretrain --out data/packed\n' +
        '  loom pack --config runs/x/config.json --out data/packed --window 1000000\n' +
        '  loom pack --preset tiny --stage sft --sft-json data/synth/sft/llava.json --out data/packed-sft\n' +
        '  RANK=1 WORLD_SIZE=4 loom pack --config runs/x/config.json --out data/packed   # one of 4 processes\n',
    )
    .action(async (opts: PackCliOptions) => {
      if (!(PACK_ALGORITHMS as readonly string[]).includes(opts.algorithm)) {
        throw new LoomError(`--algorithm must be one of ${PACK_ALGORITHMS.join(', ')}, got '${opts.algorithm}'`, EXIT_USAGE);
      }
      const config = resolveRunConfigOptions(opts);
      const { rank, worldSize } = rankFromEnv();
      const progress = startProgress(worldSize > 1 ? `pack rank ${rank}/${worldSize}` : 'pack', undefined, { unit: 'samples', silent: opts.quiet === true });
      let result: RunPackResult;
      try {
        result = await runPack({
          config,
          ...(opts.shards !== undefined ? { shards: opts.shards } : {}),
          ...(opts.sftJson !== undefined ? { sftJson: opts.sftJson } : {}),
          ...(opts.imageRoot !== undefined ? { imageRoot: opts.imageRoot } : {}),
          ...(opts.maxImageBytes !== undefined ? { maxImageBytes: integerOption(opts.maxImageBytes, '--max-image-bytes', 1) } : {}),
          out: opts.out,
          window: integerOption(opts.window, '--window', 1),
          algorithm: opts.algorithm as PackAlgorithm,
          sequencesPerShard: integerOption(opts.sequencesPerShard, '--sequences-per-shard', 1),
          rank,
          worldSize,
          onProgress: (done, total) => progress.update(done, total),
        });
      } catch (err) {
        // The OS refusing the output folder or the disk filling up is the user's to fix, not a bug.
        const code = (err as NodeJS.ErrnoException | null)?.code;
        if (err instanceof Error && !(err instanceof LoomError) && typeof code === 'string' && /^E[A-Z]+$/.test(code)) throw new LoomError(err.message);
        throw err;
      } finally {
        progress.stop();
      }
      printSummary(opts, result, () => humanSummary(result));
    });
}

function summaryRows(s: PackSummary): Array<[string, string | number]> {
  const d = s.documents;
  const pct = (x: number) => `${(100 * x).toFixed(3)}%`;
  return [
    ['samples read', s.samples_read],
    ['bad samples skipped', `${s.bad_samples}${s.bad_samples > 0 ? ` (${Object.entries(s.bad_reasons).map(([k, v]) => `${k} ${v}`).join(', ')})` : ''}`],
    ['documents kept', d.kept],
    ['  truncated', `${d.truncated} (${d.truncatedTokens} caption tokens cut)`],
    ['  dropped', `${d.droppedOverlong} overlong, ${d.droppedEmpty} empty`],
    ['special-token strings in data text', `${d.specialTokenStrings} (tokenized as plain text)`],
    ['sequences', s.sequences],
    ['images', s.images],
    ['real tokens', s.real_tokens],
    ['efficiency', pct(s.efficiency)],
    ['images/sequence', `mean ${s.images_per_sequence.mean.toFixed(2)}, min ${s.images_per_sequence.min}, max ${s.images_per_sequence.max}`],
    ['seconds', s.seconds.toFixed(2)],
    ['samples/s', s.samples_per_s.toFixed(0)],
    ['images/s', s.images_per_s.toFixed(0)],
  ];
}

function humanSummary(r: RunPackResult): string {
  const lines = [
    `packed into ${r.out} (rank ${r.rank} of ${r.world_size}; ${r.windows} window(s): packed ${r.packed_windows.length} now, ${r.skipped_windows.length} already done)`,
  ];
  if (r.total) lines.push('all windows done; OUT/pack.json:', table(summaryRows(r.total)));
  else {
    lines.push('this process:', table(summaryRows(r.this_run)));
    lines.push('other windows are not done yet; pack.json is written when the last one finishes');
  }
  return lines.join('\n');
}
