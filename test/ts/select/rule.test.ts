import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { formatRule, parseRule, neededColumns, type RuleNode } from '../../../src/select/rule.js';
import { evaluateTree, FALSE, TRUE, UNKNOWN } from '../../../src/select/evaluate.js';
import { LoomError } from '../../../src/util/errors.js';

test('atoms, functions and precedence: ! binds tightest, then &, then |', () => {
  const r = parseRule('top(dfn.cosine, 0.15) | mlmf.semantic_understanding >= 85 & !clip.cosine < -1e-2');
  assert.equal(formatRule(r.root), '(top(dfn.cosine, 0.15) | (mlmf.semantic_understanding >= 85 & !clip.cosine < -0.01))');
  assert.deepEqual(r.atoms.map((a) => a.text), ['top(dfn.cosine, 0.15)', 'mlmf.semantic_understanding >= 85', 'clip.cosine < -1e-2']);
  assert.deepEqual(r.atoms.map((a) => a.id), [0, 1, 2]);
  const grouped = parseRule('(a.x > 1 | b-2.y <= .5) & bottom(a.x,1)');
  assert.equal(formatRule(grouped.root), '((a.x > 1 | b-2.y <= 0.5) & bottom(a.x, 1))');
  assert.deepEqual([...neededColumns(grouped)].map(([s, c]) => [s, [...c]]), [['a', ['x']], ['b-2', ['y']]]);
  assert.equal(formatRule(parseRule('clip.cosine==0.3').root), 'clip.cosine == 0.3');
});

function errorOf(rule: string): LoomError {
  try {
    parseRule(rule);
  } catch (err) {
    assert.ok(err instanceof LoomError, `not a LoomError: ${String(err)}`);
    return err;
  }
  assert.fail(`rule ${JSON.stringify(rule)} parsed`);
}

test('errors name the column of the problem and show a caret under it', () => {
  const cases: Array<[string, number, RegExp]> = [
    ['', 1, /empty/],
    ['clip.cosine >= ', 16, /expected a number/],
    ['clip.cosine => 3', 13, /unexpected '='/],
    ['clip.cosine = 3', 13, /use '=='/],
    ['clip >= 3', 6, /expected '\.'/],
    ['top(clip.cosine, 1.5)', 18, /not between 0 and 1/],
    ['top(clip.cosine 0.5)', 17, /expected ','/],
    ['(clip.cosine > 1', 17, /expected '\)'/],
    ['clip.cosine > 1 clip.cosine < 2', 17, /unexpected 'clip'/],
    ['Clip.cosine > 1', 1, /must match/],
    ['clip.cosine > 1 & ', 19, /expected a score column/],
    ['clip.cosine > 1 # x', 17, /unexpected character "#"/],
    ['top(clip.cosine, x)', 18, /expected a fraction/],
  ];
  for (const [rule, column, message] of cases) {
    const err = errorOf(rule);
    assert.match(err.message, message, rule);
    assert.match(err.message, new RegExp(`at column ${column}\\n`), `${rule}: ${err.message}`);
    const caretLine = err.message.split('\n')[2]!;
    assert.equal(caretLine.indexOf('^') - 2, column - 1, `${rule}: caret`);
    assert.equal(err.exitCode, 2);
  }
});

const refArb = fc.record({ scorer: fc.constantFrom('clip', 'dfn', 'ml-m_2'), column: fc.constantFrom('cosine', 'semantic_understanding') });
const numberArb = fc.double({ min: -1e6, max: 1e6, noNaN: true, noDefaultInfinity: true });
const atomArb: fc.Arbitrary<RuleNode> = fc.oneof(
  fc.record({ ref: refArb, op: fc.constantFrom('>=', '>', '<=', '<', '==' as const), value: numberArb }).map(
    ({ ref, op, value }): RuleNode => ({ kind: 'atom', atom: { kind: 'compare', id: 0, text: '', ref, op, value } }),
  ),
  fc.record({ ref: refArb, kind: fc.constantFrom('top', 'bottom' as const), fraction: fc.double({ min: 0, max: 1, noNaN: true }) }).map(
    ({ ref, kind, fraction }): RuleNode => ({ kind: 'atom', atom: { kind, id: 0, text: '', ref, fraction } }),
  ),
);
const treeArb = fc.letrec<{ node: RuleNode }>((tie) => ({
  node: fc.oneof(
    { depthSize: 'small', withCrossShrink: true },
    atomArb,
    tie('node').map((expr): RuleNode => ({ kind: 'not', expr })),
    fc.record({ kind: fc.constantFrom('and', 'or' as const), left: tie('node'), right: tie('node') }).map((n): RuleNode => n),
  ),
})).node;

test('property: formatting a rule tree and parsing it back gives the same tree', () => {
  fc.assert(
    fc.property(treeArb, (tree) => {
      const text = formatRule(tree);
      assert.equal(formatRule(parseRule(text).root), text);
    }),
    { numRuns: 300 },
  );
});

// Kleene logic as numbers: FALSE 0 < UNKNOWN 0.5 < TRUE 1; and = min, or = max, not = 1 - x.
function kleene(node: RuleNode, atomValue: (id: number) => number): number {
  switch (node.kind) {
    case 'atom':
      return atomValue(node.atom.id);
    case 'not':
      return 1 - kleene(node.expr, atomValue);
    case 'and':
      return Math.min(kleene(node.left, atomValue), kleene(node.right, atomValue));
    case 'or':
      return Math.max(kleene(node.left, atomValue), kleene(node.right, atomValue));
  }
}

test('property: rule evaluation is three-valued (Kleene) logic over the atoms', () => {
  const asNumber = [0, 1, 0.5];
  fc.assert(
    fc.property(treeArb, fc.array(fc.array(fc.constantFrom(FALSE, TRUE, UNKNOWN), { minLength: 6, maxLength: 6 }), { minLength: 1, maxLength: 40 }), (tree, rows) => {
      const parsed = parseRule(formatRule(tree));
      const verdicts = parsed.atoms.map((a) => Uint8Array.from(rows, (r) => r[a.id % 6]!));
      const got = evaluateTree(parsed.root, verdicts, rows.length);
      rows.forEach((r, i) => {
        const want = kleene(parsed.root, (id) => asNumber[r[id % 6]!]!);
        assert.equal(asNumber[got[i]!], want);
      });
    }),
    { numRuns: 200 },
  );
});
