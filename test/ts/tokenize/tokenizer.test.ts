import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';

import fc from 'fast-check';

import { TextTokenizer, tinyTokenizerPath } from '../../../src/tokenize/tokenizer.js';

const SPECIALS = { '<|endoftext|>': 0, '<|im_start|>': 1, '<|im_end|>': 2, '<image>': 3 } as const;

describe('TextTokenizer (bundled tiny tokenizer)', () => {
  const loading = TextTokenizer.load(tinyTokenizerPath());

  it('records the path and the sha256 of the file bytes', async () => {
    const tokenizer = await loading;
    assert.equal(tokenizer.path, tinyTokenizerPath());
    assert.equal(tokenizer.sha256, createHash('sha256').update(readFileSync(tinyTokenizerPath())).digest('hex'));
  });

  it('is small, with the four special tokens at ids 0-3', async () => {
    const tokenizer = await loading;
    assert.ok(tokenizer.vocabSize >= 500 && tokenizer.vocabSize <= 2100, `vocab size ${tokenizer.vocabSize}`);
    for (const [token, id] of Object.entries(SPECIALS)) assert.equal(tokenizer.tokenId(token), id);
    const vocab = JSON.parse(readFileSync(tinyTokenizerPath(), 'utf8')) as { model: { vocab: Record<string, number> } };
    const maxId = Math.max(...Object.values(vocab.model.vocab));
    assert.equal(tokenizer.vocabSize, maxId + 1, 'ids are dense: vocabSize = largest id + 1');
  });

  it('tokenId names the token and the file when the token is unknown', async () => {
    const tokenizer = await loading;
    assert.throws(() => tokenizer.tokenId('<|not_a_token|>'), /token "<\|not_a_token\|>" is not in the vocabulary of tokenizer .*tokenizer\.json/);
  });

  it('adds no special tokens of its own', async () => {
    const tokenizer = await loading;
    assert.deepEqual(await tokenizer.encode(''), []);
    const ids = await tokenizer.encode('a red circle');
    assert.ok(ids.every((id) => id > 3));
  });

  it('encodes any text (byte level, no unknown token) and decodes it back, NFC-normalised', async () => {
    const tokenizer = await loading;
    await fc.assert(
      fc.asyncProperty(fc.string({ unit: 'binary', maxLength: 60 }), async (raw) => {
        // Lone surrogates cannot cross into UTF-8; real text never has them.
        const text = raw.replace(/[\uD800-\uDFFF]/gu, '');
        const ids = await tokenizer.encode(text);
        assert.ok(ids.every((id) => Number.isInteger(id) && id >= 0 && id < tokenizer.vocabSize));
        assert.equal(await tokenizer.decode(ids), text.normalize('NFC'));
      }),
      { numRuns: 300, seed: 11 },
    );
  });

  it('encodeBatch equals encode on each text, order kept', async () => {
    const tokenizer = await loading;
    await fc.assert(
      fc.asyncProperty(fc.array(fc.string({ unit: 'grapheme', maxLength: 30 }), { maxLength: 12 }), async (texts) => {
        const batch = await tokenizer.encodeBatch(texts);
        const single = await Promise.all(texts.map((t) => tokenizer.encode(t)));
        assert.deepEqual(batch, single);
      }),
      { numRuns: 60, seed: 5 },
    );
  });

  it('decode can skip special tokens', async () => {
    const tokenizer = await loading;
    const ids = await tokenizer.encode('<image>\nA red circle.<|im_end|>');
    assert.equal(await tokenizer.decode(ids), '<image>\nA red circle.<|im_end|>');
    assert.equal(await tokenizer.decode(ids, true), '\nA red circle.');
  });

  it('decode rejects ids outside the vocabulary', async () => {
    const tokenizer = await loading;
    await assert.rejects(tokenizer.decode([5, tokenizer.vocabSize]), /cannot decode id \d+ .*ids run from 0 to/);
    await assert.rejects(tokenizer.decode([-1]), /cannot decode id -1/);
  });
});

describe('TextTokenizer.load errors', () => {
  it('names the file when it is missing or not a tokenizer', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'loom-tok-'));
    await assert.rejects(TextTokenizer.load(join(dir, 'absent.json')), /cannot read tokenizer .*absent\.json/);
    const bad = join(dir, 'bad.json');
    writeFileSync(bad, '{"not": "a tokenizer"}');
    await assert.rejects(TextTokenizer.load(bad), /cannot load tokenizer .*bad\.json: not a valid HF tokenizer\.json/);
  });
});
