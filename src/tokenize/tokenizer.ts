// Text tokenization for the data plane through HF's own Rust tokenizer (the npm `tokenizers`
// binding), so the ids match what Python's `tokenizers`/transformers produce from the same
// tokenizer.json (checked by test/ts/tokenize/parity.test.ts on shared vectors).
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import { Tokenizer } from 'tokenizers';

import { assetsDir } from '../util/paths.js';

const NO_SPECIALS = { addSpecialTokens: false } as const;

/** The bundled tiny tokenizer for the synthetic data (see python/scripts/train_tiny_tokenizer.py). */
export function tinyTokenizerPath(): string {
  return resolve(assetsDir(), 'tokenizer', 'tiny', 'tokenizer.json');
}

export class TextTokenizer {
  private constructor(
    private readonly inner: Tokenizer,
    /** Absolute path of the tokenizer.json this was loaded from. */
    readonly path: string,
    /** sha256 (hex) of the tokenizer.json bytes; packed shards record it so trainers can refuse a mismatch. */
    readonly sha256: string,
    /** Number of ids including added/special tokens: the embedding needs at least this many rows. */
    readonly vocabSize: number,
  ) {}

  static async load(path: string): Promise<TextTokenizer> {
    const absolute = resolve(path);
    let bytes: Buffer;
    try {
      bytes = await readFile(absolute);
    } catch (error) {
      throw new Error(`cannot read tokenizer ${absolute}: ${(error as Error).message}`);
    }
    let inner: Tokenizer;
    try {
      // Parse from the bytes we hashed, so the hash always describes the tokenizer in use.
      inner = Tokenizer.fromString(bytes.toString('utf8'));
    } catch (error) {
      throw new Error(`cannot load tokenizer ${absolute}: not a valid HF tokenizer.json (${(error as Error).message})`);
    }
    const sha256 = createHash('sha256').update(bytes).digest('hex');
    return new TextTokenizer(inner, absolute, sha256, inner.getVocabSize(true));
  }

  /** Ids for the text, with no special tokens added around it; special tokens written in the text map to their ids. */
  async encode(text: string): Promise<number[]> {
    const encoding = await this.inner.encode(text, null, NO_SPECIALS);
    return encoding.getIds();
  }

  /** Same ids as encode() for each text; one native call, parallel inside the Rust library. */
  async encodeBatch(texts: string[]): Promise<number[][]> {
    if (texts.length === 0) return [];
    const encodings = await this.inner.encodeBatch(texts, NO_SPECIALS);
    return encodings.map((encoding) => encoding.getIds());
  }

  async decode(ids: number[], skipSpecial = false): Promise<string> {
    for (const id of ids) {
      if (!Number.isInteger(id) || id < 0 || id >= this.vocabSize) {
        throw new Error(`cannot decode id ${id} with tokenizer ${this.path}: ids run from 0 to ${this.vocabSize - 1}`);
      }
    }
    return this.inner.decode(ids, skipSpecial);
  }

  /** The id of one whole token (e.g. "<|im_end|>", "<image>"); throws if the vocabulary lacks it. */
  tokenId(token: string): number {
    const id = this.inner.tokenToId(token);
    if (id === null || id === undefined) {
      throw new Error(`token ${JSON.stringify(token)} is not in the vocabulary of tokenizer ${this.path}`);
    }
    return id;
  }

  /** The token string for an id (byte-level form, e.g. "Ġred"), or null when out of range. */
  idToToken(id: number): string | null {
    return this.inner.idToToken(id);
  }
}
