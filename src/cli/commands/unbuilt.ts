// Stage commands whose implementation has not landed yet: they are listed in `loom --help` so
// the pipeline's shape is visible, and they fail clearly instead of pretending to work.
import type { Command } from 'commander';
import { LoomError, EXIT_USAGE } from '../../util/errors.js';

const UNBUILT: Array<{ name: string; summary: string; detail: string }> = [
  { name: 'eval', summary: 'run and score benchmarks', detail: 'Run and score benchmarks (MMBench, SEEDBench, MMStar, MathVista, ...).' },
];

export function registerUnbuilt(program: Command, skip: ReadonlySet<string>): void {
  for (const stage of UNBUILT) {
    if (skip.has(stage.name)) continue;
    program
      .command(stage.name)
      .summary(`${stage.summary} [not built yet]`)
      .description(`${stage.detail} [not built yet]`)
      .allowUnknownOption(true)
      .allowExcessArguments(true)
      .action(() => {
        throw new LoomError(`'loom ${stage.name}' is not built yet (planned in a later issue).`, EXIT_USAGE);
      });
  }
}
