// Pre-training pairs: one scene, its (possibly corrupted) caption, the image bytes and a JSON
// record carrying the ground truth (scene, noise, clean caption).
import { createHash } from 'node:crypto';
import { encodeScene, pickEncoding, type ImageFormat, type SceneEncoder } from './encode.js';
import { makePair, type NoiseKind, type NoisyPair } from './noise.js';
import { streamRng } from './streams.js';

export interface PretrainPlan {
  key: string;
  uid: string;
  format: ImageFormat;
  quality: number;
  pair: NoisyPair;
}

export interface EncodedSample {
  key: string;
  image: { ext: ImageFormat; data: Buffer };
  caption: string;
  json: Record<string, unknown>;
}

/** Keys are the global sample index, zero-padded (no dots, sortable). */
function pretrainKey(index: number): string {
  return String(index).padStart(10, '0');
}

/** DataComp-style uid: 32 hex chars, a pure function of seed and index. */
function synthUid(seed: number, part: string, index: number): string {
  return createHash('md5').update(`loom-synth:${seed}:${part}:${index}`).digest('hex');
}

/** Everything about sample `index` except pixels (cheap: used for hashing scenes on resume). */
export function planPretrainSample(seed: number, index: number, noise: NoiseKind | null): PretrainPlan {
  const rng = streamRng(seed, 'pretrain', index);
  const { format, quality } = pickEncoding(rng);
  const pair = makePair(rng, noise, seed, index);
  return { key: pretrainKey(index), uid: synthUid(seed, 'pretrain', index), format, quality, pair };
}

export async function buildPretrainSample(plan: PretrainPlan, encode: SceneEncoder = encodeScene): Promise<EncodedSample> {
  const { scene } = plan.pair;
  const data = await encode(scene, { format: plan.format, quality: plan.quality });
  return {
    key: plan.key,
    image: { ext: plan.format, data },
    caption: plan.pair.caption,
    json: {
      uid: plan.uid,
      key: plan.key,
      source: 'loom-synth',
      width: scene.width,
      height: scene.height,
      scene,
      noise: plan.pair.noise,
      clean_caption: plan.pair.cleanCaption,
    },
  };
}
