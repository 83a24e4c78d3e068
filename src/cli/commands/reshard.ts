// `loom reshard`: write new shards holding the samples of a selection (optionally upsampled).
import type { Command } from 'commander';
import { printSummary, table } from '../output.js';
import { startProgress } from '../progress.js';
import { integerOption } from '../options.js';
import { LoomError, EXIT_USAGE } from '../../util/errors.js';
import { listShards } from '../../shards/listShards.js';
import { samplesFromStats } from '../../shards/stats.js';
import { runReshard, type ReshardSummary, type UpsampleSpec } from '../../select/reshard.js';

interface ReshardCliOptions {
  shards: string[];
  selection: string;
  out: string;
  samplesPerShard: string;
  upsample: string[];
  json?: boolean;
}

export function registerReshard(program: Command): void {
  program
    .command('reshard')
    .summary('write new shards holding the selected samples')
    .description(
      [
        'Copy the samples of input shards whose uid is in the selection (a DataComp uid array, .npy of dtype u8,u8, as ' +
          'written by `loom select`) into new WebDataset shards OUT/{00000000..}.tar with a _stats.json each, in input order.',
        'With --upsample FILE:K, a selected uid that FILE also lists is written K times in all: the first copy keeps its ' +
          'key, copy j gets key "{key}_u{j}", and every copy keeps the same uid in its json. Uids in FILE that are not ' +
          'selected are not written (they are counted).',
        'Shards are written atomically. OUT/_reshard.json records the job: rerunning the same command resumes after the ' +
          'last finished shard; an OUT holding anything else is refused.',
      ].join('\n\n'),
    )
    .requiredOption('--shards <specs...>', 'input shard files, directories or brace ranges')
    .requiredOption('--selection <npy>', 'uid array (.npy, u8,u8) of the samples to keep')
    .requiredOption('--out <dir>', 'output directory (new, empty, or an earlier run of this same job)')
    .option('--samples-per-shard <n>', 'samples per output shard', '10000')
    .option('--upsample <file:K...>', 'write the uids listed in FILE (.npy u8,u8) K times in all', collect, [])
    .option('--json', 'print the summary as one JSON object on stdout')
    .addHelpText(
      'after',
      '\nExamples:\n  loom reshard --shards data/shards --selection data/sel/union.npy --out data/curated\n' +
        '  loom reshard --shards data/shards --selection sel.npy --upsample best.npy:3 --out data/curated\n',
    )
    .action(async (opts: ReshardCliOptions) => {
      const perShard = integerOption(opts.samplesPerShard, '--samples-per-shard', 1);
      const upsample = opts.upsample.map(parseUpsample);
      const paths = await listShards(opts.shards);
      const progress = startProgress('reshard', await samplesFromStats(paths), { unit: 'samples' });
      let summary: ReshardSummary;
      try {
        summary = await runReshard({
          shards: paths, selection: opts.selection, out: opts.out, samplesPerShard: perShard, upsample,
          onProgress: () => progress.tick(),
          onWarning: (m) => process.stderr.write(`loom: warning: ${m}\n`),
        });
      } finally {
        progress.stop();
      }
      printSummary(opts, summary, () => humanSummary(summary));
    });
}

function collect(value: string, previous: string[]): string[] {
  return [...previous, value];
}

function parseUpsample(spec: string): UpsampleSpec {
  const at = spec.lastIndexOf(':');
  if (at <= 0) throw new LoomError(`--upsample ${spec}: expected FILE:K (e.g. best.npy:3)`, EXIT_USAGE);
  return { path: spec.slice(0, at), k: integerOption(spec.slice(at + 1), `--upsample ${spec}`, 1) };
}

function humanSummary(s: ReshardSummary): string {
  const fmt = (n: number) => n.toLocaleString('en-US');
  return [
    `Wrote ${fmt(s.written)} samples into ${fmt(s.shards.length)} shard(s) in ${s.out}${s.resumed_from_shard > 0 ? ` (resumed at shard ${s.resumed_from_shard})` : ''}`,
    table([
      ['input', `${fmt(s.input_samples)} good samples in ${fmt(s.input_shards)} shard(s), ${fmt(s.input_bad)} bad skipped`],
      ['selection', `${fmt(s.selection_size)} uids, ${fmt(s.selected_found)} found, ${fmt(s.selected_not_found)} not in the input`],
      ['upsampled', `${fmt(s.upsampled_uids)} uids${s.upsample_not_selected > 0 ? ` (${fmt(s.upsample_not_selected)} listed but not selected)` : ''}`],
      ['duplicates', `${fmt(s.duplicate_uid_skipped)} input samples repeating a written uid`],
      ['renamed keys', fmt(s.renamed_keys)],
      ['time', `${s.seconds.toFixed(1)} s`],
    ]),
  ].join('\n');
}
