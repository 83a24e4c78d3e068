// Placeholder: replaced by the real 'inspect' command.
import type { Command } from 'commander';

export function registerInspect(program: Command): void {
  program.command('inspect').description('inspect (in progress)');
}
