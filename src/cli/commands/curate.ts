// `loom curate`: score raw shards with an image-text model (optionally one trained here on trusted
// pairs, the DFN idea), select by a rule, report (histograms, kept/dropped per rule atom, and the
// precision and recall of removing noise when the data carries ground truth), optionally reshard.
import { join } from 'node:path';
import type { Command } from 'commander';
import { LoomError, EXIT_USAGE } from '../../util/errors.js';
import { integerOption } from '../options.js';
import { printSummary, table } from '../output.js';
import { startProgress } from '../progress.js';
import { runCurate, type CurateSummary } from '../../curate/run.js';

interface CommandOptions {
  shards: string;
  out: string;
  model?: string;
  trainFilter?: string;
  filterSteps: string;
  scorerName: string;
  mlmFilter?: string;
  mlmName: string;
  mlmBatchSize: string;
  answerEnd: string;
  unifilter?: string;
  unifilterName: string;
  unifilterBatchSize: string;
  rule: string;
  batchSize: string;
  nprocPerNode: string;
  truth?: boolean;
  reshard?: boolean;
  json?: boolean;
}

export function registerCurate(program: Command): void {
  program
    .command('curate')
    .summary('score, select, report on and reshard shards')
    .description(
      [
        'The curation steps in one command, each resumable (rerun the same command after a kill, with any number of ' +
          'processes):',
        '1. --train-filter TRUSTED: train a small contrastive image-text model on trusted pairs (DFN\'s filtering ' +
          'network was never released), saved in transformers format as OUT/filter (kept when it exists). Or give a ' +
          'CLIP/SigLIP checkpoint with --model (local directory or cached hub id). Its scores are named --scorer-name ' +
          '(default dfn), one column: cosine.',
        '2. --mlm-filter EXPORT (optional, alone or with 1.): score the four MLM-Filter metrics 0-100 with an MLLM in ' +
          'Loom\'s export format (runs/NAME/export) instruction-tuned on the MLM-Filter prompts. Its scores are named ' +
          '--mlm-name (default mlmf), columns image_text_matching, object_detail_fulfillment, caption_text_quality, ' +
          'semantic_understanding (expected values) and the same with _argmax.',
        '2b. --unifilter EXPORT (optional, alone or with the others): score with the published UniFilter classifier ' +
          '(weizhiwang/UniFilter-Qwen2.5-1.5B) imported by `loom import --format llava`, as its own scoring script ' +
          'does. Its scores are named --unifilter-name (default unifilter), columns quality_score (the softmax ' +
          'probability of the high-quality class, 0-1), quality_class (the argmax) and logit_0, logit_1.',
        '3. score: `python -m loom_compute score` writes OUT/scores/{shard}.{scorer}.parquet, one sidecar per shard ' +
          'and scorer (finished shards are skipped; --nproc-per-node N runs N processes under torchrun).',
        '4. select: the rule (see `loom select --help`) over any of this run\'s scorers gives OUT/selection.npy ' +
          '(DataComp u8,u8 uid array) and OUT/selection.json (thresholds, kept/failed/missing per atom). ' +
          "Open-Qwen2VL's union: 'top(dfn.cosine, 0.15) | mlmf.semantic_understanding >= 85'.",
        '5. report: OUT/hist_{scorer}.{column}.png per scored column the rule uses (split by ground-truth kind with ' +
          '--truth, the rule\'s threshold marked), and with --truth the precision and recall of removing each kind of ' +
          'noise (synthetic data records it in json.noise). Everything in OUT/curate.json.',
        '6. --reshard: OUT/shards, new shards of the selected samples.',
      ].join('\n\n'),
    )
    .requiredOption('--shards <spec>', 'input shards: a directory, a file or a {a..b} brace range')
    .requiredOption('--out <dir>', 'output directory (filter/, scores/, selection.*, hist_*.png, curate.json, shards/)')
    .requiredOption('--rule <expr>', "selection rule over this run's scores, e.g. 'dfn.cosine >= 0.5' or 'top(dfn.cosine, 0.7)'")
    .option('--model <source>', 'CLIP/SigLIP checkpoint to score with (instead of --train-filter)')
    .option('--train-filter <trusted>', 'train the filter network on these trusted shards first (directory or files)')
    .option('--filter-steps <n>', 'optimizer steps of --train-filter', '600')
    .option('--scorer-name <name>', 'name of the CLIP-style scorer (sidecar suffix, rule prefix)', 'dfn')
    .option('--batch-size <n>', 'pairs per CLIP-style scoring forward pass', '64')
    .option('--mlm-filter <export>', 'also (or only) score the MLM-Filter metrics with this Loom export directory')
    .option('--mlm-name <name>', 'name of the MLM-Filter scorer', 'mlmf')
    .option('--mlm-batch-size <n>', 'samples per MLM-Filter forward pass (each is scored on all four metrics)', '8')
    .option('--answer-end <token>', 'MLM-Filter: what ends a score answer, im_end (score-only answers) or non_digit (score, then text)', 'im_end')
    .option('--unifilter <export>', 'also (or only) score with this imported UniFilter classifier (loom import --format llava)')
    .option('--unifilter-name <name>', 'name of the UniFilter scorer', 'unifilter')
    .option('--unifilter-batch-size <n>', 'samples per UniFilter forward pass', '16')
    .option('--nproc-per-node <n>', 'scoring processes (one per GPU) under torchrun', '1')
    .option('--truth', 'report precision and recall of removal per ground-truth kind (synthetic data)')
    .option('--reshard', 'write the selected samples as new shards in OUT/shards')
    .option('--json', 'print the summary as JSON on stdout')
    .addHelpText(
      'after',
      '\nExamples (synthetic data):\n' +
        '  loom synth --out data/trusted --samples 2000 --noise 0 --seed 7 --sft 0 --bench 0\n' +
        "  loom curate --shards data/synth/pretrain --train-filter data/trusted/pretrain --rule 'dfn.cosine >= 0.5' --truth --out data/curated\n" +
        '  # the recipe\'s union, on 8 GPUs, with an MLM-Filter model exported by `loom train`:\n' +
        "  loom curate --shards data/raw --model DFN_CHECKPOINT_DIR --mlm-filter runs/mlmf/export --nproc-per-node 8 \\\n" +
        "      --rule 'top(dfn.cosine, 0.15) | mlmf.semantic_understanding >= 85' --reshard --out data/curated\n" +
        '  # the published UniFilter scorer, imported first (its SigLIP tower from a local copy):\n' +
        '  loom import --format llava ~/ckpt/UniFilter-Qwen2.5-1.5B --vision ~/hf/siglip-so400m-patch14-384 --out runs/unifilter/export\n' +
        "  loom curate --shards data/raw --unifilter runs/unifilter/export --rule 'top(unifilter.quality_score, 0.3)' --out data/curated\n",
    )
    .action(async (opts: CommandOptions) => {
      if (opts.answerEnd !== 'im_end' && opts.answerEnd !== 'non_digit') {
        throw new LoomError(`--answer-end '${opts.answerEnd}': expected im_end or non_digit`, EXIT_USAGE);
      }
      const summary = await runCurate({
        shards: opts.shards,
        out: opts.out,
        rule: opts.rule,
        ...(opts.model !== undefined ? { model: opts.model } : {}),
        ...(opts.trainFilter !== undefined ? { trainFilter: opts.trainFilter } : {}),
        filterSteps: integerOption(opts.filterSteps, '--filter-steps', 1),
        scorerName: opts.scorerName,
        batchSize: integerOption(opts.batchSize, '--batch-size', 1),
        ...(opts.mlmFilter !== undefined ? { mlmFilter: opts.mlmFilter } : {}),
        mlmName: opts.mlmName,
        mlmBatchSize: integerOption(opts.mlmBatchSize, '--mlm-batch-size', 1),
        answerEnd: opts.answerEnd,
        ...(opts.unifilter !== undefined ? { unifilter: opts.unifilter } : {}),
        unifilterName: opts.unifilterName,
        unifilterBatchSize: integerOption(opts.unifilterBatchSize, '--unifilter-batch-size', 1),
        nprocPerNode: integerOption(opts.nprocPerNode, '--nproc-per-node', 1),
        truth: opts.truth === true,
        reshard: opts.reshard === true,
        startProgress,
      });
      printSummary(opts, summary, () => human(summary));
    });
}

