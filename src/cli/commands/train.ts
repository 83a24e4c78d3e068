// `loom train`: resolve the run config, write it to runs/<name>/config.json, and start the Python
// trainer (`python -m loom_compute train`, under torchrun for several processes) on it. The rules
// (plan, resume, launcher, packed data) live in src/train/; this file parses, calls and prints.
import type { Command } from 'commander';
import { LoomError, EXIT_USAGE } from '../../util/errors.js';
import { integerOption } from '../options.js';
import { printSummary } from '../output.js';
import { startProgress } from '../progress.js';
import { metricLinePrinter, renderTrainSummary } from '../render/train.js';
import { addRunConfigOptions, resolveRunConfigOptions, type RunConfigCliOptions } from '../runConfigOptions.js';
import { formatCommand } from '../../protocol/command.js';
import { planTrain, type TrainRequest } from '../../train/plan.js';
import { RESUME_MUTABLE_TEXT } from '../../train/resume.js';
import { runTraining } from '../../train/run.js';
import { withOutputDir } from '../../util/outputDir.js';
import { writeJsonAtomic } from '../../util/atomic.js';

interface TrainCliOptions extends RunConfigCliOptions {
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
    `${RESUME_MUTABLE_TEXT}. Without --resume, a run directory ` +
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
    .summary('pre-train or instruction-tune (FSDP2, torchrun)')
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
      const plan = planTrain(trainRequest(opts, configOptionsGiven(opts, cmd)));
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
        const quiet = opts.quiet === true;
        const done = await runTraining({
          configPath: plan.configPath,
          args: plan.args,
          ...(plan.launcher ? { launcher: plan.launcher } : {}),
          quiet,
          startProgress,
          onMetric: metricLinePrinter(quiet),
        });
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

/** The flags, parsed, as src/train/plan.ts takes them. */
function trainRequest(opts: TrainCliOptions, configGiven: boolean): TrainRequest {
  const number = (text: string | undefined, flag: string, min: number) => (text === undefined ? undefined : integerOption(text, flag, min));
  const dist = {
    nprocPerNode: number(opts.nprocPerNode, '--nproc-per-node', 1),
    nnodes: number(opts.nnodes, '--nnodes', 1),
    nodeRank: integerOption(opts.nodeRank ?? '0', '--node-rank', 0),
    masterAddr: opts.masterAddr,
    masterPort: number(opts.masterPort, '--master-port', 1),
  };
  return {
    configGiven,
    resolveConfig: () => resolveRunConfigOptions(opts),
    name: opts.name,
    runsDir: opts.runsDir,
    packed: opts.packed,
    initFrom: opts.initFrom,
    resume: opts.resume === true,
    dist,
    stopAfterSteps: number(opts.stopAfterSteps, '--stop-after-steps', 1),
    dryRun: opts.dryRun === true,
  };
}
