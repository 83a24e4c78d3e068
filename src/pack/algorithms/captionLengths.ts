// The realistic pre-training length distribution the packers are judged on: one image
// (144 tokens once its placeholder expands) plus a caption whose token count is lognormal
// with median 24 and sigma 0.485, so its mean is 24 * exp(0.485^2 / 2) = 27.0 tokens,
// rounded and clipped to >= 1 (the caption's count includes the newline and <|im_end|>).
import { Rng } from '../../util/rng.js';

export const IMAGE_TOKENS = 144;
export const CAPTION_MEDIAN_TOKENS = 24;
export const CAPTION_SIGMA = 0.485;

/** n sample lengths (image + caption tokens) drawn from the distribution above, for a seed. */
export function sampleCaptionLengths(n: number, seed: number): Int32Array {
  const rng = new Rng(seed);
  const mu = Math.log(CAPTION_MEDIAN_TOKENS);
  const out = new Int32Array(n);
  for (let i = 0; i < n; i++) {
    const text = Math.max(1, Math.round(Math.exp(mu + CAPTION_SIGMA * rng.normal())));
    out[i] = IMAGE_TOKENS + text;
  }
  return out;
}
