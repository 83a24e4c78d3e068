// The parts of each step's result that go into demo.json (and the summary the CLI prints).
import type { CurateSummary } from '../curate/run.js';
import type { PackSummary } from '../pack/run.js';
import type { InspectReport } from '../shards/inspect.js';
import type { SynthManifest } from '../synth/generate.js';

export function pickCurate(c: CurateSummary) {
  return {
    out: c.out,
    rule: c.selection.rule,
    scored: c.selection.total,
    kept: c.selection.kept,
    threshold: c.selection.atoms[0]?.threshold ?? null,
    filter: c.filter === null ? null : { pairs: c.filter.pairs ?? null, loss_first: c.filter.loss_first ?? null, loss_last: c.filter.loss_last ?? null, chance_loss: c.filter.chance_loss ?? null, seconds: c.filter.seconds ?? null },
    scores_per_second: c.scores.dfn?.samples_per_s ?? null,
    truth: c.truth,
    histograms: c.histograms,
    shards: c.reshard?.shards ?? [],
    seconds: c.seconds,
  };
}

export function pickPack(p: PackSummary) {
  return {
    sequences: p.sequences,
    documents: p.documents.kept,
    truncated: p.documents.truncated,
    dropped: p.documents.droppedOverlong + p.documents.droppedEmpty,
    efficiency: p.efficiency,
    images_per_sequence: p.images_per_sequence,
    samples_per_second: p.samples_per_s,
  };
}

export function pickSynth(m: SynthManifest) {
  return { samples: m.pretrain.samples, clean: m.pretrain.clean, noise: m.pretrain.noise, shards: m.pretrain.shards.length, sft_conversations: m.sft.conversations, bench_questions: m.bench.questions };
}

export function pickTrain(done: Record<string, unknown>) {
  const pick = (key: string) => done[key] ?? null;
  return {
    run_dir: pick('run_dir'),
    steps: pick('steps'),
    final_loss: pick('final_loss'),
    first_loss: pick('first_loss'),
    seconds: pick('seconds'),
    tokens_per_second: pick('mean_tokens_per_s'),
    export: pick('export'),
    loss_curve: pick('loss_curve'),
  };
}

export function pickInspect(r: InspectReport) {
  return { shards: r.shards, samples: r.samples, bad: r.bad, formats: r.formats, samples_per_second: r.itemsPerSecond, caption_words_mean: r.captionWords.mean, image_width_mean: r.imageWidth.mean };
}
