// Placeholder: replaced by the real 'doctor' command.
import type { Command } from 'commander';

export function registerDoctor(program: Command): void {
  program.command('doctor').description('doctor (in progress)');
}
