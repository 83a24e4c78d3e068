// Independent random streams, one per part of the dataset: sample i of a part always draws from
// Rng.derive(seed, part, i), so parts never share randomness and order of generation never matters.
import { Rng } from '../util/rng.js';

const STREAM = {
  pretrain: 1,
  sft: 2,
  bench: 3,
  noisePlan: 4,
  corpus: 5,
  answerLetters: 6,
} as const;

export type StreamName = keyof typeof STREAM;

export function streamRng(seed: number, stream: StreamName, ...keys: number[]): Rng {
  return Rng.derive(seed, STREAM[stream], ...keys);
}
