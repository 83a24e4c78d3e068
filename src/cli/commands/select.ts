// `loom select`: apply a rule over score sidecars and write DataComp's uid array plus a summary.
import type { Command } from 'commander';
import { printSummary, table } from '../output.js';
import { startProgress } from '../progress.js';
import { integerOption } from '../options.js';
import { runSelect, type SelectSummary } from '../../select/select.js';
import { truthReport, type TruthReport } from '../../select/truth.js';
import { readUidNpy } from '../../select/uidNpy.js';
import { listShards } from '../../shards/reader.js';
import { writeJsonAtomic } from '../../util/atomic.js';
import { withOutputFiles } from '../../util/outputDir.js';
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';

interface SelectCliOptions {
  scores: string;
  rule: string;
  out: string;
  json?: boolean;
  runSize: string;
  sketchK: string;
  truth?: string;
}

export function registerSelect(program: Command): void {
  program
    .command('select')
    .summary('keep samples by a rule over score sidecars')
    .description(
      [
        'Read the score sidecars SCORES/{shard}.{scorer}.parquet (written by `loom curate`), keep the samples that ' +
          'pass RULE, and write OUT.npy (DataComp uid array: numpy dtype u8,u8, sorted, unique) and OUT.json (the rule, ' +
          'thresholds resolved for top/bottom fractions, kept/failed/missing per atom, totals).',
        'RULE atoms: `scorer.column >= x` (also >, <=, <, ==); `top(scorer.column, f)` keeps the fraction f of scored ' +
          'rows with the highest values (threshold from a streaming quantile sketch with a guaranteed rank-error bound, ' +
          'reported in OUT.json); `bottom(scorer.column, f)` the lowest. Combine with & (and), | (or), ! (not) and ' +
          'parentheses; ! binds tightest, then &, then |.',
        "A sample missing from a scorer's sidecar (a bad sample, or a shard that scorer has not scored) has no value for " +
          "that scorer: its atoms are unknown, `!unknown` stays unknown, `unknown | true` is true, and a sample is kept " +
          'only when the whole rule is true. Such samples are counted per atom ("missing") and per scorer.',
        'Memory stays bounded: sidecars are read one shard at a time, kept uids are sorted in runs of --run-size and merged.',
      ].join('\n\n'),
    )
    .requiredOption('--scores <dir>', 'directory of score sidecars ({shard}.{scorer}.parquet)')
    .requiredOption('--rule <expr>', "selection rule, e.g. 'top(dfn.cosine, 0.15) | mlmf.semantic_understanding >= 85'")
    .requiredOption('--out <path>', 'output prefix: writes PATH.npy and PATH.json')
    .option('--truth <shards>', "score the selection against the shards' ground truth (synthetic data: json.noise): kept/removed per noise kind, precision and recall of removal; added to OUT.json as `truth`")
    .option('--json', 'print the summary as one JSON object on stdout')
    .option('--run-size <n>', 'kept uids sorted in memory per run before spilling to disk', '1000000')
    .option('--sketch-k <n>', 'quantile sketch buffer per level (even; larger = tighter top/bottom thresholds)', '4096')
    .addHelpText(
      'after',
      "\nExamples:\n  loom select --scores data/scores --rule 'clip.cosine >= 0.28' --out data/sel/clip028\n" +
        "  loom select --scores data/scores --rule 'top(dfn.cosine, 0.15) | mlmf.semantic_understanding >= 85' --out data/sel/union\n",
    )
    .action(async (opts: SelectCliOptions) => {
      const runSize = integerOption(opts.runSize, '--run-size', 1);
      const sketchK = integerOption(opts.sketchK, '--sketch-k', 8);
      await withOutputFiles(opts.out, 'select', () => foreignSelection(opts.out), async () => {
        const progress = startProgress('select', undefined, { unit: 'rows', silent: false });
        let summary: SelectSummary;
        try {
          summary = await runSelect({
            scoresDir: opts.scores, rule: opts.rule, out: opts.out, runSize, sketchK: sketchK + (sketchK % 2),
            onProgress: (done, total) => progress.update(done, total),
            onWarning: (m) => process.stderr.write(`loom: warning: ${m}\n`),
          });
        } finally {
          progress.stop();
        }
        let result: SelectSummary & { truth?: TruthReport } = summary;
        if (opts.truth !== undefined) {
          const truth = await truthReport(await listShards(opts.truth), await readUidNpy(summary.output.npy));
          result = { ...summary, truth };
          await writeJsonAtomic(summary.output.json, result);
        }
        printSummary(opts, result, () => humanSummary(result));
      });
    });
}

