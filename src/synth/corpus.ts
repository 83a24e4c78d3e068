// Text for training the bundled tiny tokenizer: the same captions and SFT phrasing `loom synth`
// produces, drawn from a stream of its own.
import { captionForScene } from './caption.js';
import { questionsForScene } from './qa.js';
import { generateBlankScene, generateScene } from './scene.js';
import { streamRng } from './streams.js';

/**
 * Text for `n` scenes: for each, one clean caption, then three SFT questions and their answers
 * (so about 7n strings). Deterministic for a seed.
 */
export function captionCorpus(seed: number, n: number): string[] {
  const out: string[] = [];
  for (let i = 0; i < n; i++) {
    const rng = streamRng(seed, 'corpus', i);
    const scene = rng.chance(0.03) ? generateBlankScene(rng) : generateScene(rng);
    out.push(captionForScene(scene, rng));
    if (scene.objects.length === 0) continue;
    for (const qa of questionsForScene(scene, rng, 3)) out.push(qa.question, qa.answer);
  }
  return out;
}
