// The curation job behind `loom curate` (and the demo's curation step): optionally train a filter
// network, score with each scorer (Python workers, resumable per shard), select by the rule, report
// (histograms, truth), optionally reshard. Every step resumes: a rerun skips what is done.
import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { LoomError, EXIT_USAGE } from '../util/errors.js';
import { formatCommand, runWorker, workerCommand, type LauncherOptions } from '../protocol/worker.js';
import { listShards } from '../shards/reader.js';
import { samplesFromStats } from '../shards/stats.js';
import { neededColumns, parseRule, SCORER_NAME_RE } from '../select/rule.js';
import { runSelect, type SelectSummary } from '../select/select.js';
import { runReshard, type ReshardSummary } from '../select/reshard.js';
import { readTruthKinds, truthReportOf, type TruthReport } from '../select/truth.js';
import { readUidNpy } from '../select/uidNpy.js';
import { writeJsonAtomic } from '../util/atomic.js';
import { withOutputDir } from '../util/outputDir.js';
import { noProgress, type StartProgress } from '../util/progress.js';
import { scoreHistogram, writeHistogramPng } from './histogram.js';

export interface CurateOptions {
  /** Input shards: a directory, a file or a brace range (listShards). */
  shards: string;
  out: string;
  rule: string;
  /** A CLIP/SigLIP checkpoint (directory or cached hub id); excludes trainFilter. */
  model?: string;
  /** Trusted shards to train the filter network on (OUT/filter, reused when present). */
  trainFilter?: string;
  filterSteps?: number;
  /** Name of the CLIP-style scorer (default dfn). */
  scorerName?: string;
  batchSize?: number;
  /** A Loom export to score the MLM-Filter metrics with. */
  mlmFilter?: string;
  mlmName?: string;
  mlmBatchSize?: number;
  answerEnd?: 'im_end' | 'non_digit';
  /** An imported UniFilter classifier (`loom import --format llava`) to score quality with. */
  unifilter?: string;
  unifilterName?: string;
  unifilterBatchSize?: number;
  nprocPerNode?: number;
  truth?: boolean;
  reshard?: boolean;
  /** Print nothing but warnings (the demo draws its own steps); progress and worker logs otherwise. */
  silent?: boolean;
  /** Shows the progress of each step (the CLI passes its bars); nothing is shown without it. */
  startProgress?: StartProgress;
}

export interface ScorerRun {
  name: string;
  kind: 'clip' | 'mlm-filter' | 'unifilter';
  model: string;
}

export interface CurateSummary {
  out: string;
  seconds: number;
  scorers: ScorerRun[];
  /** train-filter's summary when this run trained the filter network, else null. */
  filter: Record<string, unknown> | null;
  /** The score worker's summary per scorer name. */
  scores: Record<string, Record<string, unknown>>;
  selection: SelectSummary;
  truth: TruthReport | null;
  histograms: string[];
  reshard: ReshardSummary | null;
}

/** Refuses option sets that cannot work, before anything runs; returns the scorer names the run has. */
function checkOptions(o: CurateOptions): { clip: boolean; names: string[] } {
  if (o.model !== undefined && o.trainFilter !== undefined) {
    throw new LoomError('give at most one of --model (a checkpoint to score with) and --train-filter (trusted shards to train one on)', EXIT_USAGE);
  }
  const clip = o.model !== undefined || o.trainFilter !== undefined;
  if (!clip && o.mlmFilter === undefined && o.unifilter === undefined) {
    throw new LoomError('nothing to score with: give --model or --train-filter (CLIP-style), and/or --mlm-filter, and/or --unifilter', EXIT_USAGE);
  }
  // The scorers this run has, in plan order, each with the flag that names it.
  const scorers: Array<[string, string]> = [
    ...(clip ? [['--scorer-name', o.scorerName ?? 'dfn'] as [string, string]] : []),
    ...(o.mlmFilter !== undefined ? [['--mlm-name', o.mlmName ?? 'mlmf'] as [string, string]] : []),
    ...(o.unifilter !== undefined ? [['--unifilter-name', o.unifilterName ?? 'unifilter'] as [string, string]] : []),
  ];
  for (const [flag, name] of scorers) {
    if (!SCORER_NAME_RE.test(name)) throw new LoomError(`${flag} '${name}': a scorer name matches ${String(SCORER_NAME_RE)}`, EXIT_USAGE);
  }
  for (let i = 0; i < scorers.length; i++) {
    for (let j = i + 1; j < scorers.length; j++) {
      const [a, name] = scorers[i]!;
      const [b, other] = scorers[j]!;
      if (name === other) throw new LoomError(`${a} and ${b} are both '${name}'; the scorers need different names`, EXIT_USAGE);
    }
  }
  return { clip, names: scorers.map(([, name]) => name) };
}