function human(c: CurateSummary): string {
  const { selection: s, scores, truth, histograms, out } = c;
  const pc = (x: number) => `${(100 * x).toFixed(1)}%`;
  const rows: Array<[string, string]> = [
    ...Object.entries(scores).map(([name, score]): [string, string] => [
      `scored by ${name}`,
      `${String(score.samples)} samples in ${String(score.shards_scored)} shard(s), ${String(score.shards_skipped)} already done (${String(score.bad)} bad), ${Number(score.samples_per_s ?? 0).toFixed(0)} samples/s`,
    ]),
    ['rule', s.rule],
    ['kept', `${s.kept} of ${s.total} (${pc(s.total ? s.kept / s.total : 0)})`],
    ...s.atoms.map((a): [string, string] => [`  ${a.text}`, `${a.passed} passed, ${a.failed} failed, ${a.missing} missing (threshold ${a.threshold})`]),
  ];
  if (truth && truth.labelled > 0) {
    for (const [kind, c] of Object.entries(truth.kinds)) {
      rows.push([kind === 'clean' ? 'clean kept' : `${kind} removed`, kind === 'clean' ? `${c.kept}/${c.total} (${pc(1 - c.removed_share)})` : `${c.removed}/${c.total} (recall ${pc(c.removed_share)})`]);
    }
    rows.push(['removal precision', pc(truth.removal_precision)]);
  }
  rows.push(['histograms', histograms.join(', ')], ['report', join(out, 'curate.json')]);
  return ['', 'Loom curate', table(rows)].join('\n');
}
