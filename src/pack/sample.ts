// One pre-training sample (image + caption) as the document the model sees: the run's template
// with {caption} filled in, its single image placeholder expanded to image_grid^2 image-token
// ids, and a loss mask. Lengths can be had without building ids (the packer needs them first).
//
// Rules (docs/formats.md, "Pre-training documents"):
// - The template is split at {caption} and at the image token; each text piece, and the caption,
//   is tokenized on its own and the ids are concatenated. (For the default template
//   "<image>\n{caption}<|im_end|>" this equals tokenizing the whole text: the pieces meet at
//   special tokens or at a newline, where the pre-tokenizer splits anyway.)
// - The caption is data text (DESIGN.md, "Data text is plain text"): encodeTextBatch, so a literal
//   special-token string in it is ordinary tokens, never its id, and nothing is deleted. Such
//   strings are counted (specialTokenStrings), as information. The image, eos and pad tokens must
//   be marked special in the tokenizer, else a caption could write them: refused up front.
// - Loss mask: 1 on caption tokens and on template text after the caption (the eos); 0 on image
//   tokens and on template text before the caption.
// - Overlong (> seq_len): 'truncate' cuts caption tokens from the end and keeps the image and the
//   template's closing text (so a truncated document still ends with its eos); 'drop' drops it.
//   A caption with no tokens (empty) is dropped either way.
import type { RunConfig } from '../config/schema.js';
import { imageTokensPerImage } from '../config/schema.js';
import { prepareImage } from '../images/image.js';
import type { TextTokenizer } from '../tokenize/tokenizer.js';

const CAPTION_SLOT = '{caption}';

export type TemplatePiece = { kind: 'text'; ids: Int32Array; loss: 0 | 1 } | { kind: 'image' } | { kind: 'caption' };

/** Everything needed to lay out a document, computed once per run from the config and tokenizer. */
export interface DocumentLayout {
  pieces: TemplatePiece[];
  imageTokenId: number;
  imageTokensPerImage: number;
  eosId: number;
  padId: number;
  seqLen: number;
  overlong: 'truncate' | 'drop';
  /** Tokens of a document besides its caption: template text plus the expanded image. */
  fixedTokens: number;
}

type DocumentOutcome = 'kept' | 'truncated' | 'dropped_overlong' | 'dropped_empty';

/** A caption tokenized as plain text, and how many literal special-token strings it held. */
export interface CaptionTokens {
  ids: Int32Array;
  specialTokenStrings: number;
}

/** A document's token ids and loss mask (same length); `truncatedTokens` caption tokens were cut. */
export interface DocumentTokens {
  ids: Int32Array;
  loss: Uint8Array;
  truncatedTokens: number;
}

export interface DocumentCounts {
  documents: number;
  kept: number;
  truncated: number;
  droppedOverlong: number;
  droppedEmpty: number;
  /** Caption tokens cut from truncated documents, in total. */
  truncatedTokens: number;
  /** Literal special-token strings met in data text and tokenized as plain text (information: nothing is removed). */
  specialTokenStrings: number;
}

export function emptyCounts(): DocumentCounts {
  return { documents: 0, kept: 0, truncated: 0, droppedOverlong: 0, droppedEmpty: 0, truncatedTokens: 0, specialTokenStrings: 0 };
}

export function addCounts(into: DocumentCounts, more: DocumentCounts): DocumentCounts {
  for (const k of Object.keys(into) as Array<keyof DocumentCounts>) into[k] += more[k];
  return into;
}

function occurrences(text: string, needle: string): number {
  return text.split(needle).length - 1;
}

/**
 * Splits the template into text pieces, the image and the caption. It must hold {caption} once
 * and the image token once (a pre-training document carries exactly one image).
 */
