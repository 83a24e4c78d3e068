// `--set key=value`: how the value text is read (src/config/resolve.ts, parseSetValue). The rule,
// as documented in `--help` and docs/architecture.md: a JSON literal is that JSON value; any other
// text is a string in which \n, \t and \\ are a newline, a tab and one backslash, and any other
// backslash stays as typed. Expectations are written out here or built by an independent model
// of the rule (escapeForSet below), never by the parser itself.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import fc from 'fast-check';

import { applyAssignment, parseSetValue, resolveRunConfig } from '../../../src/config/resolve.js';
import { repoRoot } from '../../../src/util/paths.js';

const BS = '\\';

/** What a user types to get string `s` when `s` is not JSON: each \, newline and tab escaped. */
function escapeForSet(s: string): string {
  let out = '';
  for (const ch of s) out += ch === BS ? BS + BS : ch === '\n' ? BS + 'n' : ch === '\t' ? BS + 't' : ch;
  return out;
}

function isJson(text: string): boolean {
  try {
    JSON.parse(text);
    return true;
  } catch {
    return false;
  }
}

describe('--set values', () => {
  it('JSON literals are JSON values', () => {
    assert.equal(parseSetValue('2048'), 2048);
    assert.equal(parseSetValue('-1.5e-3'), -1.5e-3);
    assert.equal(parseSetValue('true'), true);
    assert.equal(parseSetValue('false'), false);
    assert.equal(parseSetValue('null'), null);
    assert.equal(parseSetValue('"123"'), '123');
    assert.equal(parseSetValue('"a\\nb"'), 'a\nb'); // JSON's own escapes in a quoted string
    assert.deepEqual(parseSetValue('[1, "x", null]'), [1, 'x', null]);
    assert.deepEqual(parseSetValue('{"a": {"b": [true]}}'), { a: { b: [true] } });
  });

  it('other text is a string with \\n, \\t and \\\\ read as printf reads them', () => {
    assert.equal(parseSetValue('<image>\\n{caption}'), '<image>\n{caption}');
    assert.equal(parseSetValue('a\\tb'), 'a\tb');
    assert.equal(parseSetValue('a\\\\nb'), 'a\\nb'); // an escaped backslash, then a plain n
    assert.equal(parseSetValue('C:\\\\data'), 'C:\\data');
    assert.equal(parseSetValue('\\d+\\s'), '\\d+\\s'); // other escapes stay as typed
    assert.equal(parseSetValue('ends with \\'), 'ends with \\');
    assert.equal(parseSetValue('data/shards'), 'data/shards');
    assert.equal(parseSetValue(''), '');
    assert.equal(parseSetValue('True'), 'True'); // not JSON: a string
    assert.equal(parseSetValue('[INST] {caption}'), '[INST] {caption}'); // looks like JSON, is not
    assert.equal(parseSetValue('"unterminated'), '"unterminated');
  });

  it('property: every JSON value, written as JSON, comes back as itself', () => {
    fc.assert(
      fc.property(fc.jsonValue(), (value) => {
        assert.deepEqual(parseSetValue(JSON.stringify(value)), JSON.parse(JSON.stringify(value)));
      }),
      { numRuns: 300 },
    );
  });

  it('property: any string that is not JSON, typed with its \\, newlines and tabs escaped, comes back exactly', () => {
    const text = fc.string({ unit: fc.constantFrom('a', 'n', 't', ' ', '{', '"', '1', '\n', '\t', BS, 'é', '<') });
    fc.assert(
      fc.property(text, (s) => {
        const typed = escapeForSet(s);
        fc.pre(!isJson(typed));
        assert.equal(parseSetValue(typed), s);
      }),
      { numRuns: 500 },
    );
  });

  it('property: text without a backslash that is not JSON is the string as typed', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'grapheme' }), (s) => {
        fc.pre(!s.includes(BS) && !isJson(s));
        assert.equal(parseSetValue(s), s);
      }),
      { numRuns: 300 },
    );
  });

  it('applyAssignment splits at the first "=" only and places the value at the key path', () => {
    assert.deepEqual(applyAssignment({ a: { keep: 1 } }, 'a.b=x=y\\n'), { a: { keep: 1, b: 'x=y\n' } });
  });

  it('a template typed on the command line gets real newlines (resolve, and the CLI end to end)', () => {
    const template = '<image>\\n{caption}\\n';
    const config = resolveRunConfig({ preset: 'tiny', stage: 'pretrain', name: 'x', assignments: [`data.pretrain_template=${template}`] });
    assert.equal(config.data.pretrain_template, '<image>\n{caption}\n');
    const cli = spawnSync(
      process.execPath,
      [join(repoRoot(), 'bin', 'loom.js'), 'config', 'init', '--preset', 'tiny', '--name', 'x', '--set', `data.pretrain_template=${template}`, '--set', 'data.seq_len=512'],
      { encoding: 'utf8' },
    );
    assert.equal(cli.status, 0, cli.stderr);
    const printed = JSON.parse(cli.stdout) as { data: { pretrain_template: string; seq_len: number } };
    assert.equal(printed.data.pretrain_template, '<image>\n{caption}\n');
    assert.equal(printed.data.seq_len, 512);
  });
});
