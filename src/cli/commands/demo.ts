// Placeholder: replaced by the real 'demo' command.
import type { Command } from 'commander';

export function registerDemo(program: Command): void {
  program.command('demo').description('demo (in progress)');
}
