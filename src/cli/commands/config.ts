// Placeholder: replaced by the real 'config' command.
import type { Command } from 'commander';

export function registerConfig(program: Command): void {
  program.command('config').description('config (in progress)');
}