/** Why PREFIX.npy / PREFIX.json are not an earlier selection's (so not ours to replace), or null. */
async function foreignSelection(prefix: string): Promise<string | null> {
  const json = await readFile(`${prefix}.json`, 'utf8').catch(() => null);
  const npyExists = existsSync(`${prefix}.npy`);
  if (json === null) return npyExists ? `${prefix}.npy exists without the ${prefix}.json of a selection` : null;
  try {
    if ((JSON.parse(json) as { format?: unknown }).format === 'loom-selection') return null;
  } catch {
    // not JSON at all: someone else's file
  }
  return `${prefix}.json exists and is not a Loom selection summary`;
}

function truthTable(t: TruthReport): string[] {
  if (t.labelled === 0) return ['', `Ground truth: none of the ${fmt(t.unlabelled)} samples carries json.noise (not synthetic data).`];
  const pc = (x: number) => `${(100 * x).toFixed(1)}%`;
  return [
    '',
    `Against the ground truth (${fmt(t.labelled)} labelled samples${t.unlabelled ? `, ${fmt(t.unlabelled)} without truth` : ''}):`,
    table([
      ...Object.entries(t.kinds).map(([kind, c]): [string, string] => [
        kind,
        kind === 'clean' ? `${fmt(c.kept)} of ${fmt(c.total)} kept (${pc(1 - c.removed_share)})` : `${fmt(c.removed)} of ${fmt(c.total)} removed (recall ${pc(c.removed_share)})`,
      ]),
      ['all noise', `${fmt(t.noisy.removed)} of ${fmt(t.noisy.total)} removed (recall ${pc(t.noisy.removed_share)})`],
      ['removal precision', `${pc(t.removal_precision)} of the removed samples were noise`],
    ]),
  ];
}

function humanSummary(s: SelectSummary & { truth?: TruthReport }): string {
  const pct = (n: number, of: number) => (of === 0 ? '0%' : `${((100 * n) / of).toFixed(2)}%`);
  const lines = [
    `Selected ${fmt(s.kept)} of ${fmt(s.total)} samples (${pct(s.kept, s.total)}) from ${fmt(s.shards)} shard(s) with`,
    `  ${s.rule}`,
    '',
    table([
      ['uid array', s.output.npy],
      ['summary', s.output.json],
      ...Object.entries(s.inputs.scorers).map(([name, st]): [string, string] => [
        `scorer ${name}`,
        `${fmt(st.rows)} rows in ${fmt(st.shards)} shard(s), ${fmt(st.bad)} bad sample(s) not scored, ${fmt(s.missing_rows_by_scorer[name] ?? 0)} missing vs other scorers`,
      ]),
      ['time', `${s.seconds.toFixed(1)} s`],
    ]),
    '',
    'Per atom (passed / failed / missing):',
    table(
      s.atoms.map((a): [string, string] => {
        const resolved = a.kind === 'compare' ? '' : ` -> ${a.column} ${a.op} ${a.threshold} (rank error <= ${fmt(a.sketch?.rankErrorBound ?? 0)} rows)`;
        return [a.text, `${fmt(a.passed)} / ${fmt(a.failed)} / ${fmt(a.missing)}${resolved}`];
      }),
    ),
  ];
  if (s.truth) lines.push(...truthTable(s.truth));
  if (s.warnings.length > 0) lines.push('', `Warnings (${s.warnings.length}):`, ...s.warnings.slice(0, 10).map((w) => `  ${w}`));
  return lines.join('\n');
}

function fmt(n: number): string {
  return n.toLocaleString('en-US');
}
