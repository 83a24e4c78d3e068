// The TS tokenizer against transformers itself: ids that PreTrainedTokenizerFast gave for the same
// tokenizer.json (vectors/tokenizer/plain_text.json), for template text (special strings are
// their ids) and for data text (split_special_tokens=True: special strings are plain text).
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { TextTokenizer, tinyTokenizerPath } from '../../../src/tokenize/tokenizer.js';
import { tokenizerVectors, vectorTokenizerPath } from './vectors.js';

const VECTORS = tokenizerVectors();

describe('tokenizer parity TS <-> transformers (committed vectors)', () => {
  for (const name of Object.keys(VECTORS)) {
    it(`${name}: encode, encodeText, their batches and decode (with and without special tokens) equal transformers`, async (t) => {
      const found = vectorTokenizerPath(name, VECTORS);
      if ('missing' in found) {
        t.skip(`${found.missing}: ${name} parity not checked`);
        return;
      }
      const tokenizer = await TextTokenizer.load(found.path);
      const cases = VECTORS[name]!.cases;
      assert.ok(cases.length > 50);
      const texts = cases.map((c) => c.text);
      const [batch, textBatch] = await Promise.all([tokenizer.encodeBatch(texts), tokenizer.encodeTextBatch(texts)]);
      for (const [i, c] of cases.entries()) {
        assert.deepEqual(await tokenizer.encode(c.text), c.template, `${c.name}: encode differs from transformers`);
        assert.deepEqual(batch[i], c.template, `${c.name}: encodeBatch differs from transformers`);
        assert.deepEqual(await tokenizer.encodeText(c.text), c.plain, `${c.name}: encodeText differs from transformers (split_special_tokens=True)`);
        assert.deepEqual(textBatch[i], c.plain, `${c.name}: encodeTextBatch differs from transformers`);
        assert.equal(await tokenizer.decode(c.plain), c.decoded, `${c.name}: decode differs from transformers`);
        assert.equal(await tokenizer.decode(c.template), c.decoded_template, `${c.name}: decode of template ids differs from transformers`);
        assert.equal(await tokenizer.decode(c.template, true), c.decoded_template_skip_special, `${c.name}: decode skipping special tokens differs from transformers`);
      }
    });
  }

  it('the vectors cover every special added token and the plain/template split matters', () => {
    for (const [name, entry] of Object.entries(VECTORS)) {
      for (const s of entry.special) assert.ok(entry.cases.some((c) => c.name === `special/${s}/alone`), `${name}: no vector for ${s}`);
      assert.ok(entry.cases.some((c) => JSON.stringify(c.plain) !== JSON.stringify(c.template)), `${name}: plain never differs from template`);
    }
  });

  it('special tokens written in template text map to their own ids', async () => {
    const tokenizer = await TextTokenizer.load(tinyTokenizerPath());
    const image = tokenizer.tokenId('<image>');
    const end = tokenizer.tokenId('<|im_end|>');
    const ids = await tokenizer.encode('<image>\nA red circle.<|im_end|>');
    assert.equal(ids[0], image);
    assert.equal(ids.at(-1), end);
    assert.equal(ids.filter((id) => id === image || id === end).length, 2);
    const lookalikes = await tokenizer.encode('<image > <|im_end <IMAGE>');
    assert.ok(!lookalikes.includes(image) && !lookalikes.includes(end), 'look-alikes must not become special tokens');
  });

  it('Qwen3: digits split, ids of its special tokens, <tool_call> stays an id in data text', async (t) => {
    const found = vectorTokenizerPath('qwen3', VECTORS);
    if ('missing' in found) {
      t.skip(`${found.missing}: Qwen3 checks skipped`);
      return;
    }
    // Qwen splits digits: "100" is three tokens (the MLM-Filter scorer's 2-token truncation bug).
    const qwen = await TextTokenizer.load(found.path);
    assert.equal((await qwen.encode('100')).length, 3);
    assert.equal(qwen.tokenId('<|im_end|>'), 151645);
    assert.equal(qwen.tokenId('<|endoftext|>'), 151643);
    // Non-special added tokens are ordinary vocabulary for transformers too.
    assert.deepEqual(await qwen.encodeText('<tool_call>'), [151657]);
    assert.ok(!(await qwen.encodeText('<|im_start|>')).includes(151644));
  });
});
