// Instruction-tuning conversations (LLaVA conversation JSON) as packed documents: the same packer
// and packed format as pre-training, with `stage: 'sft'` and loss on assistant turns only.
//
// Rules (docs/formats.md, "SFT documents"):
// - Template (Qwen ChatML variant, as the recipe's SFT): "<|im_start|>system\n" + SFT_SYSTEM_PROMPT +
//   "<|im_end|>\n", then per turn "<|im_start|>user\n{value}<|im_end|>\n" or
//   "<|im_start|>assistant\n{value}<|im_end|>\n". Each fixed piece and each value is tokenized on
//   its own and the ids concatenated (pieces meet at special tokens or newlines).
// - Image: the first "<image>" in the first human turn is the placeholder (prepended when the
//   record has an image but no placeholder). As LLaVA's preprocess does, it is removed, the value
//   is trimmed, and the user content becomes image + "\n" + value; the image expands to
//   image_grid^2 image-token ids.
// - Values are data text (DESIGN.md, "Data text is plain text"): encodeTextBatch, so any other
//   literal special-token string ("<image>" after the placeholder, "<|im_start|>", "<|im_end|>")
//   is ordinary tokens and cannot open or close a turn or add an image; nothing is deleted. Such
//   strings are counted (specialTokenStrings). The image, <|im_start|>, eos and pad tokens must be
//   marked special in the tokenizer, else a value could write them: refused up front.
// - Loss mask: 1 on each assistant value's tokens and on its closing <|im_end|>; 0 on the system
//   block, user turns, role headers, image tokens and the "\n" after every <|im_end|> (the model
//   should learn to stop, not what follows the stop).
// - Overlong (> seq_len): 'truncate' drops whole trailing (user, assistant) turn pairs until it
//   fits, keeping at least the first pair; if the first pair alone does not fit, or data.overlong
//   is 'drop', the conversation is dropped. A conversation whose assistant values are all empty
//   is dropped as empty.
import { createHash } from 'node:crypto';
import { readFile, realpath, stat } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import type { RunConfig } from '../config/schema.js';
import { imageTokensPerImage } from '../config/schema.js';
import type { TextTokenizer } from '../tokenize/tokenizer.js';
import { emptyCounts, type DocumentCounts, type DocumentTokens } from './sample.js';
import { checkSftImage, clipDetail, confineImagePath, DEFAULT_MAX_IMAGE_BYTES } from './sftImages.js';

/** The system prompt of every SFT document (the recipe's Qwen ChatML default). */
export const SFT_SYSTEM_PROMPT = 'You are a helpful assistant.';
const IM_START = '<|im_start|>';

export interface SftTurn {
  role: 'user' | 'assistant';
  value: string;
}

/** One well-formed conversation: turns alternate user/assistant, starting with user, in pairs. */
export interface SftRecord {
  id: string;
  /** Absolute path of the image (after readSftJson: its real path under the image root), or null for a text-only conversation. */
  image: string | null;
  turns: SftTurn[];
}

export interface SftBadRecord {
  id: string;
  index: number;
  reason: string;
  /** What exactly is wrong (image reasons name the file); absent for the structural reasons. */
  detail?: string;
}

export type SftEntry = { ok: true; record: SftRecord } | { ok: false; bad: SftBadRecord };

/**
 * Validates one LLaVA record without touching the disk. Image paths are relative to `imageRoot`
 * and must stay under it (sftImages.ts confineImagePath; the file itself is checked by
 * readSftJson). Reasons are short snake_case words (they key the window's bad_reasons).
 */
