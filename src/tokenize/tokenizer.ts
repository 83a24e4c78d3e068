// Text tokenization for the data plane through HF's own Rust tokenizer (the npm `tokenizers`
// binding), so the ids match what transformers produces from the same tokenizer.json (checked by
// test/ts/tokenize/parity.test.ts on vectors that transformers wrote).
//
// Two encodings (DESIGN.md, "Data text is plain text"):
// - encode/encodeBatch, for templates: a special-token string maps to its id.
// - encodeText/encodeTextBatch, for data text (captions, conversation values, questions): as
//   transformers with split_special_tokens=True, a special token's string is ordinary text;
//   non-special added tokens still map to their ids, as in transformers (see plainText.ts).
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import { Tokenizer } from 'tokenizers';

import { assetsDir } from '../util/paths.js';
import { AddedTokenSplitter, unsupportedReason, type AddedTokenEntry } from './plainText.js';

const NO_SPECIALS = { addSpecialTokens: false } as const;

/** The bundled tiny tokenizer for the synthetic data (see python/scripts/train_tiny_tokenizer.py). */
export function tinyTokenizerPath(): string {
  return resolve(assetsDir(), 'tokenizer', 'tiny', 'tokenizer.json');
}

/** For a missing copy that config resolution derived into Loom's cache (src/config/derivedTokenizer.ts): how to get it back. */
function derivedCopyHint(path: string): string {
  if (!/[/\\]tokenizers[/\\][0-9a-f]{64}[/\\]tokenizer\.json$/.test(path)) return '';
  return ' (a copy with the image token that Loom derived into its cache: resolve the config again with `loom config init`, or write it with `loom tokenizer add-image-token SRC --out PATH`; an export of the run also holds it)';
}

/** Data text's ids and how many literal special-token strings it held (kept as plain text). */
export interface PlainTextIds {
  ids: number[];
  specialTokenStrings: number;
}

export class TextTokenizer {
  private constructor(
    private readonly inner: Tokenizer,
    /** The same pipeline with no added tokens: encodes the plain segments of data text. */
    private readonly bare: Tokenizer,
    private readonly splitter: AddedTokenSplitter,
    /** Why data text cannot be encoded as transformers does, or null. */
    private readonly plainTextProblem: string | null,
    private readonly specials: ReadonlySet<string>,
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
      throw new Error(`cannot read tokenizer ${absolute}: ${(error as Error).message}${derivedCopyHint(absolute)}`);
    }
    let inner: Tokenizer;
    let bare: Tokenizer;
    let added: AddedTokenEntry[];
    try {
      // Parse from the bytes we hashed, so the hash always describes the tokenizer in use.
      const json = bytes.toString('utf8');
      inner = Tokenizer.fromString(json);
      const parsed = JSON.parse(json) as { added_tokens?: AddedTokenEntry[] | null };
      // The ids the Rust tokenizer gave them on load (it renumbers ids that leave gaps), not the file's.
      added = (parsed.added_tokens ?? []).map((t) => ({ ...t, id: inner.tokenToId(t.content) ?? t.id }));
      bare = Tokenizer.fromString(JSON.stringify({ ...parsed, added_tokens: [] }));
    } catch (error) {
      throw new Error(`cannot load tokenizer ${absolute}: not a valid HF tokenizer.json (${(error as Error).message})`);
    }
    const sha256 = createHash('sha256').update(bytes).digest('hex');
    const specials = new Set(added.filter((t) => t.special).map((t) => t.content));
    return new TextTokenizer(inner, bare, new AddedTokenSplitter(added), unsupportedReason(added), specials, absolute, sha256, inner.getVocabSize(true));
  }

  /** Throws unless data text can be encoded as transformers' split_special_tokens=True does. */
  assertPlainTextSupported(): void {
    if (this.plainTextProblem !== null) throw new Error(`tokenizer ${this.path} cannot encode data text as plain text: ${this.plainTextProblem}`);
  }

  /** Whether the token is an added token marked `"special": true` (so data text can never produce its id). */
  isSpecial(token: string): boolean {
    return this.specials.has(token);
  }

  /**
   * Throws unless each named token is in the vocabulary and marked special: a structural token
   * that is not special would be matched in data text, so a caption could write it.
   */
  assertSpecial(tokens: Record<string, string>): void {
    for (const [role, token] of Object.entries(tokens)) {
      this.tokenId(token);
      if (!this.isSpecial(token)) {
        throw new Error(
          `tokenizer ${this.path}: its ${role} ${JSON.stringify(token)} is not marked special ("special": true in added_tokens), ` +
            'so data text containing that string would become its id; mark it special or choose another token',
        );
      }
    }
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

  /** Ids for data text: special-token strings in it are ordinary text (transformers' split_special_tokens=True). */
  async encodeText(text: string): Promise<number[]> {
    return (await this.encodeTextBatchCounted([text]))[0]!.ids;
  }

  /** encodeText for each text, in one native call. */
  async encodeTextBatch(texts: string[]): Promise<number[][]> {
    return (await this.encodeTextBatchCounted(texts)).map((t) => t.ids);
  }

  /** encodeTextBatch, with the number of literal special-token strings each text held. */
  async encodeTextBatchCounted(texts: readonly string[]): Promise<PlainTextIds[]> {
    this.assertPlainTextSupported();
    const splits = texts.map((text) => this.splitter.split(text));
    const plain = splits.flatMap((s) => s.segments.flatMap((seg) => ('text' in seg ? [seg.text] : [])));
    const encoded = plain.length === 0 ? [] : await this.bare.encodeBatch(plain, NO_SPECIALS);
    let next = 0;
    return splits.map((s) => ({
      ids: s.segments.flatMap((seg) => ('text' in seg ? encoded[next++]!.getIds() : [seg.id])),
      specialTokenStrings: s.specialStrings,
    }));
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
