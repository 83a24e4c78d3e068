// `loom demo`: the pipeline, as far as it is built, on freshly rendered synthetic data, with a
// readable summary at the end. This is what `make demo` runs; the steps are in src/demo/.
import type { Command } from 'commander';
import { DEMO_RULE, runDemo } from '../../demo/run.js';
import { integerOption } from '../options.js';
import { printSummary } from '../output.js';
import { startProgress } from '../progress.js';
import { renderDemoSummary } from '../render/demo.js';
import { metricLinePrinter } from '../render/train.js';

interface DemoCliOptions {
  out: string;
  samples: string;
  sft: string;
  bench: string;
  seed: string;
  trusted: string;
  filterSteps: string;
  pretrainSteps: string;
  sftSteps: string;
  json?: boolean;
}

export function registerDemo(program: Command): void {
  program
    .command('demo')
    .summary('run the built pipeline on synthetic data')
    .description(
      [
        'Run the pipeline, as far as it is built, on the bundled synthetic data and summarise it:',
        'synth (render a pool with 30% known noise, clean trusted pairs, SFT chats, a benchmark) -> inspect (validate ' +
          `shards) -> curate (train a filter network on the trusted pairs, score the pool, keep ${DEMO_RULE}, report ` +
          'removal per noise kind, reshard) -> config (the tiny preset on the curated shards) -> tokenize (sample ' +
          'lengths at the stage resolution) -> the Python compute plane validates the config -> pack (exact-fill) -> ' +
          'the Python training loader reads every packed batch -> pack the SFT conversations (more tokens per image) ' +
          "-> pre-train the tiny model (its loss against the captions' unigram entropy) -> instruction-tune it from " +
          'the pre-training export -> ask the SFT model about one of its images through `loom chat`\'s session and ' +
          'print its answer beside the true one.',
        'Outputs go to OUT (data/, curate/, config.json, packed/, runs/, demo.json); a rerun renders OUT/data afresh.',
      ].join('\n\n'),
    )
    .option('--out <dir>', 'output directory', 'runs/demo')
    .option('--samples <n>', 'synthetic pre-training pairs', '10000')
    .option('--sft <n>', 'synthetic SFT conversations', '2000')
    .option('--bench <n>', 'synthetic benchmark questions', '500')
    .option('--seed <n>', 'random seed', '0')
    .option('--trusted <n>', 'clean synthetic pairs the filter network trains on', '2000')
    .option('--filter-steps <n>', 'optimizer steps of the filter network (batch 128)', '400')
    .option('--pretrain-steps <n>', 'optimizer steps of tiny pre-training (8 sequences each)', '60')
    .option('--sft-steps <n>', 'optimizer steps of tiny SFT from the pre-trained export', '20')
    .option('--json', 'print the summary as JSON on stdout')
    .action(async (opts: DemoCliOptions) => {
      const options = {
        out: opts.out,
        samples: integerOption(opts.samples, '--samples', 0),
        sft: integerOption(opts.sft, '--sft', 0),
        bench: integerOption(opts.bench, '--bench', 0),
        seed: integerOption(opts.seed, '--seed', 0),
        trusted: integerOption(opts.trusted, '--trusted', 1),
        filterSteps: integerOption(opts.filterSteps, '--filter-steps', 1),
        pretrainSteps: integerOption(opts.pretrainSteps, '--pretrain-steps', 1),
        sftSteps: integerOption(opts.sftSteps, '--sft-steps', 1),
      };
      const { summary, manifest, inspect, tokens } = await runDemo(options, {
        onStep: (n, of, what) => process.stderr.write(`\n[${n}/${of}] ${what}\n`),
        onCommand: (line) => process.stderr.write(`$ ${line}\n`),
        startProgress,
        onMetric: metricLinePrinter(false),
      });
      printSummary(opts, summary, () => renderDemoSummary(summary, manifest, inspect, tokens));
    });
}

