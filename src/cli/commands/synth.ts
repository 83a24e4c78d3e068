// Placeholder: replaced by the real 'synth' command.
import type { Command } from 'commander';

export function registerSynth(program: Command): void {
  program.command('synth').description('synth (in progress)');
}
