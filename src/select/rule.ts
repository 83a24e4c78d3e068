// The selection rule language: atoms over score columns combined with & | ! and parentheses.
//   clip.cosine >= 0.28          absolute threshold (also >, <=, <, ==)
//   top(dfn.cosine, 0.15)        the fraction 0.15 of scored rows with the highest values
//   bottom(clip.cosine, 0.1)     the fraction with the lowest values
//   top(dfn.cosine, 0.15) | mlmf.semantic_understanding >= 85
// `!` binds tightest, then `&`, then `|`. Errors name the 1-based column and show a caret.
import { LoomError, EXIT_USAGE } from '../util/errors.js';

export type CompareOp = '>=' | '>' | '<=' | '<' | '==';

export interface ColumnRef {
  scorer: string;
  column: string;
}

export type Atom =
  | { kind: 'compare'; id: number; text: string; ref: ColumnRef; op: CompareOp; value: number }
  | { kind: 'top' | 'bottom'; id: number; text: string; ref: ColumnRef; fraction: number };

export type RuleNode =
  | { kind: 'atom'; atom: Atom }
  | { kind: 'not'; expr: RuleNode }
  | { kind: 'and' | 'or'; left: RuleNode; right: RuleNode };

export interface ParsedRule {
  source: string;
  root: RuleNode;
  /** Every atom, in the order they appear; atom.id is its index here. */
  atoms: Atom[];
}

export const SCORER_NAME_RE = /^[a-z][a-z0-9_-]*$/;

/** Deepest nesting of '(' and '!' a rule may have: parsing, evaluating and printing recurse, so a
 *  hostile rule of 20,000 '(' would otherwise overflow the stack instead of getting an error. */
export const MAX_RULE_DEPTH = 64;
/** Most atoms in one rule: `a & b & c ...` builds a tree as deep as it is long. */
export const MAX_RULE_ATOMS = 1000;

type Token =
  | { type: 'ident'; text: string; pos: number }
  | { type: 'number'; text: string; value: number; pos: number }
  | { type: 'op'; text: string; pos: number }
  | { type: 'end'; text: ''; pos: number };

