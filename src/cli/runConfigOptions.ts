// The options every command that needs a run config shares: either --config FILE, or a config
// resolved from --preset/--stage/--name with --file and --set overrides (docs/architecture.md).
import type { Command } from 'commander';
import { LoomError, EXIT_USAGE } from '../util/errors.js';
import { loadRunConfigFile, readJsonFile, resolveRunConfig } from '../config/resolve.js';
import { PRESETS, STAGES, type RunConfig } from '../config/schema.js';

export interface RunConfigCliOptions {
  config?: string;
  preset?: string;
  stage: string;
  name: string;
  file: string[];
  set: string[];
}

/** Commander's accumulator for repeatable options. */
export const collect = (value: string, previous: string[]): string[] => [...previous, value];

/** Adds --config, --preset, --stage, --name, --file and --set to `command`. */
export function addRunConfigOptions(command: Command): Command {
  return command
    .option('--config <file>', 'run config JSON (e.g. runs/x/config.json); else one is resolved from --preset')
    .option('--preset <name>', `resolve a config from this preset (one of: ${PRESETS.join(', ')}); default tiny when --config is absent`)
    .option('--stage <stage>', `stage when resolving from a preset (${STAGES.join(', ')})`, 'pretrain')
    .option('--name <name>', 'run name when resolving from a preset', 'run')
    .option('--file <path>', 'partial config JSON merged over the preset (repeatable)', collect, [])
    .option(
      '--set <key=value>',
      'override one config key, e.g. --set data.seq_len=2048 (repeatable); a value that is JSON (number, true, false, null, "string", [array], {object}) is that JSON, any other text is a string in which \\n, \\t and \\\\ are a newline, a tab and a backslash',
      collect,
      [],
    );
}

/** The run config the options describe: the --config file as is, or one resolved from the preset. */
export function resolveRunConfigOptions(opts: RunConfigCliOptions): RunConfig {
  if (opts.config !== undefined) {
    if (opts.preset !== undefined || opts.file.length > 0 || opts.set.length > 0) {
      throw new LoomError('--config cannot be combined with --preset/--file/--set (edit the config, or resolve one from a preset)', EXIT_USAGE);
    }
    return loadRunConfigFile(opts.config);
  }
  return resolveRunConfig({
    preset: opts.preset ?? 'tiny',
    stage: opts.stage,
    name: opts.name,
    overrides: opts.file.map(readJsonFile),
    assignments: opts.set,
  });
}
