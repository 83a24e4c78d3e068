// Data text is plain text: properties of encodeText beyond the transformers vectors.
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';

import fc from 'fast-check';

import { AddedTokenSplitter, unsupportedReason } from '../../../src/tokenize/plainText.js';
import { TextTokenizer, tinyTokenizerPath } from '../../../src/tokenize/tokenizer.js';
import { tokenizerVectors, vectorTokenizerPath } from './vectors.js';

const TINY_SPECIALS = ['<|endoftext|>', '<|im_start|>', '<|im_end|>', '<image>'];
const FRAGMENTS = [...TINY_SPECIALS, '<', '>', '|', '<|', '|>', 'im_', 'start', 'end', 'image', '<ima', 'ge>', 'a', ' ', '\n', 'é', 'e\u0301', '😀'];

/** Strings made of special-token fragments, so whole and broken special strings come up often. */
const fragmentText = fc
  .array(fc.oneof({ weight: 4, arbitrary: fc.constantFrom(...FRAGMENTS) }, { weight: 1, arbitrary: fc.string({ maxLength: 4 }) }), { maxLength: 16 })
  .map((parts) => parts.join('').replace(/[\uD800-\uDFFF]/gu, ''));

function occurrencesLeftmostLongest(text: string, tokens: string[]): number {
  let n = 0;
  for (let at = 0; at < text.length; ) {
    const hit = tokens.filter((t) => text.startsWith(t, at)).sort((a, b) => b.length - a.length)[0];
    if (hit) {
      n++;
      at += hit.length;
    } else at++;
  }
  return n;
}

describe('encodeText (data text)', () => {
  const loading = TextTokenizer.load(tinyTokenizerPath());

  it('never yields a special id, and decodes back to the NFC text: nothing is deleted', async () => {
    const tokenizer = await loading;
    const specialIds = TINY_SPECIALS.map((s) => tokenizer.tokenId(s));
    await fc.assert(
      fc.asyncProperty(fragmentText, async (text) => {
        const ids = await tokenizer.encodeText(text);
        assert.ok(!ids.some((id) => specialIds.includes(id)), `${JSON.stringify(text)} -> ${ids}`);
        assert.equal(await tokenizer.decode(ids), text.normalize('NFC'));
      }),
      { numRuns: 300, seed: 17 },
    );
  });

  it('counts the special strings it met and equals encode() on text without any', async () => {
    const tokenizer = await loading;
    await fc.assert(
      fc.asyncProperty(fragmentText, async (text) => {
        const [counted] = await tokenizer.encodeTextBatchCounted([text]);
        assert.equal(counted!.specialTokenStrings, occurrencesLeftmostLongest(text, TINY_SPECIALS));
        if (counted!.specialTokenStrings === 0) assert.deepEqual(counted!.ids, await tokenizer.encode(text));
      }),
      { numRuns: 200, seed: 18 },
    );
    const [nested] = await tokenizer.encodeTextBatchCounted(['<ima<image>ge> <|im_<|im_end|>start|>']);
    assert.equal(nested!.specialTokenStrings, 2);
  });

  it('batches equal single calls, order kept, empty batch and empty text included', async () => {
    const tokenizer = await loading;
    assert.deepEqual(await tokenizer.encodeTextBatch([]), []);
    await fc.assert(
      fc.asyncProperty(fc.array(fragmentText, { maxLength: 8 }), async (texts) => {
        const batch = await tokenizer.encodeTextBatch(texts);
        assert.deepEqual(batch, await Promise.all(texts.map((t) => tokenizer.encodeText(t))));
      }),
      { numRuns: 50, seed: 19 },
    );
  });

  it('Qwen3: non-special added tokens are still their ids, special ones never', async (t) => {
    const found = vectorTokenizerPath('qwen3', tokenizerVectors());
    if ('missing' in found) {
      t.skip(`${found.missing}: Qwen3 property not checked`);
      return;
    }
    const qwen = await TextTokenizer.load(found.path);
    const vectors = tokenizerVectors().qwen3!;
    const specialIds = new Set(vectors.special.map((s) => qwen.tokenId(s)));
    const pieces = [...vectors.special, ...vectors.non_special, 'a', ' ', '<|', '|>'];
    await fc.assert(
      fc.asyncProperty(fc.array(fc.constantFrom(...pieces), { maxLength: 10 }), async (parts) => {
        const text = parts.join('');
        const ids = await qwen.encodeText(text);
        assert.ok(!ids.some((id) => specialIds.has(id)), JSON.stringify(text));
        assert.equal(await qwen.decode(ids), text);
      }),
      { numRuns: 100, seed: 20 },
    );
  });
});

