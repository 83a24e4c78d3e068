// `loom demo`: the pipeline, as far as it is built, on freshly rendered synthetic data, with a
// readable summary at the end. This is what `make demo` runs.
import { existsSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import type { Command } from 'commander';
import { resolveRunConfig } from '../../config/resolve.js';
import { imageTokensPerImage, type RunConfig } from '../../config/schema.js';
import { runPack, type PackSummary } from '../../pack/run.js';
import { documentLayout } from '../../pack/sample.js';
import { runWorker, workerCommand, formatCommand } from '../../protocol/worker.js';
import { listShards, readShards } from '../../shards/reader.js';
import { inspectShards, type InspectReport } from '../../shards/inspect.js';
import { PLAN_FILE, runSynth, type SynthManifest } from '../../synth/generate.js';
import { EVEN_MIX } from '../../synth/noise.js';
import { TextTokenizer } from '../../tokenize/tokenizer.js';
import { withOutputDir } from '../../util/outputDir.js';
import { writeJsonAtomic } from '../../util/atomic.js';
import { LoomError } from '../../util/errors.js';
import { printSummary, table } from '../output.js';
import { partsProgress, startProgress } from '../progress.js';
import { integerOption } from '../options.js';
import { runTrainWorker } from './train.js';
import { runCurate, type CurateSummary } from '../../curate/run.js';

interface DemoOptions {
  out: string;
  samples: string;
  sft: string;
  bench: string;
  seed: string;
  trusted: string;
  filterSteps: string;
  pretrainSteps: string;
  sftSteps: string;
  json?: boolean;
}

interface TokenStats {
  samples: number;
  textTokensMean: number;
  textTokensMax: number;
  imageTokensPerImage: number;
  sampleTokensMean: number;
  /** Sequences needed at the config's length if packing filled them completely (a lower bound). */
  sequencesLowerBound: number;
  seqLen: number;
}

const NOT_BUILT = ['eval'];
/** DFN keeps a top fraction of the pool. The demo's pool is 30% noise, 12 points of it subtle (a wrong colour
 * or count, which a small filter barely sees): keeping 75% spares clean pairs that a 70% cut would take. */
const DEMO_RULE = 'top(dfn.cosine, 0.75)';
const STEPS = 11;

export function registerDemo(program: Command): void {
  program
    .command('demo')
    .description(
      [
        'Run the pipeline, as far as it is built, on the bundled synthetic data and summarise it:',
        'synth (render a pool with 30% known noise, clean trusted pairs, SFT chats, a benchmark) -> inspect (validate ' +
          `shards) -> curate (train a filter network on the trusted pairs, score the pool, keep ${DEMO_RULE}, report ` +
          'removal per noise kind, reshard) -> config (the tiny preset on the curated shards) -> tokenize (sample ' +
          'lengths at the stage resolution) -> the Python compute plane validates the config -> pack (exact-fill) -> ' +
          'the Python training loader reads every packed batch -> pack the SFT conversations (more tokens per image) ' +
          "-> pre-train the tiny model (its loss against the captions' unigram entropy) -> instruction-tune it from " +
          'the pre-training export.',
        'Outputs go to OUT (data/, curate/, config.json, packed/, runs/, demo.json); a rerun renders OUT/data afresh.',
      ].join('\n\n'),
    )
    .option('--out <dir>', 'output directory', 'runs/demo')
    .option('--samples <n>', 'synthetic pre-training pairs', '10000')
    .option('--sft <n>', 'synthetic SFT conversations', '2000')
    .option('--bench <n>', 'synthetic benchmark questions', '500')
    .option('--seed <n>', 'random seed', '0')
    .option('--trusted <n>', 'clean synthetic pairs the filter network trains on', '2000')
    .option('--filter-steps <n>', 'optimizer steps of the filter network (batch 128)', '400')
    .option('--pretrain-steps <n>', 'optimizer steps of tiny pre-training (8 sequences each)', '60')
    .option('--sft-steps <n>', 'optimizer steps of tiny SFT from the pre-trained export', '20')
    .option('--json', 'print the summary as JSON on stdout')
    .action(async (opts: DemoOptions) => {
      const out = resolve(opts.out);
      // The demo deletes and rewrites its parts on every run, so it must own OUT.
      const adopt = (names: string[]) => names.includes('demo.json') || names.includes('data');
      await withOutputDir(out, { command: 'demo', adopt }, () => runDemo(opts, out));
    });
}

async function runDemo(opts: DemoOptions, out: string): Promise<void> {
  const started = Date.now();
  const step = (n: number, what: string) => process.stderr.write(`\n[${n}/${STEPS}] ${what}\n`);

  step(1, 'synth: rendering scenes, captions with 30% known noise, SFT chats, benchmark');
  await clearPreviousDemoData(join(out, 'data'));
  const synthProgress = partsProgress('synth', { pretrain: 'samples', sft: 'chats', bench: 'questions' });
  const synthStarted = Date.now();
  let pretrainSeconds = 0;
  const manifest = await runSynth({
    out: join(out, 'data'),
    seed: integerOption(opts.seed, '--seed', 0),
    samples: integerOption(opts.samples, '--samples', 0),
    sft: integerOption(opts.sft, '--sft', 0),
    bench: integerOption(opts.bench, '--bench', 0),
    noise: 0.3,
    noiseMix: EVEN_MIX,
    samplesPerShard: 10000,
    onProgress: (part, done, total) => {
      if (part === 'pretrain' && done === total) pretrainSeconds = (Date.now() - synthStarted) / 1000;
      synthProgress.update(part, done, total);
    },
  });
  synthProgress.stop();
  const synthSeconds = (Date.now() - synthStarted) / 1000;
  const trustedBar = startProgress('synth trusted', 1, { unit: 'samples' });
  const trustedManifest = await runSynth({
    out: join(out, 'data', 'trusted'),
    seed: integerOption(opts.seed, '--seed', 0) + 7919, // other scenes than the pool's
    samples: integerOption(opts.trusted, '--trusted', 1),
    sft: 0,
    bench: 0,
    noise: 0,
    noiseMix: EVEN_MIX,
    samplesPerShard: 10000,
    onProgress: (part, done, total) => {
      if (part === 'pretrain') trustedBar.update(done, total);
    },
  });
  trustedBar.stop();

  step(2, 'inspect: reading every shard back, decoding every image');
  const shards = await listShards(join(out, 'data', 'pretrain'));
  const inspectBar = startProgress('inspect', manifest.pretrain.samples, { unit: 'samples' });
  const inspect = await inspectShards(shards, { onItem: () => inspectBar.tick() });
  inspectBar.stop();

  const filterSteps = integerOption(opts.filterSteps, '--filter-steps', 1);
  step(3, `curate: a filter network trained on ${trustedManifest.pretrain.samples} trusted pairs (${filterSteps} steps) scores the pool; keep ${DEMO_RULE}`);
  const curateDir = join(out, 'curate');
  await rm(curateDir, { recursive: true, force: true }); // the pool was just rendered afresh: old scores are stale
  const curated = await runCurate({
    shards: join(out, 'data', 'pretrain'),
    out: curateDir,
    rule: DEMO_RULE,
    trainFilter: join(out, 'data', 'trusted', 'pretrain'),
    filterSteps,
    truth: true,
    reshard: true,
  });
  const curatedShards = join(curateDir, 'shards');

  step(4, 'config: resolving the tiny preset for pre-training on the curated shards');
  const config = resolveRunConfig({ preset: 'tiny', stage: 'pretrain', name: 'demo', assignments: [`data.shards=${curatedShards}`] });
  const configPath = join(out, 'config.json');
  await writeJsonAtomic(configPath, config);

  step(5, 'tokenize: caption lengths with the bundled tokenizer and the pre-training template');
  const tokens = await tokenStats(config, await listShards(curatedShards));

  step(6, 'compute plane: the Python worker validates the same config');
  const workerOptions = { verb: 'validate-config', configPath, progressLabel: 'validate-config', startProgress };
  process.stderr.write(`$ ${formatCommand(workerCommand(workerOptions))}\n`);
  const worker = await runWorker(workerOptions);

  step(7, 'pack: exact-fill packing into sequences of the tiny preset, images at its input size');
  const packedDir = join(out, 'packed');
  await rm(packedDir, { recursive: true, force: true });
  const packBar = startProgress('pack', curated.selection.kept, { unit: 'samples' });
  const packed = await runPack({ config, out: packedDir, onProgress: (done, total) => packBar.update(done, total) });
  packBar.stop();
  if (!packed.total) throw new LoomError('pack did not finish every window');

  step(8, 'compute plane: the training loader reads the packed shards (headers checked against the run)');
  const readOptions = { verb: 'read-packed', configPath, args: ['--packed', packedDir], progressLabel: 'read-packed', startProgress };
  process.stderr.write(`$ ${formatCommand(workerCommand(readOptions))}\n`);
  const loaderRead = await runWorker(readOptions);

  step(9, 'pack SFT: the LLaVA conversations at the SFT resolution, loss on assistant turns only');
  const sftConfig = resolveRunConfig({ preset: 'tiny', stage: 'sft', name: 'demo-sft' });
  const sftDir = join(out, 'packed-sft');
  await rm(sftDir, { recursive: true, force: true });
  const sftBar = startProgress('pack sft', manifest.sft.conversations, { unit: 'chats' });
  const sftPacked = await runPack({ config: sftConfig, sftJson: join(out, 'data', 'sft', 'llava.json'), out: sftDir, onProgress: (done, total) => sftBar.update(done, total) });
  sftBar.stop();
  if (!sftPacked.total) throw new LoomError('SFT pack did not finish every window');

  const pretrainSteps = integerOption(opts.pretrainSteps, '--pretrain-steps', 1);
  step(10, `train: ${pretrainSteps} steps of tiny pre-training on the packed pairs (FSDP2, one process, CPU)`);
  const runs = join(out, 'runs');
  await rm(runs, { recursive: true, force: true });
  const pretrainRun = resolveRunConfig({
    preset: 'tiny',
    stage: 'pretrain',
    name: 'demo-pretrain',
    assignments: [`data.packed=${packedDir}`, `train.max_steps=${pretrainSteps}`],
  });
  const pretrainConfigPath = join(runs, pretrainRun.name, 'config.json');
  await writeJsonAtomic(pretrainConfigPath, pretrainRun);
  process.stderr.write(`$ ${formatCommand(workerCommand({ verb: 'train', configPath: pretrainConfigPath }))}\n`);
  const pretrained = await runTrainWorker(pretrainConfigPath, [], false);

  const sftSteps = integerOption(opts.sftSteps, '--sft-steps', 1);
  step(11, `train SFT: ${sftSteps} steps from the pre-training export, ${imageTokensPerImage(sftConfig)} tokens per image`);
  const sftRun = resolveRunConfig({
    preset: 'tiny',
    stage: 'sft',
    name: 'demo-sft',
    assignments: [`data.packed=${sftDir}`, `train.max_steps=${sftSteps}`, `model.init_from=${String(pretrained.export)}`],
  });
  const sftConfigPath = join(runs, sftRun.name, 'config.json');
  await writeJsonAtomic(sftConfigPath, sftRun);
  process.stderr.write(`$ ${formatCommand(workerCommand({ verb: 'train', configPath: sftConfigPath }))}\n`);
  const sftTrained = await runTrainWorker(sftConfigPath, [], false);

  const summary = {
    out,
    seconds: (Date.now() - started) / 1000,
    synth: { ...pickSynth(manifest), seconds: synthSeconds, pretrain_samples_per_second: manifest.pretrain.samples / Math.max(pretrainSeconds, 1e-3) },
    inspect: pickInspect(inspect),
    curate: pickCurate(curated),
    config: { path: configPath, preset: config.preset, stage: config.stage, seq_len: config.data.seq_len },
    tokens,
    worker: worker.done,
    pack: pickPack(packed.total),
    loader: loaderRead.done,
    pack_sft: { ...pickPack(sftPacked.total), image_tokens_per_image: imageTokensPerImage(sftConfig) },
    train: pickTrain(pretrained),
    train_sft: pickTrain(sftTrained),
    not_built_yet: NOT_BUILT,
  };
  await writeJsonAtomic(join(out, 'demo.json'), summary);
  printSummary(opts, summary, () => humanSummary(summary, manifest, inspect, tokens));
}

/** The demo renders its data afresh each time (so its speeds are real), but deletes only a previous synth output. */
async function clearPreviousDemoData(dir: string): Promise<void> {
  if (!existsSync(dir)) return;
  if (!existsSync(join(dir, 'synth.json')) && !existsSync(join(dir, PLAN_FILE))) {
    throw new LoomError(`${dir} exists and is not a synth output; choose another --out`);
  }
  await rm(dir, { recursive: true, force: true });
}

async function tokenStats(config: RunConfig, shards: string[]): Promise<TokenStats> {
  if (config.tokenizer.path === null) throw new Error('the tiny preset always names its tokenizer');
  const tokenizer = await TextTokenizer.load(config.tokenizer.path);
  const texts: string[] = [];
  for await (const item of readShards(shards)) {
    if (item.kind === 'sample') texts.push(item.sample.caption);
  }
  // Captions are data text (plain); the template's own text tokens are counted once from the layout.
  const layout = await documentLayout(config, tokenizer);
  const imageTokens = imageTokensPerImage(config);
  const templateTokens = layout.fixedTokens - layout.imageTokensPerImage;
  let sum = 0;
  let max = 0;
  for (const ids of await tokenizer.encodeTextBatch(texts)) {
    const textTokens = templateTokens + ids.length;
    sum += textTokens;
    max = Math.max(max, textTokens);
  }
  const samples = texts.length;
  const totalTokens = sum + samples * imageTokens;
  return {
    samples,
    textTokensMean: sum / Math.max(1, samples),
    textTokensMax: max,
    imageTokensPerImage: imageTokens,
    sampleTokensMean: totalTokens / Math.max(1, samples),
    sequencesLowerBound: Math.ceil(totalTokens / config.data.seq_len),
    seqLen: config.data.seq_len,
  };
}

function pickCurate(c: CurateSummary) {
  return {
    out: c.out,
    rule: c.selection.rule,
    scored: c.selection.total,
    kept: c.selection.kept,
    threshold: c.selection.atoms[0]?.threshold ?? null,
    filter: c.filter === null ? null : { pairs: c.filter.pairs ?? null, loss_first: c.filter.loss_first ?? null, loss_last: c.filter.loss_last ?? null, chance_loss: c.filter.chance_loss ?? null, seconds: c.filter.seconds ?? null },
    scores_per_second: c.scores.dfn?.samples_per_s ?? null,
    truth: c.truth,
    histograms: c.histograms,
    shards: c.reshard?.shards ?? [],
    seconds: c.seconds,
  };
}

function pickPack(p: PackSummary) {
  return {
    sequences: p.sequences,
    documents: p.documents.kept,
    truncated: p.documents.truncated,
    dropped: p.documents.droppedOverlong + p.documents.droppedEmpty,
    efficiency: p.efficiency,
    images_per_sequence: p.images_per_sequence,
    samples_per_second: p.samples_per_s,
  };
}

function pickSynth(m: SynthManifest) {
  return { samples: m.pretrain.samples, clean: m.pretrain.clean, noise: m.pretrain.noise, shards: m.pretrain.shards.length, sft_conversations: m.sft.conversations, bench_questions: m.bench.questions };
}

function pickTrain(done: Record<string, unknown>) {
  const pick = (key: string) => done[key] ?? null;
  return {
    run_dir: pick('run_dir'),
    steps: pick('steps'),
    final_loss: pick('final_loss'),
    first_loss: pick('first_loss'),
    seconds: pick('seconds'),
    tokens_per_second: pick('mean_tokens_per_s'),
    export: pick('export'),
    loss_curve: pick('loss_curve'),
  };
}

function pickInspect(r: InspectReport) {
  return { shards: r.shards, samples: r.samples, bad: r.bad, formats: r.formats, samples_per_second: r.itemsPerSecond, caption_words_mean: r.captionWords.mean, image_width_mean: r.imageWidth.mean };
}

interface HumanView {
  out: string;
  seconds: number;
  curate: ReturnType<typeof pickCurate>;
  synth: { seconds: number; pretrain_samples_per_second: number };
  pack: ReturnType<typeof pickPack>;
  loader: Record<string, unknown>;
  pack_sft: ReturnType<typeof pickPack> & { image_tokens_per_image: number };
  train: ReturnType<typeof pickTrain>;
  train_sft: ReturnType<typeof pickTrain>;
}

function humanSummary(s: HumanView, m: SynthManifest, r: InspectReport, t: TokenStats): string {
  const noise = Object.entries(m.pretrain.noise).map(([k, v]) => `${k} ${v}`).join(', ');
  return [
    '',
    `Loom demo: done in ${s.seconds.toFixed(1)} s -> ${s.out}`,
    table([
      ['synthetic pairs', `${m.pretrain.samples} in ${m.pretrain.shards.length} shard(s), ${s.synth.pretrain_samples_per_second.toFixed(0)} samples/s`],
      ['  clean / noisy', `${m.pretrain.clean} / ${m.pretrain.samples - m.pretrain.clean} (${noise})`],
      ['SFT conversations', `${m.sft.conversations} (${m.sft.turns} Q/A turns)`],
      ['benchmark (MMBench TSV)', `${m.bench.questions} questions`],
      ['inspect', `${r.samples} ok, ${r.bad} bad, ${r.itemsPerSecond.toFixed(0)} samples/s (every image decoded)`],
      ['  captions', `${fmt(r.captionWords.mean)} words on average (${r.captionWords.min}-${r.captionWords.max})`],
      ['  images', `${fmt(r.imageWidth.mean)} x ${fmt(r.imageHeight.mean)} px on average; ${Object.entries(r.formats).map(([k, v]) => `${k} ${v}`).join(', ')}`],
      ...curateRows(s.curate),
      ['tokens per sample', `${t.textTokensMean.toFixed(1)} text (max ${t.textTokensMax}) + ${t.imageTokensPerImage} image = ${t.sampleTokensMean.toFixed(1)}`],
      ['  at full packing', `>= ${t.sequencesLowerBound} sequences`],
      ['compute plane', 'Python validated the same config (python -m loom_compute validate-config)'],
      ['pack (exact-fill)', `${s.pack.sequences} sequences of ${t.seqLen} tokens, ${(100 * s.pack.efficiency).toFixed(2)}% filled, ${s.pack.images_per_sequence.mean.toFixed(1)} images/sequence (${s.pack.images_per_sequence.min}-${s.pack.images_per_sequence.max})`],
      ['  documents', `${s.pack.documents} kept, ${s.pack.truncated} truncated, ${s.pack.dropped} dropped; ${s.pack.samples_per_second.toFixed(0)} samples/s`],
      ['pack SFT', `${s.pack_sft.documents} conversations -> ${s.pack_sft.sequences} sequences, ${(100 * s.pack_sft.efficiency).toFixed(2)}% filled, ${s.pack_sft.image_tokens_per_image} tokens per image`],
      ['training loader (Python)', `read ${String(s.loader.sequences)} sequences in ${String(s.loader.batches)} batches, ${String(s.loader.images)} images, ${String(s.loader.label_tokens)} label tokens`],
      ['pre-training (tiny, CPU)', trainLine(s.train)],
      ['  vs captions', `unigram entropy ${fmtLoss(s.loader.label_unigram_entropy)} nats: the loss of a model that ignores image and context`],
      ['  loss curve', String(s.train.loss_curve)],
      ['SFT (from the export)', trainLine(s.train_sft)],
      ['not built yet', NOT_BUILT.join(', ')],
    ]),
    '',
    `Next: loom train --name more --packed ${join(s.out, 'packed')} --set train.max_steps=200  |  loom config init --preset open-qwen2vl-2b  |  docs/training.md`,
  ].join('\n');
}

function curateRows(c: ReturnType<typeof pickCurate>): Array<[string, string]> {
  const pc = (x: number) => `${(100 * x).toFixed(1)}%`;
  const f = c.filter;
  const rows: Array<[string, string]> = [
    ['curate (filter network)', f ? `${String(f.pairs)} trusted pairs, contrastive loss ${fmtLoss(f.loss_first)} -> ${fmtLoss(f.loss_last)} (chance ${fmtLoss(f.chance_loss)}) in ${fmtLoss(f.seconds)} s` : 'reused'],
    ['  scored, kept', `${c.scored} scored at ${Number(c.scores_per_second ?? 0).toFixed(0)}/s; ${c.rule} keeps ${c.kept} (cosine >= ${Number(c.threshold).toFixed(3)})`],
  ];
  if (c.truth) {
    const kinds = Object.entries(c.truth.kinds);
    const clean = c.truth.kinds.clean;
    rows.push(['  noise removed', kinds.filter(([k]) => k !== 'clean').map(([k, v]) => `${k} ${pc(v.removed_share)}`).join(', ')]);
    if (clean) rows.push(['  clean kept', `${pc(1 - clean.removed_share)}; precision of removal ${pc(c.truth.removal_precision)}`]);
  }
  rows.push(['  histogram', c.histograms.join(', ')]);
  return rows;
}

function trainLine(t: ReturnType<typeof pickTrain>): string {
  const speed = typeof t.tokens_per_second === 'number' ? `, ${t.tokens_per_second.toFixed(0)} tokens/s` : '';
  return `${String(t.steps)} steps, loss ${fmtLoss(t.first_loss)} -> ${fmtLoss(t.final_loss)} in ${fmtLoss(t.seconds)} s${speed}`;
}

function fmtLoss(value: unknown): string {
  return typeof value === 'number' ? value.toFixed(2) : '-';
}

function fmt(value: number | null): string {
  return value === null ? '-' : value.toFixed(1);
}
