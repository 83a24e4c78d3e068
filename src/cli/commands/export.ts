// `loom export`: hand a trained model on in a form other tools load (src/infer/convert.ts checks
// and builds the command; the Python `export` verb converts).
import type { Command } from 'commander';
import { EXPORT_FORMATS, planExport, runExport } from '../../infer/convert.js';
import { formatCommand } from '../../protocol/command.js';
import { printSummary, table } from '../output.js';
import { startProgress } from '../progress.js';

interface ExportCliOptions {
  format: string;
  out: string;
  dryRun?: boolean;
  quiet?: boolean;
  json?: boolean;
}

const HELP = [
  'Convert MODEL, a Loom export (runs/<name>/export, or the run directory), into a folder other tools load. The native ' +
    'export stays as it is.',
  'llava-hf: one folder that stock transformers loads with LlavaForConditionalGeneration.from_pretrained and ' +
    'AutoProcessor.from_pretrained, which is what lmms-eval, VLMEvalKit, vLLM and SGLang take: the weights under ' +
    'llava-hf names, vision_feature_layer, vision_feature_select_strategy "full", image_seq_length, the image token ' +
    'in the tokenizer, a chat template that renders exactly Loom\'s SFT format, eos/pad, generation_config.json and ' +
    'configs that transformers 4.4x and 5.x read the same. It needs an SFT-stage model, whose image grid is the ' +
    'vision tower\'s own (unpooled, e.g. 27x27): stock LLaVA has no pooling step, so a pre-training-stage model ' +
    '(pooled grid, e.g. 12x12) is refused with the reason.',
  'tokenizer: a plain tokenizer folder (tokenizer.json, tokenizer_config.json with the chat template, special ' +
    'tokens) that AutoTokenizer.from_pretrained loads, for tools that need only the tokenizer.',
  '--out must be new, empty, or an earlier output of the same format: it is replaced as a whole.',
].join('\n\n');

const EXAMPLES = [
  '',
  'Examples:',
  '  loom export --format llava-hf runs/ow-sft --out hf/ow-sft',
  '  python -c "from transformers import LlavaForConditionalGeneration as L; L.from_pretrained(\'hf/ow-sft\')"',
  '  loom export --format tokenizer runs/ow-sft/export --out hf/ow-sft-tokenizer',
  '',
].join('\n');

export function registerExport(program: Command): void {
  program
    .command('export')
    .summary('convert an export for transformers (llava-hf)')
    .description(HELP)
    .argument('<model>', 'a Loom export (runs/<name>/export) or a run directory holding one')
    .option('--format <format>', `output format: ${EXPORT_FORMATS.join(' or ')}`, 'llava-hf')
    .requiredOption('--out <dir>', 'output folder (new, empty, or an earlier output of the same format)')
    .option('--dry-run', 'print the command, start nothing')
    .option('--quiet', 'no progress or worker logs (errors are still reported)')
    .option('--json', 'print the summary as JSON on stdout')
    .addHelpText('after', EXAMPLES)
    .action(async (source: string, opts: ExportCliOptions) => {
      const plan = planExport({ format: opts.format, source, out: opts.out });
      const command = formatCommand(plan.argv);
      if (opts.dryRun) {
        printSummary(opts, { command, argv: plan.argv }, () => command);
        return;
      }
      const done = await runExport(plan, { startProgress, quiet: opts.quiet === true, onCommand: (argv) => !opts.quiet && process.stderr.write(`${formatCommand(argv)}\n`) });
      const summary = { ...done, source: plan.source, command };
      printSummary(opts, summary, () =>
        ['', 'Loom export', table([['format', plan.format], ['from', plan.source], ['written', String(done.out ?? plan.out)]])].join('\n'),
      );
    });
}
