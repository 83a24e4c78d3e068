// What `loom train` decides before anything starts: the run config (resolved from the user's
// options, or the run's saved one on --resume), the run directory, the launcher and the worker's
// command line. Reads files but writes nothing, so a refusal leaves no trace.
import { existsSync } from 'node:fs';
import { basename, join, resolve } from 'node:path';
import { LoomError, EXIT_USAGE } from '../util/errors.js';
import { loadRunConfigFile, validateRunConfig } from '../config/resolve.js';
import type { RunConfig } from '../config/schema.js';
import { workerCommand, type LauncherOptions } from '../protocol/command.js';
import { completeCheckpoints } from './checkpoints.js';
import { applyDistFlags, type DistFlags } from './dist.js';
import { requirePackedDir } from './packedDir.js';
import { forbiddenResumeChanges, RESUME_MUTABLE_TEXT } from './resume.js';

/** What the user asked for, with the flags already parsed. */
export interface TrainRequest {
  /** Whether the user gave anything that decides the config (not just which run to resume). */
  configGiven: boolean;
  /** The config the user's options describe; called only when it is needed. */
  resolveConfig: () => RunConfig;
  /** The run name used to find the run directory when no config is resolved. */
  name: string;
  runsDir: string;
  /** --packed and --init-from: override data.packed and model.init_from, relative to cwd. */
  packed?: string;
  initFrom?: string;
  resume: boolean;
  dist: DistFlags;
  stopAfterSteps?: number;
  /** A dry run starts nothing, so the packed data need not exist yet. */
  dryRun: boolean;
}

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

/** Resolves the config, applies the flags, checks the run directory and builds the worker command. */
export function planTrain(request: TrainRequest, cwd = process.cwd()): TrainPlan {
  const { resume } = request;
  // A fresh run always resolves a config (default preset tiny); a resumed one may reuse the saved config.
  let config = request.configGiven || !resume ? withPathFlags(request.resolveConfig(), request, cwd) : undefined;
  const runDir = resolve(cwd, request.runsDir, config?.name ?? request.name);
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
      const changed = forbiddenResumeChanges(saved, config);
      if (changed.length > 0) {
        throw new LoomError(
          `--resume: the config differs from the run's ${configPath} under ${changed.join(', ')}; a resumed run may ` +
            `change only ${RESUME_MUTABLE_TEXT} ` +
            '(start a new run with another --name to change more)',
          EXIT_USAGE,
        );
      }
    }
    config ??= saved;
  } else {
    const checkpoints = completeCheckpoints(runDir);
    if (checkpoints.length > 0) {
      throw new LoomError(
        `${runDir} already holds a checkpoint (${basename(checkpoints[checkpoints.length - 1]!.path)}): pass --resume to continue it, ` +
          'or choose another --name for a new run',
        EXIT_USAGE,
      );
    }
  }
  const { config: distConfig, launcher } = applyDistFlags(config!, request.dist);
  config = validateRunConfig(distConfig, 'config after the command-line flags');
  if (!request.dryRun) requirePackedDir(config);
  const args = [...(resume ? ['--resume'] : []), ...(request.stopAfterSteps !== undefined ? ['--stop-after-steps', String(request.stopAfterSteps)] : [])];
  const argv = workerCommand({ verb: 'train', configPath, args, ...(launcher ? { launcher } : {}) });
  return { config, runDir, configPath, args, ...(launcher ? { launcher } : {}), argv, resume };
}

/** --packed and --init-from over the config's own paths, all made absolute. */
function withPathFlags(config: RunConfig, request: Pick<TrainRequest, 'packed' | 'initFrom'>, cwd: string): RunConfig {
  const packed = request.packed ?? config.data.packed;
  const initFrom = request.initFrom ?? config.model.init_from;
  return {
    ...config,
    model: { ...config.model, init_from: initFrom === null ? null : resolve(cwd, initFrom) },
    data: { ...config.data, packed: packed === null ? null : resolve(cwd, packed) },
  };
}
