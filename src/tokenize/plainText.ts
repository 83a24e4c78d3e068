// Data text as plain text: what transformers does with `split_special_tokens=True` (the Rust
// tokenizer's `encode_special_tokens = true`), which the npm binding cannot switch on.
//
// The Rust tokenizer finds added tokens in the raw text leftmost-longest (aho-corasick), and with
// the switch on it drops every match of a `special: true` token, so that text stays in the plain
// segment around it; a match of a `special: false` token (Qwen's <tool_call>, <think>,
// <|fim_prefix|>) still becomes its id. A skipped special match still occupies its span, so a
// non-special token overlapping it is not found either. Each segment between kept matches is
// then normalised, pre-tokenized and run through the model on its own.
//
// We do the same: one regex over all added tokens (alternatives longest first, so at the leftmost
// match position the longest token wins), special matches dropped, and the segments encoded by a
// second Rust tokenizer built from the same tokenizer.json with no added tokens at all (ids of
// the model's vocabulary are explicit in the JSON, so none moves; dropping only the special added
// tokens would renumber the others, because the binding reassigns added-token ids on load).
// Non-special added tokens with lstrip/rstrip/single_word/normalized set would need more of the
// Rust matcher than this; such tokenizers are refused for data text. Checked against transformers
// itself on committed vectors (vectors/tokenizer/plain_text.json).

export interface AddedTokenEntry {
  id: number;
  content: string;
  special: boolean;
  single_word?: boolean;
  lstrip?: boolean;
  rstrip?: boolean;
  normalized?: boolean;
}

/** Plain text between added tokens, or the id of a non-special added token found in the text. */
export type Segment = { text: string } | { id: number };

export interface SplitText {
  segments: Segment[];
  /** Literal special-token strings met (and left as text). */
  specialStrings: number;
}

function escapeRegex(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\/]/gu, '\\$&');
}

/** Why the tokenizer's added tokens cannot be split as transformers does, or null when they can. */
export function unsupportedReason(tokens: readonly AddedTokenEntry[]): string | null {
  for (const t of tokens) {
    if (t.special) continue;
    const flags = (['single_word', 'lstrip', 'rstrip', 'normalized'] as const).filter((f) => t[f] === true);
    if (flags.length > 0) {
      return `its non-special added token ${JSON.stringify(t.content)} sets ${flags.join(', ')}, which Loom's plain-text encoding of data text does not reproduce`;
    }
  }
  return null;
}

export class AddedTokenSplitter {
  private readonly pattern: RegExp | null;
  private readonly byContent: Map<string, AddedTokenEntry>;

  constructor(tokens: readonly AddedTokenEntry[]) {
    this.byContent = new Map(tokens.filter((t) => t.content.length > 0).map((t) => [t.content, t]));
    const contents = [...this.byContent.keys()].sort((a, b) => b.length - a.length || (a < b ? -1 : 1));
    this.pattern = contents.length === 0 ? null : new RegExp(contents.map(escapeRegex).join('|'), 'gu');
  }

  split(text: string): SplitText {
    const segments: Segment[] = [];
    let specialStrings = 0;
    if (this.pattern === null) return { segments: text.length > 0 ? [{ text }] : [], specialStrings };
    let start = 0;
    for (const match of text.matchAll(this.pattern)) {
      const token = this.byContent.get(match[0])!;
      if (token.special) {
        specialStrings++;
        continue;
      }
      if (match.index > start) segments.push({ text: text.slice(start, match.index) });
      segments.push({ id: token.id });
      start = match.index + match[0].length;
    }
    if (start < text.length) segments.push({ text: text.slice(start) });
    return { segments, specialStrings };
  }
}
