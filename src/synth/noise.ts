// Corrupted image-text pairs with known ground truth, so a filter's precision and recall can be
// measured: which samples are noisy is planned up front (exact counts per kind), and each noisy
// sample records what was changed.
import type { Rng } from '../util/rng.js';
import { captionForGroups, captionForScene } from './caption.js';
import type { Group, Scene } from './scene.js';
import { colorsVisibleOn, generateBlankScene, generateScene, groupsOf } from './scene.js';
import { streamRng } from './streams.js';
import { FILLER_WORDS, MAX_GROUP_COUNT, SHAPE_COLORS } from './vocabulary.js';

export const NOISE_KINDS = ['mismatched', 'wrong_color', 'wrong_count', 'gibberish', 'blank'] as const;
export type NoiseKind = (typeof NOISE_KINDS)[number];
export type NoiseMix = Record<NoiseKind, number>;

export const EVEN_MIX: NoiseMix = { mismatched: 1, wrong_color: 1, wrong_count: 1, gibberish: 1, blank: 1 };

/** Parses "mismatched=2,blank=1" (kinds left out get weight 0) or "even". */
export function parseNoiseMix(spec: string): NoiseMix {
  if (spec.trim() === 'even') return { ...EVEN_MIX };
  const mix: NoiseMix = { mismatched: 0, wrong_color: 0, wrong_count: 0, gibberish: 0, blank: 0 };
  for (const part of spec.split(',').map((s) => s.trim()).filter(Boolean)) {
    const m = /^([a-z_]+)=([0-9]*\.?[0-9]+)$/.exec(part);
    if (!m) throw new Error(`noise mix: '${part}' is not kind=weight (kinds: ${NOISE_KINDS.join(', ')})`);
    const kind = m[1] as NoiseKind;
    if (!NOISE_KINDS.includes(kind)) throw new Error(`noise mix: unknown kind '${m[1]}' (kinds: ${NOISE_KINDS.join(', ')})`);
    mix[kind] = Number(m[2]);
  }
  if (NOISE_KINDS.every((k) => mix[k] === 0)) throw new Error('noise mix: every weight is 0');
  return mix;
}

/** Exact number of samples per kind: round(fraction * n) noisy in all, split by largest remainder. */
export function noiseCounts(n: number, fraction: number, mix: NoiseMix): Record<NoiseKind, number> {
  const total = Math.round(fraction * n);
  const weightSum = NOISE_KINDS.reduce((s, k) => s + mix[k], 0);
  const exact = NOISE_KINDS.map((k) => (total * mix[k]) / weightSum);
  const counts = exact.map(Math.floor);
  let left = total - counts.reduce((a, b) => a + b, 0);
  const byRemainder = NOISE_KINDS.map((_, i) => i).sort((a, b) => (exact[b] as number) - (counts[b] as number) - ((exact[a] as number) - (counts[a] as number)) || a - b);
  for (const i of byRemainder) {
    if (left <= 0) break;
    counts[i] = (counts[i] as number) + 1;
    left--;
  }
  return Object.fromEntries(NOISE_KINDS.map((k, i) => [k, counts[i]])) as Record<NoiseKind, number>;
}

/** Per-sample noise kind (or null for clean), at random positions fixed by the seed. */
export function planNoise(seed: number, n: number, fraction: number, mix: NoiseMix): Array<NoiseKind | null> {
  const counts = noiseCounts(n, fraction, mix);
  const order = new Uint32Array(n);
  for (let i = 0; i < n; i++) order[i] = i;
  const rng = streamRng(seed, 'noisePlan', n);
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor(rng.next() * (i + 1));
    const t = order[i] as number;
    order[i] = order[j] as number;
    order[j] = t;
  }
  const plan: Array<NoiseKind | null> = new Array<NoiseKind | null>(n).fill(null);
  let p = 0;
  for (const kind of NOISE_KINDS) for (let c = 0; c < counts[kind]; c++) plan[order[p++] as number] = kind;
  return plan;
}