export function parseSftRecord(raw: unknown, index: number, imageRoot: string): SftEntry {
  const bad = (id: string, reason: string, detail?: string): SftEntry => ({ ok: false, bad: { id, index, reason, ...(detail !== undefined ? { detail } : {}) } });
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) return bad(`#${index}`, 'not_an_object');
  const r = raw as Record<string, unknown>;
  const id = typeof r.id === 'string' && r.id.length > 0 ? r.id : typeof r.id === 'number' ? String(r.id) : null;
  if (id === null) return bad(`#${index}`, 'missing_id');
  let image: string | null = null;
  if (r.image !== undefined && r.image !== null) {
    if (typeof r.image !== 'string' || r.image.length === 0) return bad(id, 'image_not_a_string');
    const confined = confineImagePath(imageRoot, r.image);
    if (!confined.ok) return bad(id, confined.reason, clipDetail(confined.detail));
    image = confined.path;
  }
  if (!Array.isArray(r.conversations) || r.conversations.length === 0) return bad(id, 'no_conversations');
  if (r.conversations.length % 2 !== 0) return bad(id, 'unpaired_turn');
  const turns: SftTurn[] = [];
  for (const [i, t] of (r.conversations as unknown[]).entries()) {
    if (t === null || typeof t !== 'object') return bad(id, 'turn_not_an_object');
    const { from, value } = t as Record<string, unknown>;
    const expected = i % 2 === 0 ? 'human' : 'gpt';
    if (from !== expected) return bad(id, 'turns_not_alternating_human_gpt');
    if (typeof value !== 'string') return bad(id, 'turn_value_not_a_string');
    turns.push({ role: i % 2 === 0 ? 'user' : 'assistant', value });
  }
  return { ok: true, record: { id, image, turns } };
}

export interface SftReadOptions {
  /** The folder image paths are relative to and confined to; default the JSON file's folder. */
  imageRoot?: string;
  /** Larger image files are bad records (image_too_big), never read; default DEFAULT_MAX_IMAGE_BYTES. */
  maxImageBytes?: number;
}

/** Image files checked at once: stat, realpath and a header read each, mostly waiting on the disk. */
const IMAGE_CHECK_CONCURRENCY = 16;

/**
 * Every entry of a LLaVA conversation JSON in file order, each image file checked (sftImages.ts)
 * so that pass 2 packs only what pass 1 found good; only an unreadable file or image root is fatal.
 */
export async function readSftJson(path: string, options: SftReadOptions = {}): Promise<SftEntry[]> {
  let raw: unknown;
  try {
    raw = JSON.parse(await readFile(path, 'utf8'));
  } catch (err) {
    throw new Error(`${path}: cannot read LLaVA conversation JSON (${(err as Error).message})`);
  }
  if (!Array.isArray(raw)) throw new Error(`${path}: expected a JSON array of conversations, got ${typeof raw}`);
  const imageRoot = resolve(options.imageRoot ?? dirname(resolve(path)));
  const realRoot = await realImageRoot(imageRoot);
  const maxBytes = options.maxImageBytes ?? DEFAULT_MAX_IMAGE_BYTES;
  const entries = raw.map((r, i) => parseSftRecord(r, i, imageRoot));
  let next = 0;
  const checkNext = async (): Promise<void> => {
    while (next < entries.length) {
      const i = next++;
      const entry = entries[i]!;
      if (!entry.ok || entry.record.image === null) continue;
      const checked = await checkSftImage(realRoot, entry.record.image, maxBytes);
      entries[i] = checked.ok
        ? { ok: true, record: { ...entry.record, image: checked.path } }
        : { ok: false, bad: { id: entry.record.id, index: i, reason: checked.reason, detail: clipDetail(checked.detail) } };
    }
  };
  await Promise.all(Array.from({ length: IMAGE_CHECK_CONCURRENCY }, checkNext));
  const seen = new Set<string>();
  return entries.map((entry, i) => {
    if (!entry.ok) return entry;
    // The packed uid is derived from the id, so an id must name one conversation.
    if (seen.has(entry.record.id)) return { ok: false, bad: { id: entry.record.id, index: i, reason: 'duplicate_id' } };
    seen.add(entry.record.id);
    return entry;
  });
}

async function realImageRoot(root: string): Promise<string> {
  try {
    if (!(await stat(root)).isDirectory()) throw new Error('not a directory');
    return await realpath(root);
  } catch (err) {
    throw new Error(`image root ${root}: ${(err as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such directory' : (err as Error).message}`);
  }
}

/** The packed shard uid of a conversation: md5 of its id (32 lowercase hex, as the format requires). */
export function sftUid(id: string): string {
  return createHash('md5').update(id, 'utf8').digest('hex');
}