function parseTemplate(template: string, imageToken: string): Array<{ kind: 'text'; text: string } | { kind: 'image' } | { kind: 'caption' }> {
  const captions = occurrences(template, CAPTION_SLOT);
  if (captions !== 1) throw new Error(`data.pretrain_template must contain {caption} exactly once, found ${captions} in ${JSON.stringify(template)}`);
  const images = occurrences(template, imageToken);
  if (images !== 1) {
    throw new Error(`data.pretrain_template must contain the image token ${JSON.stringify(imageToken)} exactly once, found ${images} in ${JSON.stringify(template)}`);
  }
  const out: Array<{ kind: 'text'; text: string } | { kind: 'image' } | { kind: 'caption' }> = [];
  const [beforeCaption, afterCaption] = template.split(CAPTION_SLOT) as [string, string];
  const pushText = (text: string) => {
    if (text.length > 0) out.push({ kind: 'text', text });
  };
  const pushWithImage = (text: string) => {
    const parts = text.split(imageToken);
    pushText(parts[0]!);
    if (parts.length > 1) {
      out.push({ kind: 'image' });
      pushText(parts[1]!);
    }
  };
  pushWithImage(beforeCaption);
  out.push({ kind: 'caption' });
  pushWithImage(afterCaption);
  return out;
}

/** The document layout of a run: template pieces tokenized, special ids looked up, limits checked. */
export async function documentLayout(config: RunConfig, tokenizer: TextTokenizer): Promise<DocumentLayout> {
  const { image_token: imageToken, eos_token: eosToken, pad_token: padToken } = config.tokenizer;
  tokenizer.assertSpecial({ 'tokenizer.image_token': imageToken, 'tokenizer.eos_token': eosToken, 'tokenizer.pad_token': padToken });
  tokenizer.assertPlainTextSupported();
  const parsed = parseTemplate(config.data.pretrain_template, imageToken);
  const texts = parsed.flatMap((p) => (p.kind === 'text' ? [p.text] : []));
  const encoded = await tokenizer.encodeBatch(texts);
  const imageTokenId = tokenizer.tokenId(imageToken);
  const perImage = imageTokensPerImage(config);
  let afterCaption = false;
  let next = 0;
  const pieces: TemplatePiece[] = parsed.map((p) => {
    if (p.kind === 'caption') afterCaption = true;
    if (p.kind !== 'text') return p;
    const ids = Int32Array.from(encoded[next++]!);
    if (ids.includes(imageTokenId)) throw new Error(`data.pretrain_template text ${JSON.stringify(p.text)} tokenizes to the image token`);
    return { kind: 'text', ids, loss: afterCaption ? 1 : 0 };
  });
  const textTokens = pieces.reduce((n, p) => n + (p.kind === 'text' ? p.ids.length : 0), 0);
  const fixedTokens = textTokens + perImage;
  const seqLen = config.data.seq_len;
  if (fixedTokens + 1 > seqLen) {
    throw new Error(
      `data.seq_len ${seqLen} cannot hold one pre-training document: the image takes ${perImage} tokens (image_grid ${config.image_grid}^2) ` +
        `and the template ${textTokens} more, leaving no room for a caption token`,
    );
  }
  return {
    pieces,
    imageTokenId,
    imageTokensPerImage: perImage,
    eosId: tokenizer.tokenId(eosToken),
    padId: tokenizer.tokenId(padToken),
    seqLen,
    overlong: config.data.overlong,
    fixedTokens,
  };
}

/** What happens to a document whose caption has `captionTokens` tokens (pure; no tokenizer needed). */
function documentOutcome(layout: Pick<DocumentLayout, 'fixedTokens' | 'seqLen' | 'overlong'>, captionTokens: number): DocumentOutcome {
  if (captionTokens <= 0) return 'dropped_empty';
  if (layout.fixedTokens + captionTokens <= layout.seqLen) return 'kept';
  return layout.overlong === 'truncate' ? 'truncated' : 'dropped_overlong';
}

/** The document's length in tokens as packed (image tokens included), or 0 when it is dropped (pure). */
export function documentLength(layout: Pick<DocumentLayout, 'fixedTokens' | 'seqLen' | 'overlong'>, captionTokens: number): number {
  const outcome = documentOutcome(layout, captionTokens);
  if (outcome === 'dropped_empty' || outcome === 'dropped_overlong') return 0;
  return Math.min(layout.fixedTokens + captionTokens, layout.seqLen);
}

