// `loom train`: resolve the run config, write it to runs/<name>/config.json, and start the Python
// trainer (`python -m loom_compute train`, under torchrun for several processes) on it.
import { existsSync, readdirSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { Command } from 'commander';
import { LoomError, EXIT_USAGE } from '../../util/errors.js';
import { integerOption } from '../options.js';
import { checkPackedDir } from '../packedDir.js';
import { printSummary, table } from '../output.js';
import { startProgress } from '../progress.js';
import { addRunConfigOptions, resolveRunConfigOptions, type RunConfigCliOptions } from '../runConfigOptions.js';
import { loadRunConfigFile, validateRunConfig } from '../../config/resolve.js';
import type { RunConfig } from '../../config/schema.js';
import { formatCommand, workerCommand, type LauncherOptions } from '../../protocol/command.js';
import { runWorker, type WorkerEvent } from '../../protocol/worker.js';
import { withOutputDir } from '../../util/outputDir.js';
import { writeJsonAtomic } from '../../util/atomic.js';

export interface TrainCliOptions extends RunConfigCliOptions {
  packed?: string;
  initFrom?: string;
  runsDir: string;
  nprocPerNode?: string;
  nnodes?: string;
  nodeRank?: string;
  masterAddr?: string;
  masterPort?: string;
  resume?: boolean;
  stopAfterSteps?: string;
  dryRun?: boolean;
  json?: boolean;
  quiet?: boolean;
}

/** Config keys a resumed run may change: how long it runs, how often it logs and saves, and where it runs. */
export const RESUME_MUTABLE_KEYS = ['train.max_steps', 'train.checkpoint_every', 'train.log_every', 'train.keep_checkpoints', 'dist'];

/** Everything `loom train` decided before starting anything. */
export interface TrainPlan {
  config: RunConfig;
  runDir: string;
  configPath: string;
  /** The worker's arguments after `--config FILE` (--resume, --stop-after-steps). */
  args: string[];
  /** torchrun settings; absent for a single process. */
  launcher?: LauncherOptions;
  /** The whole command line, as printed. */
  argv: string[];
  resume: boolean;
}

const HELP = [
  'Train the model of a run config on packed shards (the output of `loom pack`, data.packed) with the Python ' +
    'trainer: FSDP2 with bf16 mixed precision and fp32 master weights, document-isolated attention on packed rows, ' +
    'DCP checkpoints. The resolved config is written to RUNS_DIR/<name>/config.json, then the worker ' +
    '`python -m loom_compute train --config RUNS_DIR/<name>/config.json` starts; the exact command is printed ' +
    'first, so it can be pasted into a Slurm script (--dry-run prints it and starts nothing).',
  'Stages: pretrain feeds each image as image_grid^2 pooled tokens (open-qwen2vl-2b: 12x12 = 144 tokens/image; ' +
    'tiny: 4x4 = 16); sft as the full grid (open-qwen2vl-2b: 27x27 = 729; tiny: 8x8 = 64), loss on the assistant ' +
    'turns only. SFT starts from a pre-training run\'s export: --init-from runs/<pretrain>/export (model.init_from). ' +
    'Pack the data for the same stage and preset: the trainer refuses packed shards that do not match the config.',
  'Run directory RUNS_DIR/<name>/: config.json, metrics.jsonl (one line per logged step), checkpoints/step_NNNNNNNN/ ' +
    '(every train.checkpoint_every steps and at the end; the newest train.keep_checkpoints are kept), export/ ' +
    '(safetensors, for SFT --init-from and eval), loss.png, train.json (the final summary).',
  'Resume: --resume continues from the newest complete checkpoint (model, optimizer, schedule and data position) ' +
    'or starts fresh when there is none, so a requeued job can always pass it. With no config options it reuses ' +
    'RUNS_DIR/<name>/config.json as is; with options, the resolved config must equal the saved one except under ' +
    `${RESUME_MUTABLE_KEYS.map((k) => (k === 'dist' ? 'dist.*' : k)).join(', ')}. Without --resume, a run directory ` +
    'that already holds a checkpoint is refused.',
  'Several GPUs: --nproc-per-node N starts N processes through torchrun (`python -m torch.distributed.run`, the ' +
    'same interpreter as the worker). Several nodes: run the same command on every node with --nnodes, that ' +
    'node\'s --node-rank, and node 0\'s --master-addr (and --master-port, default 29500). train.global_batch is ' +
    'split across all processes and gradient accumulation steps.',
  'Progress: a bar over optimizer steps on a terminal; otherwise (logs, Slurm) one line per logged step with ' +
    'loss, learning rate, gradient norm, tokens/s, images/s, MFU and memory. --quiet shows none of it, nor the ' +
    'worker\'s own log lines (errors are still reported). The summary gives steps, final loss, throughput, MFU ' +
    '(n/a on CPU), time and where the export, loss curve and last checkpoint are; --json prints the worker\'s ' +
    'done event plus the command.',
].join('\n\n');

const EXAMPLES = [
  '',
  'Examples:',
  '  # tiny model on a CPU, on the synthetic data packed by `loom pack --preset tiny --out data/packed`',
  '  loom train --preset tiny --name tiny-pt --packed data/packed --set train.max_steps=200',
  '  # SFT from that pre-training run',
  '  loom train --preset tiny --stage sft --name tiny-sft --packed data/packed-sft --init-from runs/tiny-pt/export',
  '  # continue after a preemption, with a longer schedule',
  '  loom train --preset tiny --name tiny-pt --packed data/packed --set train.max_steps=400 --resume',
  '  # 8 GPUs on one node',
  '  loom train --preset open-qwen2vl-2b --name ow-pt --packed /data/packed --nproc-per-node 8',
  '  # 2 nodes x 8 GPUs: on node 0 (node1 with --node-rank 1); prints and runs',
  '  loom train --config runs/ow-pt/config.json --resume --nproc-per-node 8 --nnodes 2 --node-rank 0 --master-addr node0',
  '  #   python -m torch.distributed.run --nproc-per-node=8 --nnodes=2 --node-rank=0 --master-addr=node0 \\',
  '  #     --master-port=29500 -m loom_compute train --config /abs/runs/ow-pt/config.json --resume',
  '  # just write the config and print the command (for a Slurm script)',
  '  loom train --preset open-qwen2vl-2b --name ow-pt --packed /data/packed --nproc-per-node 8 --dry-run',
  '',
].join('\n');

export function registerTrain(program: Command): void {
  const command = program
    .command('train')
    .summary('pre-train or instruction-tune the model (FSDP2, torchrun)')
    .description(HELP);
  addRunConfigOptions(command)
    .option('--packed <dir>', 'packed shards to train on (sets data.packed; output of loom pack)')
    .option('--init-from <dir>', 'start from this export, e.g. runs/<pretrain>/export (sets model.init_from)')
    .option('--runs-dir <dir>', 'where run directories live: RUNS_DIR/<name>/', 'runs')
    .option('--nproc-per-node <n>', 'processes (GPUs) per node (sets dist.nproc_per_node)')
    .option('--nnodes <n>', 'number of nodes (sets dist.nnodes)')
    .option('--node-rank <r>', 'this node\'s rank, 0 .. nnodes-1 (e.g. $SLURM_NODEID)', '0')
    .option('--master-addr <host>', 'host name of node 0, needed with several nodes (sets dist.master_addr)')
    .option('--master-port <port>', 'rendezvous port on node 0 (sets dist.master_port)')
    .option('--resume', 'continue from the newest checkpoint in the run directory (or start fresh when there is none)')
    .option('--stop-after-steps <n>', 'stop (after checkpointing) once n optimizer steps have run in total: a preemption drill')
    .option('--dry-run', 'write config.json and print the command, start nothing')
    .option('--quiet', 'no progress bar, metric lines or worker logs')
    .option('--json', 'print the summary as JSON on stdout')
    .addHelpText('after', EXAMPLES)
    .action(async (opts: TrainCliOptions, cmd: Command) => {
      const plan = planTrain(opts, configOptionsGiven(opts, cmd));
      if (opts.config !== undefined && cmd.getOptionValueSource('name') === 'cli' && opts.name !== plan.config.name) {
        throw new LoomError(`--name ${opts.name} does not match the name '${plan.config.name}' in ${opts.config} (the run directory is named after the config)`, EXIT_USAGE);
      }
      // Each node of a multi-node run holds its own lock on the (shared) run directory.
      const claim = { command: 'train', adopt: (names: string[]) => names.includes('config.json'), rank: Number(opts.nodeRank ?? 0), worldSize: plan.config.dist.nnodes };
      await withOutputDir(plan.runDir, claim, async () => {
        await writeJsonAtomic(plan.configPath, plan.config);
        const command = formatCommand(plan.argv);
        if (opts.dryRun) {
          process.stderr.write(`loom train: wrote ${plan.configPath} (dry run: nothing started)\n`);
          printSummary(opts, { command, argv: plan.argv, config: plan.config, run_dir: plan.runDir }, () => command);
          return;
        }
        process.stderr.write(`${command}\n`);
        const done = await runTrain(plan, opts.quiet === true);
        printSummary(opts, { ...done, command }, () => renderTrainSummary(done));
      });
    });
}

/** True when the user gave anything that decides the config (not just which run to resume). */
function configOptionsGiven(opts: TrainCliOptions, cmd: Command): boolean {
  return (
    opts.config !== undefined ||
    opts.preset !== undefined ||
    cmd.getOptionValueSource('stage') === 'cli' ||
    opts.file.length > 0 ||
    opts.set.length > 0 ||
    opts.packed !== undefined ||
    opts.initFrom !== undefined
  );
}

/**
 * Resolves the config, applies the flags, checks the run directory and builds the worker command.
 * Reads files but writes nothing; `configGiven` says whether the user gave config options.
 */
export function planTrain(opts: TrainCliOptions, configGiven: boolean, cwd = process.cwd()): TrainPlan {
  const resume = opts.resume === true;
  // A fresh run always resolves a config (default preset tiny); a resumed one may reuse the saved config.
  let config = configGiven || !resume ? withPathFlags(resolveRunConfigOptions(opts), opts, cwd) : undefined;
  const runDir = resolve(cwd, opts.runsDir, config?.name ?? opts.name);
  const configPath = join(runDir, 'config.json');
  if (resume) {
    const saved = existsSync(configPath) ? loadRunConfigFile(configPath) : undefined;
    if (saved === undefined && config === undefined) {
      throw new LoomError(
        `--resume: ${configPath} does not exist, so there is no run to resume; give the run's config ` +
          '(--config FILE, or --preset/--stage/--set as when it started) or check --name and --runs-dir',
        EXIT_USAGE,
      );
    }
    if (saved !== undefined && config !== undefined) {
      const changed = configDifferences(saved, config).filter((key) => !resumeMayChange(key));
      if (changed.length > 0) {
        throw new LoomError(
          `--resume: the config differs from the run's ${configPath} under ${changed.join(', ')}; a resumed run may ` +
            `change only ${RESUME_MUTABLE_KEYS.map((k) => (k === 'dist' ? 'dist.*' : k)).join(', ')} ` +
            '(start a new run with another --name to change more)',
          EXIT_USAGE,
        );
      }
    }
    config ??= saved;
  } else {
    const checkpoints = checkpointDirs(join(runDir, 'checkpoints'));
    if (checkpoints.length > 0) {
      throw new LoomError(
        `${runDir} already holds a checkpoint (${checkpoints[checkpoints.length - 1]}): pass --resume to continue it, ` +
          'or choose another --name for a new run',
        EXIT_USAGE,
      );
    }
  }
  const { config: distConfig, launcher } = applyDistFlags(config!, opts);
  config = validateRunConfig(distConfig, 'config after the command-line flags');
  if (!opts.dryRun) requirePackedDir(config);
  const args = [...(resume ? ['--resume'] : []), ...(opts.stopAfterSteps !== undefined ? ['--stop-after-steps', String(integerOption(opts.stopAfterSteps, '--stop-after-steps', 1))] : [])];
  const argv = workerCommand({ verb: 'train', configPath, args, ...(launcher ? { launcher } : {}) });
  return { config, runDir, configPath, args, ...(launcher ? { launcher } : {}), argv, resume };
}

function withPathFlags(config: RunConfig, opts: TrainCliOptions, cwd: string): RunConfig {
  const packed = opts.packed ?? config.data.packed;
  const initFrom = opts.initFrom ?? config.model.init_from;
  return {
    ...config,
    model: { ...config.model, init_from: initFrom === null ? null : resolve(cwd, initFrom) },
    data: { ...config.data, packed: packed === null ? null : resolve(cwd, packed) },
  };
}

function applyDistFlags(config: RunConfig, opts: TrainCliOptions): { config: RunConfig; launcher?: LauncherOptions } {
  const nproc = opts.nprocPerNode !== undefined ? integerOption(opts.nprocPerNode, '--nproc-per-node', 1) : config.dist.nproc_per_node;
  const nnodes = opts.nnodes !== undefined ? integerOption(opts.nnodes, '--nnodes', 1) : config.dist.nnodes;
  const nodeRank = integerOption(opts.nodeRank ?? '0', '--node-rank', 0);
  const masterPort = opts.masterPort !== undefined ? integerOption(opts.masterPort, '--master-port', 1) : undefined;
  if (nodeRank >= nnodes) throw new LoomError(`--node-rank must be below --nnodes (${nnodes}), got ${nodeRank}`, EXIT_USAGE);
  const masterAddr = opts.masterAddr ?? (nnodes > 1 && !isLoopback(config.dist.master_addr) ? config.dist.master_addr : undefined);
  if (nnodes > 1 && masterAddr === undefined) {
    throw new LoomError(
      `training on ${nnodes} nodes needs --master-addr, the host name of node 0 (dist.master_addr is ${config.dist.master_addr}, which other nodes cannot reach)`,
      EXIT_USAGE,
    );
  }
  const dist: RunConfig['dist'] = {
    ...config.dist,
    nproc_per_node: nproc,
    nnodes,
    ...(masterAddr !== undefined ? { master_addr: masterAddr } : {}),
    ...(masterPort !== undefined ? { master_port: masterPort } : {}),
  };
  const next = { ...config, dist };
  if (nproc * nnodes === 1) return { config: next };
  // One node without an address uses torchrun's standalone rendezvous (a free local port).
  const launcher: LauncherOptions =
    nnodes === 1 && masterAddr === undefined
      ? { nprocPerNode: nproc, ...(masterPort !== undefined ? { masterPort } : {}) }
      : { nprocPerNode: nproc, nnodes, nodeRank, masterAddr: dist.master_addr, masterPort: dist.master_port };
  return { config: next, launcher };
}

function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || /^127\./.test(host);
}

