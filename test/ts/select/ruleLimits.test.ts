// Hostile rules: deep nesting and huge rules get a clean LoomError naming the column, never a
// stack overflow; random strings never make the parser throw anything but a LoomError.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { formatRule, MAX_RULE_ATOMS, MAX_RULE_DEPTH, parseRule } from '../../../src/select/rule.js';
import { evaluateTree } from '../../../src/select/evaluate.js';
import { LoomError } from '../../../src/util/errors.js';

function errorOf(rule: string): LoomError {
  try {
    parseRule(rule);
  } catch (err) {
    assert.ok(err instanceof LoomError, `not a LoomError: ${String(err).slice(0, 200)}`);
    return err;
  }
  assert.fail('the rule parsed');
}

test('20,000 nested parentheses or negations are refused at the first level past the limit', () => {
  for (const open of ['(', '!', '!(']) {
    const rule = open.repeat(20_000) + 'clip.cosine > 1' + (open.includes('(') ? ')'.repeat(20_000) : '');
    const err = errorOf(rule);
    const column = MAX_RULE_DEPTH + 1; // each '(' and each '!' is a level
    assert.match(err.message, new RegExp(`nest deeper than ${MAX_RULE_DEPTH} levels at column ${column}\\n`));
    assert.equal(err.exitCode, 2);
    assert.ok(err.message.length < 400, 'the long rule is shown as an excerpt');
    const [, shown, caret] = err.message.split('\n');
    assert.ok(['(', '!'].includes(shown![caret!.indexOf('^')]!), 'the caret points at the offending token');
  }
});

test('nesting up to the limit parses, and evaluates and prints without trouble', () => {
  const rule = '('.repeat(MAX_RULE_DEPTH) + 'clip.cosine > 1' + ')'.repeat(MAX_RULE_DEPTH);
  const parsed = parseRule(rule);
  assert.equal(formatRule(parsed.root), 'clip.cosine > 1');
  const nots = parseRule('!'.repeat(MAX_RULE_DEPTH) + 'clip.cosine > 1');
  assert.equal(evaluateTree(nots.root, [new Uint8Array([1])], 1).length, 1);
});

test('a rule with too many comparisons is refused; the most allowed still evaluate', () => {
  const atoms = (n: number) => Array.from({ length: n }, () => 'clip.cosine > 1').join(' & ');
  const longest = parseRule(atoms(MAX_RULE_ATOMS));
  assert.equal(longest.atoms.length, MAX_RULE_ATOMS);
  const verdicts = longest.atoms.map(() => new Uint8Array([1, 0]));
  assert.equal(evaluateTree(longest.root, verdicts, 2).length, 2);
  assert.ok(formatRule(longest.root).length > 0);
  assert.match(errorOf(atoms(20_000)).message, new RegExp(`more than ${MAX_RULE_ATOMS} comparisons at column ${MAX_RULE_ATOMS * 18 + 1}\\n`));
});

test('fuzz: random rule strings give a parse or a LoomError with a column, nothing else', () => {
  const piece = fc.constantFrom('clip.cosine', 'dfn.x', 'top(', 'bottom(', 'clip', '.', ',', ')', '(', '!', '&', '|', '>=', '<', '==', '=', '0.5', '-3', '1e999', ' ', '#', 'é', '\u0000');
  const ruleArb = fc.oneof(fc.array(piece, { maxLength: 40 }).map((p) => p.join('')), fc.string({ maxLength: 60 }), fc.string({ unit: 'binary', maxLength: 30 }));
  fc.assert(
    fc.property(ruleArb, (rule) => {
      try {
        parseRule(rule);
      } catch (err) {
        assert.ok(err instanceof LoomError, `${JSON.stringify(rule)}: ${String(err)}`);
        assert.match(err.message, /^rule: .* at column \d+\n/);
      }
    }),
    { numRuns: 3000 },
  );
});
