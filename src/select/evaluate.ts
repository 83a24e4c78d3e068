// Evaluates a parsed rule over one shard's joined rows with three-valued (Kleene) logic:
// an atom is UNKNOWN for a row that has no score for its column (the sample is missing from
// that scorer's sidecar, or its score is NaN). `!UNKNOWN` stays UNKNOWN, `UNKNOWN & FALSE` is
// FALSE, `UNKNOWN | TRUE` is TRUE; a row is kept only when the whole rule is TRUE.
import type { Atom, CompareOp, RuleNode } from './rule.js';

export const FALSE = 0;
export const TRUE = 1;
export const UNKNOWN = 2;

/** An atom after top/bottom fractions were turned into thresholds. */
export interface ResolvedAtom {
  atom: Atom;
  op: CompareOp;
  threshold: number;
}

export function compare(op: CompareOp, x: number, t: number): boolean {
  switch (op) {
    case '>=':
      return x >= t;
    case '>':
      return x > t;
    case '<=':
      return x <= t;
    case '<':
      return x < t;
    case '==':
      return x === t;
  }
}

/** One tri-state verdict per row for the atom, given its column aligned with the rows (NaN = no score). */
export function evaluateAtom(resolved: ResolvedAtom, values: Float64Array): Uint8Array {
  const out = new Uint8Array(values.length);
  const { op, threshold } = resolved;
  for (let i = 0; i < values.length; i++) {
    const x = values[i]!;
    out[i] = Number.isNaN(x) ? UNKNOWN : compare(op, x, threshold) ? TRUE : FALSE;
  }
  return out;
}

/** Combines per-atom verdicts (indexed by atom id) following the rule tree. */
export function evaluateTree(node: RuleNode, atomVerdicts: Uint8Array[], rows: number): Uint8Array {
  switch (node.kind) {
    case 'atom':
      return atomVerdicts[node.atom.id]!;
    case 'not': {
      const inner = evaluateTree(node.expr, atomVerdicts, rows);
      const out = new Uint8Array(rows);
      for (let i = 0; i < rows; i++) out[i] = inner[i] === UNKNOWN ? UNKNOWN : inner[i] === TRUE ? FALSE : TRUE;
      return out;
    }
    case 'and':
    case 'or': {
      const a = evaluateTree(node.left, atomVerdicts, rows);
      const b = evaluateTree(node.right, atomVerdicts, rows);
      const out = new Uint8Array(rows);
      const dominant = node.kind === 'and' ? FALSE : TRUE;
      for (let i = 0; i < rows; i++) {
        const x = a[i]!;
        const y = b[i]!;
        out[i] = x === dominant || y === dominant ? dominant : x === UNKNOWN || y === UNKNOWN ? UNKNOWN : x;
      }
      return out;
    }
  }
}
