// The readable summary `loom demo` prints at the end (demo.json, from src/demo/, holds the numbers).
import { join } from 'node:path';
import { formatCommand } from '../../protocol/command.js';
import { table } from '../output.js';
import type { DemoChatProbe } from '../../demo/chat.js';
import type { pickCurate, pickPack, pickTrain } from '../../demo/summary.js';
import type { TokenStats } from '../../demo/tokenStats.js';
import type { InspectReport } from '../../shards/inspect.js';
import type { SynthManifest } from '../../synth/generate.js';

/** The parts of demo.json the readable summary shows. */
interface HumanView {
  out: string;
  seconds: number;
  not_built_yet: string[];
  curate: ReturnType<typeof pickCurate>;
  synth: { seconds: number; pretrain_samples_per_second: number };
  pack: ReturnType<typeof pickPack>;
  loader: Record<string, unknown>;
  pack_sft: ReturnType<typeof pickPack> & { image_tokens_per_image: number };
  train: ReturnType<typeof pickTrain>;
  train_sft: ReturnType<typeof pickTrain>;
  chat: DemoChatProbe;
}

export function renderDemoSummary(s: HumanView, m: SynthManifest, r: InspectReport, t: TokenStats): string {
  const noise = Object.entries(m.pretrain.noise).map(([k, v]) => `${k} ${v}`).join(', ');
  return [
    '',
    `Loom demo: done in ${s.seconds.toFixed(1)} s -> ${s.out}`,
    table([
      ['synthetic pairs', `${m.pretrain.samples} in ${m.pretrain.shards.length} shard(s), ${s.synth.pretrain_samples_per_second.toFixed(0)} samples/s`],
      ['  clean / noisy', `${m.pretrain.clean} / ${m.pretrain.samples - m.pretrain.clean} (${noise})`],
      ['SFT conversations', `${m.sft.conversations} (${m.sft.turns} Q/A turns)`],
      ['benchmark (MMBench TSV)', `${m.bench.questions} questions`],
      ['inspect', `${r.samples} ok, ${r.bad} bad, ${r.itemsPerSecond.toFixed(0)} samples/s (every image decoded)`],
      ['  captions', `${fmt(r.captionWords.mean)} words on average (${r.captionWords.min}-${r.captionWords.max})`],
      ['  images', `${fmt(r.imageWidth.mean)} x ${fmt(r.imageHeight.mean)} px on average; ${Object.entries(r.formats).map(([k, v]) => `${k} ${v}`).join(', ')}`],
      ...curateRows(s.curate),
      ['tokens per sample', `${t.textTokensMean.toFixed(1)} text (max ${t.textTokensMax}) + ${t.imageTokensPerImage} image = ${t.sampleTokensMean.toFixed(1)}`],
      ['  at full packing', `>= ${t.sequencesLowerBound} sequences`],
      ['compute plane', 'Python validated the same config (python -m loom_compute validate-config)'],
      ['pack (exact-fill)', `${s.pack.sequences} sequences of ${t.seqLen} tokens, ${(100 * s.pack.efficiency).toFixed(2)}% filled, ${s.pack.images_per_sequence.mean.toFixed(1)} images/sequence (${s.pack.images_per_sequence.min}-${s.pack.images_per_sequence.max})`],
      ['  documents', `${s.pack.documents} kept, ${s.pack.truncated} truncated, ${s.pack.dropped} dropped; ${s.pack.samples_per_second.toFixed(0)} samples/s`],
      ['pack SFT', `${s.pack_sft.documents} conversations -> ${s.pack_sft.sequences} sequences, ${(100 * s.pack_sft.efficiency).toFixed(2)}% filled, ${s.pack_sft.image_tokens_per_image} tokens per image`],
      ['training loader (Python)', `read ${String(s.loader.sequences)} sequences in ${String(s.loader.batches)} batches, ${String(s.loader.images)} images, ${String(s.loader.label_tokens)} label tokens`],
      ['pre-training (tiny, CPU)', trainLine(s.train)],
      ['  vs captions', `unigram entropy ${fmtLoss(s.loader.label_unigram_entropy)} nats: the loss of a model that ignores image and context`],
      ['  loss curve', String(s.train.loss_curve)],
      ['SFT (from the export)', trainLine(s.train_sft)],
      ['chat (SFT model)', `${s.chat.question} (image ${s.chat.id})`],
      ['  answer', `${JSON.stringify(s.chat.answer)}${s.chat.finish_reason === 'length' ? ` (cut at ${s.chat.new_tokens} tokens)` : ''}`],
      ['  truth', `${JSON.stringify(s.chat.truth)}${s.chat.exact ? ' (exact match)' : ''}`],
      ['not built yet', s.not_built_yet.join(', ')],
    ]),
    '',
    `Ask it more: ${formatCommand(s.chat.loom_chat.slice(0, -1))}  (no question: an interactive session)`,
    `Next: loom train --name more --packed ${join(s.out, 'packed')} --set train.max_steps=200  |  loom config init --preset open-qwen2vl-2b  |  docs/training.md`,
  ].join('\n');
}

function curateRows(c: ReturnType<typeof pickCurate>): Array<[string, string]> {
  const pc = (x: number) => `${(100 * x).toFixed(1)}%`;
  const f = c.filter;
  const rows: Array<[string, string]> = [
    ['curate (filter network)', f ? `${String(f.pairs)} trusted pairs, contrastive loss ${fmtLoss(f.loss_first)} -> ${fmtLoss(f.loss_last)} (chance ${fmtLoss(f.chance_loss)}) in ${fmtLoss(f.seconds)} s` : 'reused'],
    ['  scored, kept', `${c.scored} scored at ${Number(c.scores_per_second ?? 0).toFixed(0)}/s; ${c.rule} keeps ${c.kept} (cosine >= ${Number(c.threshold).toFixed(3)})`],
  ];
  if (c.truth) {
    const kinds = Object.entries(c.truth.kinds);
    const clean = c.truth.kinds.clean;
    rows.push(['  noise removed', kinds.filter(([k]) => k !== 'clean').map(([k, v]) => `${k} ${pc(v.removed_share)}`).join(', ')]);
    if (clean) rows.push(['  clean kept', `${pc(1 - clean.removed_share)}; precision of removal ${pc(c.truth.removal_precision)}`]);
  }
  rows.push(['  histogram', c.histograms.join(', ')]);
  return rows;
}

function trainLine(t: ReturnType<typeof pickTrain>): string {
  const speed = typeof t.tokens_per_second === 'number' ? `, ${t.tokens_per_second.toFixed(0)} tokens/s` : '';
  return `${String(t.steps)} steps, loss ${fmtLoss(t.first_loss)} -> ${fmtLoss(t.final_loss)} in ${fmtLoss(t.seconds)} s${speed}`;
}

function fmtLoss(value: unknown): string {
  return typeof value === 'number' ? value.toFixed(2) : '-';
}

function fmt(value: number | null): string {
  return value === null ? '-' : value.toFixed(1);
}