export interface NoisyPair {
  /** What the image shows. */
  scene: Scene;
  /** The caption written to the shard (wrong for noisy samples). */
  caption: string;
  /** An accurate caption of the image. */
  cleanCaption: string;
  noise: null | ({ kind: NoiseKind } & Record<string, unknown>);
}

/** What a caption can state about a scene: counts, colours, shapes (not sizes or positions). */
function contentKey(scene: Scene): string {
  return groupsOf(scene)
    .map((g) => `${g.count} ${g.color} ${g.shape}`)
    .sort()
    .join(',');
}

const groupSummary = (groups: Group[]): Array<{ count: number; size: string; color: string; shape: string }> =>
  groups.map((g) => ({ count: g.count, size: g.size, color: g.color, shape: g.shape }));

function gibberish(rng: Rng): { text: string; style: string } {
  const style = rng.pick(['letters', 'spam'] as const);
  const n = rng.int(3, 14);
  const words: string[] = [];
  for (let i = 0; i < n; i++) {
    if (style === 'spam') words.push(rng.pick(FILLER_WORDS));
    else words.push(Array.from({ length: rng.int(2, 9) }, () => String.fromCharCode(97 + rng.int(0, 25))).join(''));
  }
  const text = words.join(' ');
  return { text: text.charAt(0).toUpperCase() + text.slice(1) + (rng.chance(0.5) ? '.' : ''), style };
}

/**
 * One image-text pair for pre-training. Clean pairs describe the image; noisy ones are corrupted as
 * `kind` says, and record how. `seed` and `index` pick independent streams for the "other" scene.
 */
export function makePair(rng: Rng, kind: NoiseKind | null, seed: number, index: number): NoisyPair {
  if (kind === 'blank') {
    const scene = generateBlankScene(rng);
    const described = generateScene(streamRng(seed, 'pretrain', index, 1));
    return {
      scene,
      caption: captionForScene(described, rng),
      cleanCaption: captionForScene(scene, rng),
      noise: { kind, described: groupSummary(groupsOf(described)) },
    };
  }
  const scene = generateScene(rng);
  const cleanCaption = captionForScene(scene, rng);
  const groups = groupsOf(scene);
  switch (kind) {
    case null:
      return { scene, caption: cleanCaption, cleanCaption, noise: null };
    case 'mismatched': {
      // Another scene with different content (so the caption is wrong, not a lucky duplicate).
      let other: Scene;
      let attempt = 2;
      do other = generateScene(streamRng(seed, 'pretrain', index, attempt++));
      while (contentKey(other) === contentKey(scene));
      return { scene, caption: captionForScene(other, rng), cleanCaption, noise: { kind, described: groupSummary(groupsOf(other)) } };
    }
    case 'wrong_color': {
      const target = rng.pick(groups);
      const used = new Set(scene.objects.map((o) => o.color));
      // Prefer a colour that is visible on this background, so the lie looks plausible.
      const candidates = colorsVisibleOn(scene.background).filter((c) => !used.has(c.name));
      const fallback = SHAPE_COLORS.find((c) => !used.has(c.name)) as (typeof SHAPE_COLORS)[number];
      const to = candidates.length > 0 ? rng.pick(candidates).name : fallback.name;
      const edited = groups.map((g) => (g === target ? { ...g, color: to } : g));
      return {
        scene,
        caption: captionForGroups(edited, scene.background, rng),
        cleanCaption,
        noise: { kind, shape: target.shape, from: target.color, to },
      };
    }
    case 'wrong_count': {
      const target = rng.pick(groups);
      const up = target.count === 1 || (target.count < MAX_GROUP_COUNT + 1 && rng.chance(0.5));
      const to = up ? target.count + 1 : target.count - 1;
      const edited = groups.map((g) => (g === target ? { shape: g.shape, color: g.color, size: g.size, count: to } : g));
      return {
        scene,
        caption: captionForGroups(edited, scene.background, rng),
        cleanCaption,
        noise: { kind, shape: target.shape, color: target.color, from: target.count, to },
      };
    }
    case 'gibberish': {
      const g = gibberish(rng);
      return { scene, caption: g.text, cleanCaption, noise: { kind, style: g.style } };
    }
  }
}
