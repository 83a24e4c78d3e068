// `loom generate`: answer a JSON-lines file of prompts with an exported model (src/infer/generate.ts
// checks the paths and builds the command; the Python `generate` verb does the work).
import type { Command } from 'commander';
import { planGenerate, runGenerate, type GenerateSummary } from '../../infer/generate.js';
import { formatCommand } from '../../protocol/command.js';
import { integerOption } from '../options.js';
import { printSummary, table } from '../output.js';
import { startProgress } from '../progress.js';
import { addSamplingOptions, samplingFromOptions, type SamplingCliOptions } from '../samplingOptions.js';

interface GenerateCliOptions extends SamplingCliOptions {
  model: string;
  input: string;
  out: string;
  gpus: string;
  batchSize?: string;
  dryRun?: boolean;
  quiet?: boolean;
  json?: boolean;
}

const HELP = [
  'Answer every prompt of a JSON-lines file with an exported model (runs/<name>/export, the run directory, or a ' +
    '`loom import` output), batched (left-padded, KV cache) in `python -m loom_compute generate`.',
  'Input rows: {"id": "q1", "image": "img/1.jpg" | null, "prompt": "What is this?"} or, for several turns or a ' +
    'system message, {"id", "image", "messages": [{"role": "system"|"user"|"assistant", "content": "..."}, ...]}. ' +
    'A relative image path is relative to the input file\'s folder. Ids must be unique.',
  'Output rows, in OUT: {"id", "answer", "finish_reason": "stop"|"length", "new_tokens"}. A bad row (missing ' +
    'image, no prompt, too long) is written as {"id", "error"} and counted; it never stops the run.',
  'Resumable: rows whose id is already answered in OUT are skipped, so after a kill or a crash rerun the same ' +
    'command and it goes on where it stopped (the summary counts them as skipped_existing).',
  'Several GPUs: --gpus N starts N processes under torchrun (`python -m torch.distributed.run`, as `loom train` ' +
    'does), one per GPU; rank r answers the rows r, r+N, r+2N, ... --dry-run prints the command and starts nothing.',
].join('\n\n');

const EXAMPLES = [
  '',
  'Examples:',
  '  loom generate --model runs/ow-sft/export --input prompts.jsonl --out answers.jsonl',
  '  loom generate --model runs/ow-sft --input prompts.jsonl --out answers.jsonl --gpus 8 --batch-size 32',
  '  loom generate --model runs/ow-sft --input prompts.jsonl --out answers.jsonl --gpus 8 --dry-run   # print the torchrun command',
  '',
].join('\n');

export function registerGenerate(program: Command): void {
  const command = program
    .command('generate')
    .summary('answer a JSON-lines file of prompts')
    .description(HELP)
    .requiredOption('--model <export>', 'a Loom export (runs/<name>/export), or a run directory holding one')
    .requiredOption('--input <file>', 'prompts, one JSON object per line: {"id", "image", "prompt"} or {"id", "image", "messages"}')
    .requiredOption('--out <file>', 'answers, one JSON object per line (appended; ids already there are skipped)')
    .option('--gpus <n>', 'processes, one per GPU, under torchrun', '1')
    .option('--batch-size <n>', 'prompts per forward pass on each process (default 8)');
  addSamplingOptions(command)
    .option('--dry-run', 'print the command, start nothing')
    .option('--quiet', 'no progress bar or worker logs (errors are still reported)')
    .option('--json', 'print the summary as JSON on stdout')
    .addHelpText('after', EXAMPLES)
    .action(async (opts: GenerateCliOptions) => {
      const plan = planGenerate({
        model: opts.model,
        input: opts.input,
        out: opts.out,
        gpus: integerOption(opts.gpus, '--gpus', 1),
        ...(opts.batchSize !== undefined ? { batchSize: integerOption(opts.batchSize, '--batch-size', 1) } : {}),
        sampling: samplingFromOptions(opts),
      });
      const command = formatCommand(plan.argv);
      if (opts.dryRun) {
        printSummary(opts, { command, argv: plan.argv }, () => command);
        return;
      }
      if (!opts.quiet) process.stderr.write(`${command}\n`);
      const summary = await runGenerate(plan, { startProgress, quiet: opts.quiet === true });
      printSummary(opts, { ...summary, command }, () => human(summary));
    });
}

function human(s: GenerateSummary): string {
  const num = (x: unknown, digits = 0) => (typeof x === 'number' ? x.toFixed(digits) : '-');
  return [
    '',
    'Loom generate',
    table([
      ['answered', `${s.answered} new` + (s.skipped_existing ? `, ${s.skipped_existing} already in the output (skipped)` : '')],
      ['bad rows', `${s.bad_rows}` + (s.bad_rows ? ' (written with their "error")' : '')],
      ['new tokens', `${s.new_tokens} in ${num(s.seconds, 1)} s, ${num(s.tokens_per_s, 1)} tokens/s`],
      ['answers', s.out],
    ]),
  ].join('\n');
}
