// `loom generate`: answers a JSON-lines file of prompts with the Python `generate` verb, one
// process per GPU under torchrun (ranks take rows by index). The verb is resumable: ids already
// answered in OUT are skipped, so a killed run is rerun with the same command.
import { resolve } from 'node:path';
import { LoomError, EXIT_USAGE } from '../util/errors.js';
import type { StartProgress } from '../util/progress.js';
import { workerCommand, type LauncherOptions } from '../protocol/command.js';
import { runWorker } from '../protocol/worker.js';
import { requireFile, resolveExportDir } from './paths.js';
import { samplingArgs, type Sampling } from './sampling.js';

export interface GenerateRequest {
  model: string;
  input: string;
  out: string;
  /** Processes (one per GPU) under torchrun; 1 runs the verb directly. */
  gpus: number;
  batchSize?: number;
  sampling: Sampling;
  /** A dry run checks the paths it can and builds the command without running it. */
  dryRun?: boolean;
}

export interface GeneratePlan {
  model: string;
  input: string;
  out: string;
  args: string[];
  launcher?: LauncherOptions;
  argv: string[];
}

/** Checks the request (paths, ranges) and builds the worker command; starts nothing. */
export function planGenerate(r: GenerateRequest, cwd = process.cwd()): GeneratePlan {
  const model = resolveExportDir(r.model, '--model', cwd);
  const input = requireFile(r.input, '--input', cwd);
  const out = resolve(cwd, r.out);
  if (out === input) throw new LoomError(`--out ${r.out} is the --input file; answers go to a file of their own`, EXIT_USAGE);
  if (!Number.isInteger(r.gpus) || r.gpus < 1) throw new LoomError(`--gpus: expected an integer >= 1, got ${r.gpus}`, EXIT_USAGE);
  if (r.batchSize !== undefined && (!Number.isInteger(r.batchSize) || r.batchSize < 1)) {
    throw new LoomError(`--batch-size: expected an integer >= 1, got ${r.batchSize}`, EXIT_USAGE);
  }
  const args = [
    '--model', model,
    '--input', input,
    '--out', out,
    ...(r.batchSize !== undefined ? ['--batch-size', String(r.batchSize)] : []),
    ...samplingArgs(r.sampling),
  ];
  const launcher = r.gpus > 1 ? { nprocPerNode: r.gpus } : undefined;
  const argv = workerCommand({ verb: 'generate', args, ...(launcher ? { launcher } : {}) });
  return { model, input, out, args, ...(launcher ? { launcher } : {}), argv };
}

/** The verb's `done` summary (see the contract in docs/architecture.md, "infer"). */
export interface GenerateSummary {
  out: string;
  answered: number;
  skipped_existing: number;
  bad_rows: number;
  new_tokens: number;
  seconds: number;
  tokens_per_s: number;
  [key: string]: unknown;
}

export async function runGenerate(plan: GeneratePlan, o: { startProgress?: StartProgress; quiet?: boolean } = {}): Promise<GenerateSummary> {
  const { done } = await runWorker({
    verb: 'generate',
    args: plan.args,
    ...(plan.launcher ? { launcher: plan.launcher } : {}),
    // The verb counts input rows; say so unless it names its unit.
    ...(o.startProgress ? { startProgress: withDefaultUnit(o.startProgress, 'rows') } : {}),
    progressLabel: 'generate',
    silent: o.quiet ?? false,
  });
  return done as GenerateSummary;
}

function withDefaultUnit(start: StartProgress, unit: string): StartProgress {
  return (label, total, display) => start(label, total, { ...display, unit: display?.unit ?? unit });
}