/** Ids and loss mask of the document for an already tokenized caption, or null when it is dropped (pure). */
export function assembleDocument(layout: DocumentLayout, captionIds: Int32Array): DocumentTokens | null {
  const length = documentLength(layout, captionIds.length);
  if (length === 0) return null;
  const keep = length - layout.fixedTokens;
  const ids = new Int32Array(length);
  const loss = new Uint8Array(length);
  let at = 0;
  for (const piece of layout.pieces) {
    if (piece.kind === 'image') {
      ids.fill(layout.imageTokenId, at, at + layout.imageTokensPerImage);
      at += layout.imageTokensPerImage;
    } else if (piece.kind === 'caption') {
      ids.set(captionIds.subarray(0, keep), at);
      loss.fill(1, at, at + keep);
      at += keep;
    } else {
      ids.set(piece.ids, at);
      loss.fill(piece.loss, at, at + piece.ids.length);
      at += piece.ids.length;
    }
  }
  return { ids, loss, truncatedTokens: captionIds.length - keep };
}

/** Tally one document into `counts`. */
function countDocument(counts: DocumentCounts, layout: DocumentLayout, caption: CaptionTokens): DocumentOutcome {
  const outcome = documentOutcome(layout, caption.ids.length);
  counts.documents++;
  counts.specialTokenStrings += caption.specialTokenStrings;
  if (outcome === 'kept') counts.kept++;
  else if (outcome === 'truncated') {
    counts.truncated++;
    counts.truncatedTokens += caption.ids.length - (layout.seqLen - layout.fixedTokens);
  } else if (outcome === 'dropped_overlong') counts.droppedOverlong++;
  else counts.droppedEmpty++;
  return outcome;
}

/** Builds pre-training documents for one run: tokenizes captions in batches and lays them out. */
export class PretrainDocuments {
  private constructor(
    readonly layout: DocumentLayout,
    private readonly tokenizer: TextTokenizer,
  ) {}

  static async create(config: RunConfig, tokenizer: TextTokenizer): Promise<PretrainDocuments> {
    return new PretrainDocuments(await documentLayout(config, tokenizer), tokenizer);
  }

  /** Tokenizes captions as plain text in one native batch call. */
  async tokenizeCaptions(captions: readonly string[]): Promise<CaptionTokens[]> {
    const encoded = await this.tokenizer.encodeTextBatchCounted(captions);
    return encoded.map((e, i) => {
      const ids = Int32Array.from(e.ids);
      // Cannot happen with a special image token (checked in documentLayout); the packer's
      // image/ids bookkeeping would silently break if it did.
      if (ids.includes(this.layout.imageTokenId)) throw new Error(`caption ${JSON.stringify(captions[i])} tokenizes to the image token`);
      return { ids, specialTokenStrings: e.specialTokenStrings };
    });
  }

  /** Packed length of each caption's document (0 = dropped) and the counts, without building ids. */
  async lengths(captions: readonly string[]): Promise<{ lengths: Int32Array; counts: DocumentCounts }> {
    const tokens = await this.tokenizeCaptions(captions);
    const counts = emptyCounts();
    const lengths = new Int32Array(tokens.length);
    tokens.forEach((t, i) => {
      countDocument(counts, this.layout, t);
      lengths[i] = documentLength(this.layout, t.ids.length);
    });
    return { lengths, counts };
  }

  /** Each caption's document (null = dropped, see counts) in input order. */
  async build(captions: readonly string[]): Promise<{ docs: Array<DocumentTokens | null>; counts: DocumentCounts }> {
    const tokens = await this.tokenizeCaptions(captions);
    const counts = emptyCounts();
    const docs = tokens.map((t) => {
      countDocument(counts, this.layout, t);
      return assembleDocument(this.layout, t.ids);
    });
    return { docs, counts };
  }
}

/** The image as the packed shard stores it: JPEG at model.vision.image_size, resized per data.resize. */
export function prepareDocumentImage(config: RunConfig, data: Buffer): Promise<Buffer> {
  return prepareImage(data, { size: config.model.vision.image_size, mode: config.data.resize });
}
