// The image placeholder a real LLM tokenizer lacks. Qwen2.5's tokenizer.json has no "<image>", so
// Loom adds one as a *special* added token (data text can then never produce its id, see
// plainText.ts) at the first id after every id the file uses, so no existing id moves.
//
// The edit is textual: the new entry is inserted at the end of the top-level "added_tokens" array
// and every other byte of the file is kept. Re-serialising the parsed JSON would not do: JavaScript
// puts integer-like object keys first, so the 151k-entry vocabulary would come out reordered, and
// the derived file (whose sha256 packs record) would depend on the serialiser. The same input
// always gives the same bytes, so reruns and separate runs agree on the hash.

/** The tokens a run config names (its `tokenizer` section). */
export interface ImageTokenRoles {
  image_token: string;
  eos_token: string;
  pad_token: string;
}

export interface WithImageToken {
  /** The tokenizer.json text holding the image token (the input itself when it already had it). */
  text: string;
  /** The image token's id. */
  id: number;
  /** Whether the token was added (false: the input already had it as a special token). */
  added: boolean;
}

/** The text is not JSON at all (as opposed to a tokenizer.json that cannot take the token). */
export class NotJsonError extends Error {}

interface AddedEntry {
  id: number;
  content: string;
  special: boolean;
}

/**
 * The tokenizer.json text with `tokens.image_token` as a special added token. `where` names the
 * file in errors. Throws when the image token exists but is not special (a caption could write it),
 * is an ordinary vocabulary entry, or when the eos or pad token is missing or not special.
 */