/** Removes the first <image> placeholder from the first user value, as LLaVA's preprocessing does. */
export function stripImagePlaceholder(value: string, imageToken: string): string {
  const at = value.indexOf(imageToken);
  if (at < 0) return value.trim();
  return (value.slice(0, at) + value.slice(at + imageToken.length)).trim();
}

interface SftLayout {
  system: Int32Array;
  userHead: Int32Array;
  assistantHead: Int32Array;
  imEnd: number;
  newline: Int32Array;
  imageTokenId: number;
  imageTokensPerImage: number;
  seqLen: number;
  overlong: 'truncate' | 'drop';
  imageToken: string;
}

/** A conversation's values tokenized; pair k = (user turn 2k, assistant turn 2k+1). */
interface TokenizedConversation {
  record: SftRecord;
  values: Int32Array[];
  specialTokenStrings: number;
}

export type SftOutcome = 'kept' | 'truncated' | 'dropped_overlong' | 'dropped_empty';

/** Builds SFT documents for one run (stage sft config). */
export class SftDocuments {
  private constructor(
    readonly layout: SftLayout,
    private readonly tokenizer: TextTokenizer,
  ) {}

  static async create(config: RunConfig, tokenizer: TextTokenizer): Promise<SftDocuments> {
    const { image_token: imageToken, eos_token: eos, pad_token: pad } = config.tokenizer;
    if (eos !== '<|im_end|>') throw new Error(`SFT documents use the ChatML template, which ends turns with <|im_end|>; tokenizer.eos_token is ${JSON.stringify(eos)}`);
    tokenizer.assertSpecial({ 'tokenizer.image_token': imageToken, 'ChatML turn opener': IM_START, 'tokenizer.eos_token': eos, 'tokenizer.pad_token': pad });
    tokenizer.assertPlainTextSupported();
    const [system, userHead, assistantHead, newline] = (
      await tokenizer.encodeBatch([`${IM_START}system\n${SFT_SYSTEM_PROMPT}<|im_end|>\n`, `${IM_START}user\n`, `${IM_START}assistant\n`, '\n'])
    ).map((ids) => Int32Array.from(ids)) as [Int32Array, Int32Array, Int32Array, Int32Array];
    const layout: SftLayout = {
      system,
      userHead,
      assistantHead,
      imEnd: tokenizer.tokenId(eos),
      newline,
      imageTokenId: tokenizer.tokenId(imageToken),
      imageTokensPerImage: imageTokensPerImage(config),
      seqLen: config.data.seq_len,
      overlong: config.data.overlong,
      imageToken,
    };
    return new SftDocuments(layout, tokenizer);
  }

  private async tokenize(records: readonly SftRecord[]): Promise<TokenizedConversation[]> {
    const texts = records.flatMap((r) =>
      r.turns.map((t, i) => (i === 0 && r.image !== null ? stripImagePlaceholder(t.value, this.layout.imageToken) : t.value)),
    );
    const encoded = await this.tokenizer.encodeTextBatchCounted(texts);
    let next = 0;
    return records.map((record) => {
      let specialTokenStrings = 0;
      const values = record.turns.map(() => {
        const e = encoded[next++]!;
        specialTokenStrings += e.specialTokenStrings;
        const ids = Int32Array.from(e.ids);
        // Cannot happen with a special image token (checked in create); assemble() would miscount images.
        if (ids.includes(this.layout.imageTokenId)) throw new Error(`conversation ${record.id}: a value tokenizes to the image token`);
        return ids;
      });
      return { record, values, specialTokenStrings };
    });
  }

  /** Tokens of pair k (user + assistant turn, with headers and closers); the image goes in pair 0. */
  private pairLength(c: TokenizedConversation, k: number): number {
    const L = this.layout;
    const image = k === 0 && c.record.image !== null ? L.imageTokensPerImage + L.newline.length : 0;
    const closer = 1 + L.newline.length;
    return L.userHead.length + image + c.values[2 * k]!.length + closer + L.assistantHead.length + c.values[2 * k + 1]!.length + closer;
  }

