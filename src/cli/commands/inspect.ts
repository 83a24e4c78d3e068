// `loom inspect`: read WebDataset shards and report what is in them and what is wrong with them.
import type { Command } from 'commander';
import { printSummary, table, asciiHistogram } from '../output.js';
import { startProgress } from '../progress.js';
import { listShards } from '../../shards/listShards.js';
import { inspectShards, type InspectReport } from '../../shards/inspect.js';
import { samplesFromStats } from '../../shards/stats.js';
import type { HistogramSummary } from '../../shards/histogram.js';
import { integerOption } from '../options.js';

interface InspectCliOptions {
  json?: boolean;
  limit?: string;
  decode: boolean;
  examples: string;
}

export function registerInspect(program: Command): void {
  program
    .command('inspect')
    .summary('validate shards: samples, bad ones, histograms')
    .description(
      [
        'Read WebDataset shards (img2dataset/DataComp layout: {key}.jpg|png|webp, {key}.txt, {key}.json; the .json ' +
          'is optional) and report samples ok, bad samples by reason with examples (file, key, why), image formats, ' +
          'caption length histograms (characters and words) and image width/height histograms.',
        "Beside Loom's own bad-sample counts it shows what the producer lost before writing the tars: the sums of " +
          "img2dataset's {:08d}_stats.json sidecars (failed_to_download, failed_to_resize, status_dict).",
        'Every image is fully decoded unless --no-decode (then only its header is checked, which is much faster).',
        "SHARDS are files, directories (all *.tar inside, sorted) or brace ranges such as 'data/{00000000..00000009}.tar' " +
          '(quote them so the shell leaves the braces alone).',
      ].join('\n\n'),
    )
    .argument('<shards...>', 'shard files, directories or brace ranges')
    .option('--json', 'print the report as one JSON object on stdout')
    .option('--limit <n>', 'stop after N samples (good and bad together)')
    .option('--no-decode', 'trust the image bytes: check headers only (much faster)')
    .option('--examples <n>', 'examples shown per bad reason', '5')
    .addHelpText('after', '\nExamples:\n  loom inspect data/shards\n  loom inspect --json --no-decode \'data/{00000000..00000003}.tar\'\n')
    .action(async (specs: string[], opts: InspectCliOptions) => {
      const limit = opts.limit === undefined ? undefined : integerOption(opts.limit, '--limit', 1);
      const examples = integerOption(opts.examples, '--examples', 0);
      const paths = await listShards(specs);
      const progress = startProgress('inspect', await samplesFromStats(paths), { unit: 'samples' });
      let report: InspectReport;
      try {
        report = await inspectShards(paths, { decode: opts.decode, limit, examples, onItem: () => progress.tick() });
      } finally {
        progress.stop();
      }
      printSummary(opts, report, () => humanReport(report));
    });
}



function humanReport(r: InspectReport): string {
  const total = r.samples + r.bad;
  const pct = (n: number) => (total === 0 ? '0%' : `${((100 * n) / total).toFixed(2)}%`);
  const lines: string[] = [];
  lines.push(`Inspected ${r.shards} shard${r.shards === 1 ? '' : 's'}${r.limited ? ' (stopped at --limit)' : ''}:`);
  lines.push(
    table([
      ['samples ok', fmt(r.samples)],
      ['bad samples', `${fmt(r.bad)} (${pct(r.bad)})`],
      ['images', r.decoded ? 'fully decoded' : 'headers only (--no-decode)'],
      ['image formats', Object.entries(r.formats).map(([f, n]) => `${f} ${fmt(n)}`).join(', ') || '-'],
      ['speed', `${fmt(Math.round(r.itemsPerSecond))} samples/s (${r.seconds.toFixed(1)} s)`],
    ]),
  );
  const reasons = Object.entries(r.badByReason).sort((a, b) => b[1].count - a[1].count);
  if (reasons.length > 0) {
    lines.push('', 'Bad samples by reason:');
    for (const [reason, entry] of reasons) {
      lines.push(`  ${reason}: ${fmt(entry.count)}`);
      for (const e of entry.examples) lines.push(`      ${e.shard} ${e.key === null ? '(file)' : `key ${e.key}`}: ${e.detail}`);
    }
  }
  lines.push(...upstreamBlock(r));
  const shardsWithBad = r.perShard.filter((s) => s.bad > 0);
  if (r.perShard.length > 1 && shardsWithBad.length > 0) {
    lines.push('', 'Shards with bad samples:');
    lines.push(table(shardsWithBad.slice(0, 20).map((s) => [s.shard, `${fmt(s.samples)} ok, ${fmt(s.bad)} bad`])));
    if (shardsWithBad.length > 20) lines.push(`  ... and ${shardsWithBad.length - 20} more (see --json)`);
  }
  lines.push(histogramBlock('Caption length (characters)', r.captionChars));
  lines.push(histogramBlock('Caption length (words)', r.captionWords));
  lines.push(histogramBlock('Image width (px)', r.imageWidth));
  lines.push(histogramBlock('Image height (px)', r.imageHeight));
  return lines.join('\n');
}

/** The producer's losses (img2dataset's _stats.json), which never reached the tars. */
function upstreamBlock(r: InspectReport): string[] {
  const u = r.upstream;
  if (u.shardsWithStats === 0) return [];
  const lines = ['', `Before the shards were written (producer's _stats.json, ${fmt(u.shardsWithStats)} of ${r.shards} shards):`];
  lines.push(
    table([
      ['attempted', fmt(u.count)],
      ['written', fmt(u.successes)],
      ['failed_to_download', fmt(u.failed_to_download)],
      ['failed_to_resize', fmt(u.failed_to_resize)],
    ]),
  );
  const statuses = Object.entries(u.status).filter(([name]) => name !== 'success').sort((a, b) => b[1] - a[1]);
  if (statuses.length > 0) {
    lines.push('  status_dict (top 10):');
    for (const [name, n] of statuses.slice(0, 10)) lines.push(`      ${name}: ${fmt(n)}`);
  }
  return lines;
}

function histogramBlock(title: string, h: HistogramSummary): string {
  if (h.count === 0) return `\n${title}: no samples`;
  const head = `\n${title}: min ${h.min}, mean ${h.mean!.toFixed(1)}, max ${h.max}`;
  const bars = asciiHistogram(h.buckets.map((b) => ({ label: b.lo === b.hi ? `${b.lo}` : `${b.lo}-${b.hi}`, count: b.count })));
  return `${head}\n${bars}`;
}

function fmt(n: number): string {
  return n.toLocaleString('en-US');
}