export async function runCurate(o: CurateOptions): Promise<CurateSummary> {
  const out = resolve(o.out);
  const { clip, names } = checkOptions(o);
  const columns = neededColumns(parseRule(o.rule));
  const unknown = [...columns.keys()].filter((s) => !names.includes(s));
  if (unknown.length > 0) {
    throw new LoomError(`--rule names scorer(s) ${unknown.join(', ')} but this run scores only ${names.map((n) => `'${n}'`).join(' and ')}`, EXIT_USAGE);
  }
  const shards = await listShards(o.shards);
  if (shards.length === 0) throw new LoomError(`--shards ${o.shards}: no shards found`, EXIT_USAGE);
  const nproc = o.nprocPerNode ?? 1;
  const launcher: LauncherOptions | undefined = nproc > 1 ? { nprocPerNode: nproc } : undefined;
  const silent = o.silent ?? false;
  const startProgress = silent ? noProgress : (o.startProgress ?? noProgress);
  // Earlier runs' own outputs are adopted (they predate ownership markers); anything else is refused.
  const adopt = (names: string[]) => names.includes('curate.json') || names.includes('scores') || names.includes('filter');
  return withOutputDir(out, { command: 'curate', adopt }, async () => {
    const started = Date.now();
    const run = (options: Parameters<typeof runWorker>[0]) => {
      if (!silent) process.stderr.write(`$ ${formatCommand(workerCommand(options))}\n`);
      return runWorker({ ...options, silent, startProgress });
    };

    let filter: Record<string, unknown> | null = null;
    const plans: Array<ScorerRun & { args: string[] }> = [];
    if (clip) {
      let model = o.model;
      if (o.trainFilter !== undefined) {
        model = join(out, 'filter');
        if (existsSync(join(model, 'config.json'))) {
          if (!silent) process.stderr.write(`filter network: reusing ${model}\n`);
        } else {
          const trusted = await listShards(o.trainFilter);
          const args = ['--shards', ...trusted, '--out', model, '--steps', String(o.filterSteps ?? 600)];
          filter = (await run({ verb: 'train-filter', args, progressLabel: 'train-filter' })).done;
        }
      }
      plans.push({ name: names[0]!, kind: 'clip', model: model!, args: ['--batch-size', String(o.batchSize ?? 64)] });
    }
    if (o.mlmFilter !== undefined) {
      const args = ['--batch-size', String(o.mlmBatchSize ?? 8), '--answer-end', o.answerEnd ?? 'im_end'];
      plans.push({ name: names[plans.length]!, kind: 'mlm-filter', model: resolve(o.mlmFilter), args });
    }
    if (o.unifilter !== undefined) {
      const args = ['--batch-size', String(o.unifilterBatchSize ?? 16)];
      plans.push({ name: names[plans.length]!, kind: 'unifilter', model: resolve(o.unifilter), args });
    }

    const scoresDir = join(out, 'scores');
    const scores: Record<string, Record<string, unknown>> = {};
    for (const plan of plans) {
      const args = ['--shards', ...shards, '--out', scoresDir, '--scorer-name', plan.name, '--kind', plan.kind, '--model', plan.model, ...plan.args];
      scores[plan.name] = (await run({ verb: 'score', args, progressLabel: `score ${plan.name}`, ...(launcher ? { launcher } : {}) })).done;
    }

    const onWarning = (m: string) => process.stderr.write(`loom: warning: ${m}\n`);
    const selectBar = startProgress('select', undefined, { unit: 'rows' });
    const selection = await runSelect({ scoresDir, rule: o.rule, out: join(out, 'selection'), onProgress: (done, total) => selectBar.update(done, total), onWarning }).finally(() => selectBar.stop());
    let truth: TruthReport | null = null;
    let kinds: Map<string, string> | undefined;
    if (o.truth) {
      const truthKinds = await readTruthKinds(shards); // read once: for the report and to split the histograms
      truth = truthReportOf(truthKinds, await readUidNpy(selection.output.npy));
      kinds = truthKinds.kinds;
    }
    const histograms: string[] = [];
    for (const [scorer, cols] of columns) {
      for (const column of cols) {
        const h = await scoreHistogram(scoresDir, scorer, column, 40, kinds ? (uid) => kinds.get(uid) : undefined);
        const atom = selection.atoms.find((a) => a.column === `${scorer}.${column}`);
        const path = join(out, `hist_${scorer}.${column}.png`);
        await writeHistogramPng(h, `${scorer}.${column}: ${h.rows} scored samples`, path, atom?.threshold);
        histograms.push(path);
      }
    }
    let reshard: ReshardSummary | null = null;
    if (o.reshard) {
      const bar = startProgress('reshard', await samplesFromStats(shards), { unit: 'samples' });
      reshard = await runReshard({ shards, selection: selection.output.npy, out: join(out, 'shards'), onProgress: () => bar.tick(), onWarning }).finally(() => bar.stop());
    }

    const scorers = plans.map(({ name, kind, model }) => ({ name, kind, model }));
    const summary: CurateSummary = { out, seconds: (Date.now() - started) / 1000, scorers, filter, scores, selection, truth, histograms, reshard };
    await writeJsonAtomic(join(out, 'curate.json'), summary);
    return summary;
  });
}
