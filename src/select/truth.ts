// How well a selection removes known noise: samples whose json carries ground truth (the synthetic
// data's `noise: null | {kind}`) are counted per kind as kept or removed. Real data has no such
// field; its samples are counted as unlabelled and the report says so.
import { readShards } from '../shards/reader.js';
import type { SortedUids } from './uidWords.js';

const CLEAN = 'clean';

export interface TruthKindCounts {
  total: number;
  kept: number;
  removed: number;
  /** removed / total: recall of removal for a noise kind, the share lost for clean samples. */
  removed_share: number;
}

export interface TruthReport {
  /** Samples with ground truth (json.noise present), and those without. */
  labelled: number;
  unlabelled: number;
  kinds: Record<string, TruthKindCounts>;
  /** All noise kinds together. */
  noisy: TruthKindCounts;
  /** Of the removed labelled samples, the share that was noise (precision of removal). */
  removal_precision: number;
  /** Share of clean samples kept. */
  clean_kept: number;
}

/** The ground-truth kind of a sample's json: 'clean', a noise kind, or null when it records none. */
function truthKindOf(json: Record<string, unknown>): string | null {
  if (!('noise' in json)) return null;
  const noise = json.noise;
  if (noise === null) return CLEAN;
  const kind = typeof noise === 'object' && noise !== null ? (noise as { kind?: unknown }).kind : undefined;
  return typeof kind === 'string' ? kind : 'unknown_noise';
}

function counts(total: number, kept: number): TruthKindCounts {
  return { total, kept, removed: total - kept, removed_share: total === 0 ? 0 : (total - kept) / total };
}

/** Reads the shards' json (headers only, no image decode) and scores `selection` against their truth. */
export async function truthReport(shards: string[], selection: SortedUids): Promise<TruthReport> {
  const tally = new Map<string, { total: number; kept: number }>();
  let unlabelled = 0;
  for await (const item of readShards(shards)) {
    if (item.kind !== 'sample') continue;
    const kind = truthKindOf(item.sample.json);
    if (kind === null) unlabelled += 1;
    else tallyOne(tally, kind, selection.indexOf(item.sample.uid) >= 0);
  }
  return reportOf(tally, unlabelled);
}

/** The same report from truth already read (`readTruthKinds`), without reading the shards again. */
export function truthReportOf(truth: TruthKinds, selection: SortedUids): TruthReport {
  const tally = new Map<string, { total: number; kept: number }>();
  for (const [uid, kind] of truth.kinds) tallyOne(tally, kind, selection.indexOf(uid) >= 0);
  return reportOf(tally, truth.unlabelled);
}

function tallyOne(tally: Map<string, { total: number; kept: number }>, kind: string, kept: boolean): void {
  const entry = tally.get(kind) ?? { total: 0, kept: 0 };
  entry.total += 1;
  if (kept) entry.kept += 1;
  tally.set(kind, entry);
}

function reportOf(tally: Map<string, { total: number; kept: number }>, unlabelled: number): TruthReport {
  const kinds = Object.fromEntries([...tally.entries()].sort(([a], [b]) => a.localeCompare(b)).map(([k, v]) => [k, counts(v.total, v.kept)]));
  const noisyEntries = [...tally.entries()].filter(([k]) => k !== CLEAN).map(([, v]) => v);
  const noisy = counts(
    noisyEntries.reduce((s, v) => s + v.total, 0),
    noisyEntries.reduce((s, v) => s + v.kept, 0),
  );
  const clean = kinds[CLEAN] ?? counts(0, 0);
  const removed = noisy.removed + clean.removed;
  return {
    labelled: noisy.total + clean.total,
    unlabelled,
    kinds,
    noisy,
    removal_precision: removed === 0 ? 0 : noisy.removed / removed,
    clean_kept: clean.total === 0 ? 0 : clean.kept / clean.total,
  };
}

export interface TruthKinds {
  /** uid -> ground-truth kind of every labelled sample. */
  kinds: Map<string, string>;
  /** Good samples whose json records no truth. */
  unlabelled: number;
}

/** Every labelled sample's kind (memory grows with the data: for reports on synthetic sets). */
export async function readTruthKinds(shards: string[]): Promise<TruthKinds> {
  const kinds = new Map<string, string>();
  let unlabelled = 0;
  for await (const item of readShards(shards)) {
    if (item.kind !== 'sample') continue;
    const kind = truthKindOf(item.sample.json);
    if (kind === null) unlabelled += 1;
    else kinds.set(item.sample.uid, kind);
  }
  return { kinds, unlabelled };
}