describe('which tokenizers data text accepts', () => {
  it('refuses a non-special added token with matching flags it does not reproduce', () => {
    const base = { id: 9, content: '<x>', special: false };
    assert.equal(unsupportedReason([{ ...base, lstrip: false, normalized: false }]), null);
    assert.equal(unsupportedReason([{ ...base, special: true, lstrip: true, normalized: true }]), null);
    for (const flag of ['single_word', 'lstrip', 'rstrip', 'normalized'] as const) {
      assert.match(unsupportedReason([{ ...base, [flag]: true }]) ?? '', new RegExp(`"<x>" sets ${flag}`));
    }
  });

  it('encodeText throws that reason, naming the file; encode still works', async () => {
    const data = JSON.parse(readFileSync(tinyTokenizerPath(), 'utf8')) as { added_tokens: object[] };
    data.added_tokens.push({ id: 5000, content: '<x>', special: false, single_word: false, lstrip: true, rstrip: false, normalized: false });
    const path = join(mkdtempSync(join(tmpdir(), 'loom-tok-')), 'tokenizer.json');
    writeFileSync(path, JSON.stringify(data));
    const tokenizer = await TextTokenizer.load(path);
    await assert.rejects(tokenizer.encodeText('a'), /tokenizer .*tokenizer\.json cannot encode data text as plain text: .*"<x>" sets lstrip/);
    assert.ok((await tokenizer.encode('a')).length > 0);
  });

  it('a non-special added token gets the id the Rust tokenizer gave it, even when the file leaves a gap', async () => {
    const data = JSON.parse(readFileSync(tinyTokenizerPath(), 'utf8')) as { added_tokens: object[] };
    data.added_tokens.push({ id: 5000, content: '<x>', special: false, single_word: false, lstrip: false, rstrip: false, normalized: false });
    const path = join(mkdtempSync(join(tmpdir(), 'loom-tok-')), 'tokenizer.json');
    writeFileSync(path, JSON.stringify(data));
    const tokenizer = await TextTokenizer.load(path);
    assert.deepEqual(await tokenizer.encodeText('a<x>'), await tokenizer.encode('a<x>'));
    assert.equal((await tokenizer.encodeText('<x>'))[0], tokenizer.tokenId('<x>'));
  });

  it('assertSpecial names the token that is not marked special', async () => {
    const data = JSON.parse(readFileSync(tinyTokenizerPath(), 'utf8')) as { added_tokens: Array<{ content: string; special: boolean }> };
    for (const t of data.added_tokens) if (t.content === '<image>') t.special = false;
    const path = join(mkdtempSync(join(tmpdir(), 'loom-tok-')), 'tokenizer.json');
    writeFileSync(path, JSON.stringify(data));
    const tokenizer = await TextTokenizer.load(path);
    assert.throws(() => tokenizer.assertSpecial({ 'image token': '<image>' }), /its image token "<image>" is not marked special/);
    tokenizer.assertSpecial({ eos: '<|im_end|>' });
    assert.throws(() => tokenizer.assertSpecial({ eos: '<nope>' }), /token "<nope>" is not in the vocabulary/);
    // Not special: transformers matches it in data text too, which is exactly why it is refused.
    assert.deepEqual(await tokenizer.encodeText('<image>'), [3]);
  });

  it('the splitter finds the leftmost, then longest, added token', () => {
    const splitter = new AddedTokenSplitter([
      { id: 1, content: 'ab', special: false },
      { id: 2, content: 'abc', special: false },
      { id: 3, content: 'bcd', special: true },
    ]);
    assert.deepEqual(splitter.split('xabcd'), { segments: [{ text: 'x' }, { id: 2 }, { text: 'd' }], specialStrings: 0 });
    assert.deepEqual(splitter.split('bcdab'), { segments: [{ text: 'bcd' }, { id: 1 }], specialStrings: 1 });
    assert.deepEqual(splitter.split(''), { segments: [], specialStrings: 0 });
  });
});