function requirePackedDir(config: RunConfig): void {
  const packed = config.data.packed;
  if (packed === null) {
    throw new LoomError('data.packed is not set: give --packed DIR (the output of `loom pack`) or set data.packed in the config', EXIT_USAGE);
  }
  if (!existsSync(packed) || !statSync(packed).isDirectory()) {
    throw new LoomError(`data.packed ${packed} is not a directory (it should be the output of \`loom pack\`)`, EXIT_USAGE);
  }
  checkPackedDir(packed);
}

/** The `step_*` checkpoint directories under `dir`, sorted (none when `dir` does not exist). */
export function checkpointDirs(dir: string): string[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir, { withFileTypes: true })
    // The worker's rule: a complete checkpoint is step_NNNNNNNN/ with its trainer.json (a .tmp is a killed save).
    .filter((entry) => entry.isDirectory() && /^step_\d{8}$/.test(entry.name) && existsSync(join(dir, entry.name, 'trainer.json')))
    .map((entry) => entry.name)
    .sort();
}

function resumeMayChange(key: string): boolean {
  return RESUME_MUTABLE_KEYS.some((allowed) => key === allowed || key.startsWith(`${allowed}.`));
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** Dotted key paths whose values differ between two configs (objects compared key by key, anything else whole). */
export function configDifferences(a: unknown, b: unknown, prefix = ''): string[] {
  if (isPlainObject(a) && isPlainObject(b)) {
    const keys = [...new Set([...Object.keys(a), ...Object.keys(b)])].sort();
    return keys.flatMap((key) => configDifferences(a[key], b[key], prefix === '' ? key : `${prefix}.${key}`));
  }
  return JSON.stringify(a) === JSON.stringify(b) ? [] : [prefix === '' ? '(whole config)' : prefix];
}

/** What the user sees while the worker trains: the latest metric, and a line per metric when stderr is not a terminal. */
export class TrainMonitor {
  lastMetric: Record<string, unknown> | undefined;
  private total: number | undefined;

  constructor(private readonly printLine: ((line: string) => void) | undefined) {}

  readonly onEvent = (event: WorkerEvent): void => {
    if (event.event === 'progress') this.total = event.total;
    if (event.event !== 'metric') return;
    this.lastMetric = event;
    this.printLine?.(formatMetricLine(event, this.total));
  };

  /** The loss for the end of the progress bar ('' before the first metric). */
  barSuffix(): string {
    const loss = this.lastMetric?.loss;
    return typeof loss === 'number' ? `loss ${loss.toFixed(4)}` : '';
  }
}

async function runTrain(plan: TrainPlan, quiet: boolean): Promise<Record<string, unknown>> {
  return runTrainWorker(plan.configPath, plan.args, quiet, plan.launcher);
}

/** Runs the `train` verb with a step progress bar showing the loss (one line per metric when not a TTY). */
export async function runTrainWorker(configPath: string, args: string[], quiet: boolean, launcher?: LauncherOptions): Promise<Record<string, unknown>> {
  const monitor = new TrainMonitor(quiet || process.stderr.isTTY ? undefined : (line) => process.stderr.write(`${line}\n`));
  const { done } = await runWorker({
    verb: 'train',
    configPath,
    args,
    ...(launcher ? { launcher } : {}),
    startProgress,
    progressLabel: 'train',
    progressSuffix: () => monitor.barSuffix(),
    silent: quiet,
    onEvent: monitor.onEvent,
  });
  return done;
}

function num(value: unknown): number | undefined {
  return typeof value === 'number' && Number.isFinite(value) ? value : undefined;
}

function compact(value: number): string {
  if (Math.abs(value) >= 1e6) return `${(value / 1e6).toFixed(2)}M`;
  if (Math.abs(value) >= 1e4) return `${(value / 1e3).toFixed(1)}k`;
  return value >= 100 ? value.toFixed(0) : value.toFixed(1);
}

/** One readable line for a metric event, e.g. `train step 10/100: loss 2.3456, lr 1.00e-3, ...`. */
export function formatMetricLine(metric: Record<string, unknown>, total?: number): string {
  const step = num(metric.step);
  const parts: string[] = [];
  const loss = num(metric.loss);
  if (loss !== undefined) parts.push(`loss ${loss.toFixed(4)}`);
  const lr = num(metric.lr);
  if (lr !== undefined) parts.push(`lr ${lr.toExponential(2)}`);
  const gradNorm = num(metric.grad_norm);
  if (gradNorm !== undefined) parts.push(`grad_norm ${gradNorm.toFixed(3)}`);
  const tokens = num(metric.tokens_per_s);
  if (tokens !== undefined) parts.push(`${compact(tokens)} tokens/s`);
  const images = num(metric.images_per_s);
  if (images !== undefined) parts.push(`${compact(images)} images/s`);
  const mfu = num(metric.mfu);
  if (mfu !== undefined) parts.push(`MFU ${(100 * mfu).toFixed(1)}%`);
  const mem = num(metric.mem_gib);
  if (mem !== undefined) parts.push(`${mem.toFixed(1)} GiB`);
  const where = step === undefined ? 'train' : `train step ${step}${total !== undefined ? `/${total}` : ''}`;
  return `${where}: ${parts.join(', ')}`;
}

function mfuText(done: Record<string, unknown>): string {
  const mfu = num(done.mean_mfu) ?? num(done.mfu);
  if (mfu !== undefined) return `${(100 * mfu).toFixed(1)}%`;
  return 'n/a on CPU (or on a GPU whose peak FLOP/s Loom does not know)';
}

/** A per-second rate: the worker's own (mean over the last tenth of the steps), else count / seconds. */
function rate(done: Record<string, unknown>, key: 'tokens' | 'images'): string {
  const seen = isPlainObject(done.seen) ? done.seen : {};
  const seconds = num(done.seconds);
  const count = num(seen[key]) ?? num(done[key]);
  const value =
    num(done[`mean_${key}_per_s`]) ??
    num(done[`${key}_per_s`]) ??
    (count !== undefined && seconds !== undefined && seconds > 0 ? count / seconds : undefined);
  return value === undefined ? 'n/a' : compact(value);
}

/** The readable summary of a run, from the worker's `done` event (fields it lacks show as n/a). */
export function renderTrainSummary(done: Record<string, unknown>): string {
  const text = (value: unknown): string => (value === undefined || value === null ? 'n/a' : String(value));
  const steps = num(done.steps);
  const total = num(done.total_steps);
  const resumedFrom = num(done.resumed_from_step);
  const finalLoss = num(done.final_loss);
  const seconds = num(done.seconds);
  const stoppedEarly = done.finished === false;
  const head =
    `${stoppedEarly ? 'stopped' : 'trained'} ${text(done.run_dir)} at step ${text(steps)}${total !== undefined ? ` of ${total}` : ''}` +
    (resumedFrom !== undefined ? ` (resumed from step ${resumedFrom})` : '') +
    (seconds !== undefined ? ` in ${seconds.toFixed(1)} s` : '') +
    (stoppedEarly ? '; rerun with --resume to continue' : '');
  const rows: Array<[string, string | number]> = [
    ['steps', text(steps)],
    ['final loss', finalLoss === undefined ? 'n/a' : finalLoss.toFixed(4)],
    ['tokens/s', rate(done, 'tokens')],
    ['images/s', rate(done, 'images')],
    ['MFU', mfuText(done)],
    ['seconds', seconds === undefined ? 'n/a' : seconds.toFixed(1)],
    ['export', text(done.export)],
    ['loss curve', text(done.loss_curve)],
    ['checkpoint', text(done.checkpoint)],
    ['metrics', text(done.metrics)],
  ];
  return [head, table(rows)].join('\n');
}