export function addImageToken(text: string, tokens: ImageTokenRoles, where: string): WithImageToken {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (error) {
    throw new NotJsonError(`${where} is not valid JSON: ${(error as Error).message}`);
  }
  if (!isObject(parsed)) throw new Error(`${where}: a tokenizer.json holds a JSON object`);
  const added = addedEntries(parsed.added_tokens, where);
  const vocab = modelVocab(parsed.model, where);
  const byContent = new Map(added.map((t) => [t.content, t]));
  for (const role of ['eos_token', 'pad_token'] as const) {
    const entry = byContent.get(tokens[role]);
    if (entry === undefined) {
      throw new Error(
        `${where}: tokenizer.${role} ${JSON.stringify(tokens[role])} is not among its added tokens; ` +
          `set tokenizer.${role} to one of its special tokens (${specials(added)})`,
      );
    }
    if (!entry.special) throw new Error(`${where}: tokenizer.${role} ${JSON.stringify(tokens[role])} is an added token not marked special`);
  }
  const image = tokens.image_token;
  if (image.length === 0 || image.trim() !== image) throw new Error(`tokenizer.image_token ${JSON.stringify(image)} must be non-empty, with no leading or trailing whitespace`);
  const existing = byContent.get(image);
  if (existing !== undefined) {
    if (!existing.special) {
      throw new Error(
        `${where}: its image token ${JSON.stringify(image)} (id ${existing.id}) is not marked special, so data text containing ` +
          'that string would become its id; mark it "special": true in added_tokens or choose another tokenizer.image_token',
      );
    }
    return { text, id: existing.id, added: false };
  }
  if (vocab.has(image)) {
    throw new Error(
      `${where}: its image token ${JSON.stringify(image)} is an ordinary entry of the model's vocabulary, which data text ` +
        'can produce; choose another tokenizer.image_token',
    );
  }
  const id = Math.max(vocab.maxId, ...added.map((t) => t.id)) + 1;
  const entry = { id, content: image, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true };
  return { text: insertAddedToken(text, entry, where), id, added: true };
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function specials(added: readonly AddedEntry[]): string {
  const names = added.filter((t) => t.special).map((t) => JSON.stringify(t.content));
  return names.length === 0 ? 'it has none' : names.slice(0, 8).join(', ') + (names.length > 8 ? ', ...' : '');
}

function addedEntries(value: unknown, where: string): AddedEntry[] {
  if (value === undefined || value === null) return [];
  if (!Array.isArray(value)) throw new Error(`${where}: added_tokens is not an array`);
  return value.map((t, i) => {
    if (!isObject(t) || !Number.isSafeInteger(t.id) || (t.id as number) < 0 || typeof t.content !== 'string') {
      throw new Error(`${where}: added_tokens[${i}] needs an integer id >= 0 and a string content`);
    }
    return { id: t.id as number, content: t.content, special: t.special === true };
  });
}

/** The model's own vocabulary: its entries and its largest id. */
function modelVocab(model: unknown, where: string): { has: (token: string) => boolean; maxId: number } {
  const vocab = isObject(model) ? model.vocab : undefined;
  if (isObject(vocab)) {
    // BPE, WordPiece, WordLevel: token -> id.
    let maxId = -1;
    for (const [token, id] of Object.entries(vocab)) {
      if (!Number.isSafeInteger(id) || (id as number) < 0) throw new Error(`${where}: model.vocab[${JSON.stringify(token)}] is not an id`);
      if ((id as number) > maxId) maxId = id as number;
    }
    return { has: (token) => Object.hasOwn(vocab, token), maxId };
  }
  if (Array.isArray(vocab)) {
    // Unigram: [[piece, score], ...], the id is the index.
    const pieces = new Set(vocab.map((entry) => (Array.isArray(entry) ? entry[0] : undefined)));
    return { has: (token) => pieces.has(token), maxId: vocab.length - 1 };
  }
  throw new Error(`${where}: model.vocab is missing; cannot tell which ids the tokenizer uses`);
}

/** `text` with `entry` appended to its top-level added_tokens array, in the array's own layout. */
function insertAddedToken(text: string, entry: object, where: string): string {
  const span = topLevelValue(text, 'added_tokens');
  const compact = JSON.stringify(entry);
  if (span === null) {
    // A tokenizer.json without the key: put it first, where HF writes it after "version"/"truncation"/"padding".
    const open = text.indexOf('{');
    return `${text.slice(0, open + 1)}"added_tokens":[${compact}],${text.slice(open + 1)}`;
  }
  const value = text.slice(span.start, span.end);
  if (value === 'null') return `${text.slice(0, span.start)}[${compact}]${text.slice(span.end)}`;
  if (!value.startsWith('[')) throw new Error(`${where}: added_tokens is not an array`);
  const inner = value.slice(1, -1);
  if (inner.trim() === '') return `${text.slice(0, span.start)}[${compact}]${text.slice(span.end)}`;
  // Insert after the last element, before the whitespace that precedes "]".
  const closing = span.end - 1;
  let lastElementEnd = closing;
  while (lastElementEnd > span.start && /\s/.test(text[lastElementEnd - 1]!)) lastElementEnd--;
  let piece: string;
  const firstLine = /^\[\r?\n([ \t]*)/.exec(value);
  if (firstLine !== null) {
    // Pretty-printed (HF's serde output): one element per block at the first element's indent.
    const indent = firstLine[1]!;
    const newline = value.includes('\r\n') ? '\r\n' : '\n';
    piece = `,${newline}${indent}${JSON.stringify(entry, null, 2).split('\n').join(newline + indent)}`;
  } else {
    piece = `,${compact}`;
  }
  return text.slice(0, lastElementEnd) + piece + text.slice(lastElementEnd);
}

/** The [start, end) span of the value of a top-level key of a JSON object text, or null when absent. */
export function topLevelValue(text: string, key: string): { start: number; end: number } | null {
  let i = skipSpace(text, 0);
  if (text[i] !== '{') return null;
  i = skipSpace(text, i + 1);
  if (text[i] === '}') return null;
  for (;;) {
    const keyEnd = stringEnd(text, i);
    const name = JSON.parse(text.slice(i, keyEnd)) as string;
    i = skipSpace(text, keyEnd);
    if (text[i] !== ':') throw new Error(`malformed JSON at offset ${i}`);
    const start = skipSpace(text, i + 1);
    const end = valueEnd(text, start);
    if (name === key) return { start, end };
    i = skipSpace(text, end);
    if (text[i] === '}') return null;
    if (text[i] !== ',') throw new Error(`malformed JSON at offset ${i}`);
    i = skipSpace(text, i + 1);
  }
}

function skipSpace(text: string, i: number): number {
  while (i < text.length && (text[i] === ' ' || text[i] === '\n' || text[i] === '\r' || text[i] === '\t')) i++;
  return i;
}

/** The index just past the string literal starting at i. */
function stringEnd(text: string, i: number): number {
  if (text[i] !== '"') throw new Error(`malformed JSON at offset ${i}: expected a string`);
  for (let j = i + 1; j < text.length; j++) {
    if (text[j] === '\\') j++;
    else if (text[j] === '"') return j + 1;
  }
  throw new Error('malformed JSON: unterminated string');
}

/** The index just past the JSON value starting at i (the text was parsed already, so it is valid). */
function valueEnd(text: string, i: number): number {
  const first = text[i];
  if (first === '"') return stringEnd(text, i);
  if (first === '{' || first === '[') {
    let depth = 0;
    for (let j = i; j < text.length; j++) {
      const c = text[j];
      if (c === '"') j = stringEnd(text, j) - 1;
      else if (c === '{' || c === '[') depth++;
      else if (c === '}' || c === ']') {
        depth--;
        if (depth === 0) return j + 1;
      }
    }
    throw new Error('malformed JSON: unterminated value');
  }
  let j = i;
  while (j < text.length && !/[\s,}\]]/.test(text[j]!)) j++;
  return j;
}
