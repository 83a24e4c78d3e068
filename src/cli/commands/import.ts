// `loom import`: bring a published checkpoint of the family in as a Loom export (src/infer/convert.ts
// checks, resolves the preset's base config and builds the command; the Python `import` verb converts).
import type { Command } from 'commander';
import { DEFAULT_IMPORT_PRESET, IMPORT_FORMATS, planImport, runImport } from '../../infer/convert.js';
import { PRESETS } from '../../config/schema.js';
import { formatCommand } from '../../protocol/command.js';
import { printSummary, table } from '../output.js';
import { startProgress } from '../progress.js';

interface ImportCliOptions {
  format: string;
  out: string;
  vision?: string;
  llm?: string;
  tokenizer?: string;
  preset: string;
  quiet?: boolean;
  json?: boolean;
}

const HELP = [
  'Convert a published checkpoint into a Loom export, which `loom chat`, `loom generate`, `loom curate ' +
    '--mlm-filter`, `loom export` and `loom train --init-from` (e.g. SFT from the released pre-trained model) take. ' +
    'The imported model keeps its own prompt format (recorded in loom.json), and chat, generation and the ' +
    'MLM-Filter scorer use it. Weights are read with safetensors or torch.load(weights_only=True) only: a checkpoint ' +
    'that carries pickled objects is refused.',
  'prismatic: the released Open-Qwen2VL models, Prismatic run folders: config.json and ' +
    'checkpoints/latest-checkpoint.pt holding {"model": {"projector", "llm_backbone", ["vision_backbone"]}}. Their ' +
    'prompt is their own (a <s> token, and "<|im_end|>assistant\\n" with no <|im_start|> before the answer).',
  'llava: LLaVA-format checkpoints such as the MLM-Filter and UniFilter scorers: a Hugging Face folder with ' +
    'mm_projector weights (the MLP projector, or the average-pool one with sampler and mlp_projector) and the vision ' +
    'tower named in its config.',
  'llava-hf: a transformers LlavaForConditionalGeneration folder, the reverse of `loom export --format llava-hf`.',
  'Checkpoints that do not carry their vision weights need --vision, a local Hugging Face SigLIP folder (e.g. ' +
    'google/siglip-so400m-patch14-384 downloaded elsewhere; nothing is downloaded here). A Prismatic run folder ' +
    'holds neither the language model\'s config nor its tokenizer, so prismatic needs --llm, a local ' +
    'Qwen2.5-1.5B-Instruct folder; --tokenizer overrides the tokenizer.json taken from --llm or the source.',
  `The export's run config starts from the preset's SFT config (--preset, default ${DEFAULT_IMPORT_PRESET}), written ` +
    'to a temporary file and passed as --config; the importer replaces the model shapes, tokenizer and image ' +
    'settings with the source\'s. --out must be new, empty, or an earlier Loom export: it is replaced as a whole.',
].join('\n\n');

const EXAMPLES = [
  '',
  'Examples:',
  '  loom import --format prismatic ~/ckpt/Open-Qwen2VL --vision ~/hf/siglip-so400m-patch14-384 --out runs/oq2vl/export',
  '  loom chat --model runs/oq2vl --image cat.jpg "What is in the picture?"',
  '  loom import --format llava ~/ckpt/mlm-filter-qwen2.5-1.5b --vision ~/hf/siglip-so400m-patch14-384 --out runs/mlmf/export',
  '  loom curate --shards data/raw --mlm-filter runs/mlmf/export --rule "mlmf.semantic_understanding >= 85" --out data/curated',
  '  loom import --format llava ~/ckpt/UniFilter-Qwen2.5-1.5B --vision ~/hf/siglip-so400m-patch14-384 --out runs/unifilter/export',
  '  loom curate --shards data/raw --unifilter runs/unifilter/export --rule "top(unifilter.quality_score, 0.3)" --out data/curated',
  '',
].join('\n');

export function registerImport(program: Command): void {
  program
    .command('import')
    .summary('bring a published checkpoint in as an export')
    .description(HELP)
    .argument('<src>', 'the checkpoint folder (prismatic: the run folder, or its checkpoints/latest-checkpoint.pt)')
    .requiredOption('--format <format>', `source format: ${IMPORT_FORMATS.join(', ')}`)
    .requiredOption('--out <dir>', 'the Loom export to write, e.g. runs/<name>/export')
    .option('--vision <dir>', 'local Hugging Face SigLIP folder, for checkpoints without vision weights')
    .option('--llm <dir>', 'local Hugging Face Qwen2 folder (config.json, tokenizer files), which Prismatic run folders lack')
    .option('--tokenizer <path>', 'a tokenizer.json to use when the checkpoint has none')
    .option('--preset <name>', `base config preset (${PRESETS.join(', ')})`, DEFAULT_IMPORT_PRESET)
    .option('--quiet', 'no progress or worker logs (errors are still reported)')
    .option('--json', 'print the summary as JSON on stdout')
    .addHelpText('after', EXAMPLES)
    .action(async (source: string, opts: ImportCliOptions) => {
      const plan = planImport({
        format: opts.format,
        source,
        out: opts.out,
        preset: opts.preset,
        ...(opts.vision !== undefined ? { vision: opts.vision } : {}),
        ...(opts.llm !== undefined ? { llm: opts.llm } : {}),
        ...(opts.tokenizer !== undefined ? { tokenizer: opts.tokenizer } : {}),
      });
      let command = '';
      const done = await runImport(plan, {
        startProgress,
        quiet: opts.quiet === true,
        onCommand: (argv) => {
          command = formatCommand(argv);
          if (!opts.quiet) process.stderr.write(`${command}\n`);
        },
      });
      const summary = { ...done, source: plan.source, preset: plan.preset, command };
      printSummary(opts, summary, () =>
        [
          '',
          'Loom import',
          table([
            ['format', plan.format],
            ['from', plan.source],
            ['export', String(done.out ?? plan.out)],
            ['stage', String(done.stage ?? '-')],
            ['prompt format', String(done.prompt_format ?? '-')],
          ]),
          '',
          `Next: loom chat --model ${String(done.out ?? plan.out)} --image IMAGE "QUESTION"`,
        ].join('\n'),
      );
    });
}