  /** How many pairs are kept (0 = dropped), the outcome, and the packed length. */
  private plan(c: TokenizedConversation): { pairs: number; outcome: SftOutcome; length: number; cut: number } {
    const pairs = c.values.length / 2;
    let hasAnswer = false;
    for (let k = 0; k < pairs; k++) if (c.values[2 * k + 1]!.length > 0) hasAnswer = true;
    if (!hasAnswer) return { pairs: 0, outcome: 'dropped_empty', length: 0, cut: 0 };
    const lengths = Array.from({ length: pairs }, (_, k) => this.pairLength(c, k));
    const full = this.layout.system.length + lengths.reduce((a, b) => a + b, 0);
    if (full <= this.layout.seqLen) return { pairs, outcome: 'kept', length: full, cut: 0 };
    if (this.layout.overlong === 'drop') return { pairs: 0, outcome: 'dropped_overlong', length: 0, cut: 0 };
    let keep = pairs;
    let length = full;
    while (keep > 1 && length > this.layout.seqLen) length -= lengths[--keep]!;
    if (length > this.layout.seqLen) return { pairs: 0, outcome: 'dropped_overlong', length: 0, cut: 0 };
    return { pairs: keep, outcome: 'truncated', length, cut: full - length };
  }

  private count(counts: DocumentCounts, c: TokenizedConversation, p: ReturnType<SftDocuments['plan']>): void {
    counts.documents++;
    counts.specialTokenStrings += c.specialTokenStrings;
    if (p.outcome === 'kept') counts.kept++;
    else if (p.outcome === 'truncated') {
      counts.truncated++;
      counts.truncatedTokens += p.cut;
    } else if (p.outcome === 'dropped_overlong') counts.droppedOverlong++;
    else counts.droppedEmpty++;
  }

  /** Packed length of each conversation's document (0 = dropped) and the counts, without building ids. */
  async lengths(records: readonly SftRecord[]): Promise<{ lengths: Int32Array; counts: DocumentCounts }> {
    const counts = emptyCounts();
    const tokenized = await this.tokenize(records);
    const lengths = Int32Array.from(tokenized, (c) => {
      const p = this.plan(c);
      this.count(counts, c, p);
      return p.length;
    });
    return { lengths, counts };
  }

  /** Each conversation's document (null = dropped, see counts) in input order. */
  async build(records: readonly SftRecord[]): Promise<{ docs: Array<DocumentTokens | null>; counts: DocumentCounts }> {
    const counts = emptyCounts();
    const tokenized = await this.tokenize(records);
    const docs = tokenized.map((c) => {
      const p = this.plan(c);
      this.count(counts, c, p);
      return p.pairs === 0 ? null : this.assemble(c, p.pairs, p.length, p.cut);
    });
    return { docs, counts };
  }

  private assemble(c: TokenizedConversation, pairs: number, length: number, cut: number): DocumentTokens {
    const L = this.layout;
    const ids = new Int32Array(length);
    const loss = new Uint8Array(length);
    let at = 0;
    const put = (piece: Int32Array, trained: 0 | 1) => {
      ids.set(piece, at);
      if (trained) loss.fill(1, at, at + piece.length);
      at += piece.length;
    };
    const closeTurn = (trained: 0 | 1) => {
      ids[at] = L.imEnd;
      loss[at++] = trained;
      put(L.newline, 0);
    };
    put(L.system, 0);
    for (let k = 0; k < pairs; k++) {
      put(L.userHead, 0);
      if (k === 0 && c.record.image !== null) {
        ids.fill(L.imageTokenId, at, at + L.imageTokensPerImage);
        at += L.imageTokensPerImage;
        put(L.newline, 0);
      }
      put(c.values[2 * k]!, 0);
      closeTurn(0);
      put(L.assistantHead, 0);
      put(c.values[2 * k + 1]!, 1);
      closeTurn(1);
    }
    if (at !== length) throw new Error(`conversation ${c.record.id}: assembled ${at} tokens but measured ${length}`);
    return { ids, loss, truncatedTokens: cut };
  }
}
