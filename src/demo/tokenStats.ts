// The demo's "tokenize" step: how long the curated samples are as pre-training documents, measured
// by the pack's own document code (PretrainDocuments.lengths), so these numbers are the ones
// `loom pack` packs.
import { imageTokensPerImage, type RunConfig } from '../config/schema.js';
import { PretrainDocuments } from '../pack/sample.js';
import { readShards } from '../shards/reader.js';
import { TextTokenizer } from '../tokenize/tokenizer.js';

export interface TokenStats {
  samples: number;
  /** Template text plus caption tokens per packed document. */
  textTokensMean: number;
  textTokensMax: number;
  imageTokensPerImage: number;
  sampleTokensMean: number;
  /** Sequences needed at the config's length if packing filled them completely (a lower bound). */
  sequencesLowerBound: number;
  seqLen: number;
}

export async function tokenStats(config: RunConfig, shards: string[]): Promise<TokenStats> {
  if (config.tokenizer.path === null) throw new Error('the tiny preset always names its tokenizer');
  const tokenizer = await TextTokenizer.load(config.tokenizer.path);
  const captions: string[] = [];
  for await (const item of readShards(shards)) {
    if (item.kind === 'sample') captions.push(item.sample.caption);
  }
  const documents = await PretrainDocuments.create(config, tokenizer);
  const { lengths } = await documents.lengths(captions);
  const imageTokens = imageTokensPerImage(config);
  // A length of 0 is a document the pack drops; the demo's captions never are, but they would not count.
  let packed = 0;
  let totalTokens = 0;
  let maxTextTokens = 0;
  for (const length of lengths) {
    if (length === 0) continue;
    packed++;
    totalTokens += length;
    maxTextTokens = Math.max(maxTextTokens, length - imageTokens);
  }
  const textTokens = totalTokens - packed * imageTokens;
  return {
    samples: captions.length,
    textTokensMean: textTokens / Math.max(1, packed),
    textTokensMax: maxTextTokens,
    imageTokensPerImage: imageTokens,
    sampleTokensMean: totalTokens / Math.max(1, packed),
    sequencesLowerBound: Math.ceil(totalTokens / config.data.seq_len),
    seqLen: config.data.seq_len,
  };
}
