// The demo (`loom demo`, `make demo`): the pipeline, as far as it is built, on freshly rendered
// synthetic data. Each step calls the same code as its own command; the caller shows the steps,
// the commands and the progress (DemoDisplay) and renders the summary this returns.
import { existsSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { resolveRunConfig } from '../config/resolve.js';
import { imageTokensPerImage } from '../config/schema.js';
import { runCurate } from '../curate/run.js';
import { runPack } from '../pack/run.js';
import { formatCommand, runWorker, workerCommand } from '../protocol/worker.js';
import { inspectShards, type InspectReport } from '../shards/inspect.js';
import { listShards } from '../shards/reader.js';
import { PLAN_FILE, runSynth, type SynthManifest } from '../synth/generate.js';
import { EVEN_MIX } from '../synth/noise.js';
import { runTraining, type OnMetric } from '../train/run.js';
import { writeJsonAtomic } from '../util/atomic.js';
import { LoomError } from '../util/errors.js';
import { withOutputDir } from '../util/outputDir.js';
import { partsProgress, type StartProgress } from '../util/progress.js';
import { askSftModel, DEMO_CHAT_MAX_NEW_TOKENS } from './chat.js';
import { pickCurate, pickInspect, pickPack, pickSynth, pickTrain } from './summary.js';
import { tokenStats, type TokenStats } from './tokenStats.js';

export interface DemoOptions {
  out: string;
  /** Synthetic pre-training pairs, SFT conversations and benchmark questions. */
  samples: number;
  sft: number;
  bench: number;
  seed: number;
  /** Clean synthetic pairs the filter network trains on. */
  trusted: number;
  filterSteps: number;
  pretrainSteps: number;
  sftSteps: number;
}

/** How the demo shows what it does; the CLI draws it on stderr. */
export interface DemoDisplay {
  /** Step `n` of `of` starts. */
  onStep: (n: number, of: number, what: string) => void;
  /** A worker command the demo runs, as a line that can be pasted into a shell. */
  onCommand: (line: string) => void;
  startProgress: StartProgress;
  /** Each training metric (the CLI prints a line where no bar is drawn). */
  onMetric?: OnMetric;
}

const NOT_BUILT = ['eval'];
/** DFN keeps a top fraction of the pool. The demo's pool is 30% noise, 12 points of it subtle (a wrong colour
 * or count, which a small filter barely sees): keeping 75% spares clean pairs that a 70% cut would take. */
export const DEMO_RULE = 'top(dfn.cosine, 0.75)';
const STEPS = 12;

export type DemoSummary = Awaited<ReturnType<typeof runSteps>>['summary'];

/** Runs every step into OUT (which the demo must own: it deletes and rewrites its parts) and writes OUT/demo.json. */
export async function runDemo(o: DemoOptions, display: DemoDisplay): Promise<{ summary: DemoSummary; manifest: SynthManifest; inspect: InspectReport; tokens: TokenStats }> {
  const out = resolve(o.out);
  const adopt = (names: string[]) => names.includes('demo.json') || names.includes('data');
  return withOutputDir(out, { command: 'demo', adopt }, () => runSteps(o, out, display));
}

async function runSteps(o: DemoOptions, out: string, display: DemoDisplay) {
  const started = Date.now();
  const step = (n: number, what: string) => display.onStep(n, STEPS, what);
  const { startProgress } = display;

  step(1, 'synth: rendering scenes, captions with 30% known noise, SFT chats, benchmark');
  await clearPreviousDemoData(join(out, 'data'));
  const synthProgress = partsProgress(startProgress, 'synth', { pretrain: 'samples', sft: 'chats', bench: 'questions' });
  const synthStarted = Date.now();
  let pretrainSeconds = 0;
  const manifest = await runSynth({
    out: join(out, 'data'),
    seed: o.seed,
    samples: o.samples,
    sft: o.sft,
    bench: o.bench,
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
    seed: o.seed + 7919, // other scenes than the pool's
    samples: o.trusted,
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

  step(3, `curate: a filter network trained on ${trustedManifest.pretrain.samples} trusted pairs (${o.filterSteps} steps) scores the pool; keep ${DEMO_RULE}`);
  const curateDir = join(out, 'curate');
  await rm(curateDir, { recursive: true, force: true }); // the pool was just rendered afresh: old scores are stale
  const curated = await runCurate({
    shards: join(out, 'data', 'pretrain'),
    out: curateDir,
    rule: DEMO_RULE,
    trainFilter: join(out, 'data', 'trusted', 'pretrain'),
    filterSteps: o.filterSteps,
    truth: true,
    reshard: true,
    startProgress,
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
  display.onCommand(formatCommand(workerCommand(workerOptions)));
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
  display.onCommand(formatCommand(workerCommand(readOptions)));
  const loaderRead = await runWorker(readOptions);

  step(9, 'pack SFT: the LLaVA conversations at the SFT resolution, loss on assistant turns only');
  const sftConfig = resolveRunConfig({ preset: 'tiny', stage: 'sft', name: 'demo-sft' });
  const sftDir = join(out, 'packed-sft');
  await rm(sftDir, { recursive: true, force: true });
  const sftBar = startProgress('pack sft', manifest.sft.conversations, { unit: 'chats' });
  const sftPacked = await runPack({ config: sftConfig, sftJson: join(out, 'data', 'sft', 'llava.json'), out: sftDir, onProgress: (done, total) => sftBar.update(done, total) });
  sftBar.stop();
  if (!sftPacked.total) throw new LoomError('SFT pack did not finish every window');

  const train = async (configPath: string) => {
    display.onCommand(formatCommand(workerCommand({ verb: 'train', configPath })));
    return runTraining({ configPath, startProgress, ...(display.onMetric ? { onMetric: display.onMetric } : {}) });
  };

  step(10, `train: ${o.pretrainSteps} steps of tiny pre-training on the packed pairs (FSDP2, one process, CPU)`);
  const runs = join(out, 'runs');
  await rm(runs, { recursive: true, force: true });
  const pretrainRun = resolveRunConfig({
    preset: 'tiny',
    stage: 'pretrain',
    name: 'demo-pretrain',
    assignments: [`data.packed=${packedDir}`, `train.max_steps=${o.pretrainSteps}`],
  });
  const pretrainConfigPath = join(runs, pretrainRun.name, 'config.json');
  await writeJsonAtomic(pretrainConfigPath, pretrainRun);
  const pretrained = await train(pretrainConfigPath);

  step(11, `train SFT: ${o.sftSteps} steps from the pre-training export, ${imageTokensPerImage(sftConfig)} tokens per image`);
  const sftRun = resolveRunConfig({
    preset: 'tiny',
    stage: 'sft',
    name: 'demo-sft',
    assignments: [`data.packed=${sftDir}`, `train.max_steps=${o.sftSteps}`, `model.init_from=${String(pretrained.export)}`],
  });
  const sftConfigPath = join(runs, sftRun.name, 'config.json');
  await writeJsonAtomic(sftConfigPath, sftRun);
  const sftTrained = await train(sftConfigPath);

  step(12, `chat: ask the SFT model about one of its training images (the \`loom chat\` path, greedy, at most ${DEMO_CHAT_MAX_NEW_TOKENS} new tokens)`);
  const chat = await askSftModel(String(sftTrained.export), join(out, 'data', 'sft'), (argv) => display.onCommand(formatCommand(argv)));

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
    chat,
    not_built_yet: NOT_BUILT,
  };
  await writeJsonAtomic(join(out, 'demo.json'), summary);
  return { summary, manifest, inspect, tokens };
}

/** The demo renders its data afresh each time (so its speeds are real), but deletes only a previous synth output. */
async function clearPreviousDemoData(dir: string): Promise<void> {
  if (!existsSync(dir)) return;
  if (!existsSync(join(dir, 'synth.json')) && !existsSync(join(dir, PLAN_FILE))) {
    throw new LoomError(`${dir} exists and is not a synth output; choose another --out`);
  }
  await rm(dir, { recursive: true, force: true });
}