const OPERATORS = ['>=', '<=', '==', '>', '<', '&', '|', '!', '(', ')', ',', '.'];
const NUMBER_RE = /^[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?/;
const IDENT_RE = /^[A-Za-z_][A-Za-z0-9_-]*/;

function ruleError(source: string, pos: number, message: string): LoomError {
  // A long rule is shown as the stretch around the problem, so the message stays readable.
  const from = source.length > SHOWN_CHARS ? Math.max(0, Math.min(pos - SHOWN_CHARS / 2, source.length - SHOWN_CHARS)) : 0;
  const head = from > 0 ? '...' : '';
  const tail = from + SHOWN_CHARS < source.length ? '...' : '';
  const caret = ' '.repeat(head.length + pos - from) + '^';
  return new LoomError(`rule: ${message} at column ${pos + 1}\n  ${head}${source.slice(from, from + SHOWN_CHARS)}${tail}\n  ${caret}`, EXIT_USAGE);
}

const SHOWN_CHARS = 120;

function tokenize(source: string): Token[] {
  const tokens: Token[] = [];
  let i = 0;
  while (i < source.length) {
    const ch = source[i]!;
    if (/\s/.test(ch)) {
      i++;
      continue;
    }
    const rest = source.slice(i);
    const prev = tokens[tokens.length - 1];
    // A sign starts a number only where a number may stand (after a comparison or a comma).
    const signAllowed = prev !== undefined && prev.type === 'op' && ['>=', '<=', '==', '>', '<', ','].includes(prev.text);
    const num = NUMBER_RE.exec(rest);
    if (num && (/[\d.]/.test(ch) || signAllowed) && !(ch === '.' && prev?.type === 'ident')) {
      const value = Number(num[0]);
      if (!Number.isFinite(value)) throw ruleError(source, i, `number ${num[0]} is out of range`);
      tokens.push({ type: 'number', text: num[0], value, pos: i });
      i += num[0].length;
      continue;
    }
    const ident = IDENT_RE.exec(rest);
    if (ident) {
      tokens.push({ type: 'ident', text: ident[0], pos: i });
      i += ident[0].length;
      continue;
    }
    const op = OPERATORS.find((o) => rest.startsWith(o));
    if (op) {
      tokens.push({ type: 'op', text: op, pos: i });
      i += op.length;
      continue;
    }
    if (rest.startsWith('=')) throw ruleError(source, i, "unexpected '=' (use '==' to compare)");
    throw ruleError(source, i, `unexpected character ${JSON.stringify(ch)}`);
  }
  tokens.push({ type: 'end', text: '', pos: source.length });
  return tokens;
}

class Parser {
  private i = 0;
  private depth = 0;
  readonly atoms: Atom[] = [];
  constructor(
    private readonly source: string,
    private readonly tokens: Token[],
  ) {}

  parse(): RuleNode {
    if (this.peek().type === 'end') throw ruleError(this.source, 0, 'the rule is empty');
    const node = this.parseOr();
    const t = this.peek();
    if (t.type !== 'end') throw ruleError(this.source, t.pos, `unexpected ${describe(t)} (expected '&', '|' or the end)`);
    return node;
  }

  private peek(): Token {
    return this.tokens[this.i]!;
  }

  private next(): Token {
    return this.tokens[this.i++]!;
  }

  private isOp(text: string): boolean {
    const t = this.peek();
    return t.type === 'op' && t.text === text;
  }

  private expectOp(text: string, what: string): Token {
    const t = this.next();
    if (t.type !== 'op' || t.text !== text) throw ruleError(this.source, t.pos, `expected '${text}' ${what}, found ${describe(t)}`);
    return t;
  }

  private parseOr(): RuleNode {
    let left = this.parseAnd();
    while (this.isOp('|')) {
      this.next();
      left = { kind: 'or', left, right: this.parseAnd() };
    }
    return left;
  }

  private parseAnd(): RuleNode {
    let left = this.parseUnary();
    while (this.isOp('&')) {
      this.next();
      left = { kind: 'and', left, right: this.parseUnary() };
    }
    return left;
  }

  private parseUnary(): RuleNode {
    if (this.isOp('!') || this.isOp('(')) {
      const open = this.next();
      if (++this.depth > MAX_RULE_DEPTH) {
        throw ruleError(this.source, open.pos, `'(' and '!' nest deeper than ${MAX_RULE_DEPTH} levels`);
      }
      let node: RuleNode;
      if (open.text === '!') node = { kind: 'not', expr: this.parseUnary() };
      else {
        node = this.parseOr();
        this.expectOp(')', 'to close the parenthesis');
      }
      this.depth--;
      return node;
    }
    return this.parseAtom();
  }

  private parseAtom(): RuleNode {
    const start = this.peek();
    if (this.atoms.length >= MAX_RULE_ATOMS) throw ruleError(this.source, start.pos, `the rule has more than ${MAX_RULE_ATOMS} comparisons`);
    if (start.type !== 'ident') {
      throw ruleError(this.source, start.pos, `expected a score column (scorer.column), top(...), bottom(...), '!' or '(', found ${describe(start)}`);
    }
    const next = this.tokens[this.i + 1]!;
    if ((start.text === 'top' || start.text === 'bottom') && next.type === 'op' && next.text === '(') {
      this.next();
      this.next();
      const ref = this.parseRef();
      this.expectOp(',', `after the column in ${start.text}(...)`);
      const f = this.next();
      if (f.type !== 'number') throw ruleError(this.source, f.pos, `expected a fraction between 0 and 1, found ${describe(f)}`);
      if (!(f.value >= 0 && f.value <= 1)) throw ruleError(this.source, f.pos, `fraction ${f.text} is not between 0 and 1`);
      const close = this.expectOp(')', `to close ${start.text}(...)`);
      const atom: Atom = { kind: start.text, id: this.atoms.length, text: this.source.slice(start.pos, close.pos + 1), ref, fraction: f.value };
      this.atoms.push(atom);
      return { kind: 'atom', atom };
    }
    const ref = this.parseRef();
    const op = this.next();
    if (op.type !== 'op' || !['>=', '>', '<=', '<', '=='].includes(op.text)) {
      throw ruleError(this.source, op.pos, `expected a comparison (>=, >, <=, <, ==) after ${ref.scorer}.${ref.column}, found ${describe(op)}`);
    }
    const value = this.next();
    if (value.type !== 'number') throw ruleError(this.source, value.pos, `expected a number after '${op.text}', found ${describe(value)}`);
    const atom: Atom = {
      kind: 'compare', id: this.atoms.length, text: this.source.slice(start.pos, value.pos + value.text.length),
      ref, op: op.text as CompareOp, value: value.value,
    };
    this.atoms.push(atom);
    return { kind: 'atom', atom };
  }

  private parseRef(): ColumnRef {
    const scorer = this.next();
    if (scorer.type !== 'ident') throw ruleError(this.source, scorer.pos, `expected a scorer name, found ${describe(scorer)}`);
    if (!SCORER_NAME_RE.test(scorer.text)) {
      throw ruleError(this.source, scorer.pos, `scorer name "${scorer.text}" must match ${SCORER_NAME_RE.source}`);
    }
    this.expectOp('.', `between scorer "${scorer.text}" and its column (write scorer.column)`);
    const column = this.next();
    if (column.type !== 'ident') throw ruleError(this.source, column.pos, `expected a column name after "${scorer.text}.", found ${describe(column)}`);
    return { scorer: scorer.text, column: column.text };
  }
}

function describe(t: Token): string {
  if (t.type === 'end') return 'the end of the rule';
  return `'${t.text}'`;
}

/** Parses a rule; throws a LoomError (exit 2) naming the column of the first problem. */
export function parseRule(source: string): ParsedRule {
  const parser = new Parser(source, tokenize(source));
  const root = parser.parse();
  return { source, root, atoms: parser.atoms };
}

/** Canonical text of a rule tree (fully parenthesised), for summaries and round-trip tests. */
export function formatRule(node: RuleNode): string {
  switch (node.kind) {
    case 'atom':
      return node.atom.kind === 'compare'
        ? `${node.atom.ref.scorer}.${node.atom.ref.column} ${node.atom.op} ${node.atom.value}`
        : `${node.atom.kind}(${node.atom.ref.scorer}.${node.atom.ref.column}, ${node.atom.fraction})`;
    case 'not':
      return `!${formatRule(node.expr)}`;
    default:
      return `(${formatRule(node.left)} ${node.kind === 'and' ? '&' : '|'} ${formatRule(node.right)})`;
  }
}

/** The scorers a rule reads, and for each the columns it needs. */
export function neededColumns(rule: ParsedRule): Map<string, Set<string>> {
  const out = new Map<string, Set<string>>();
  for (const a of rule.atoms) {
    if (!out.has(a.ref.scorer)) out.set(a.ref.scorer, new Set());
    out.get(a.ref.scorer)!.add(a.ref.column);
  }
  return out;
}
