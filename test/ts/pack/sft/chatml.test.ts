// The ChatML that SFT packing builds against the shared vectors (vectors/chatml/conversations.json,
// rendered by transformers' apply_chat_template with Qwen2-Instruct's chat template; written by
// python/scripts/make_chatml_vectors.py). The Python MLM-Filter prompt is checked against the same
// file (python/tests/test_curate_mlm_filter.py), so the two renderings cannot drift apart.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';

import { resolveRunConfig } from '../../../../src/config/resolve.js';
import { SftDocuments, type SftRecord } from '../../../../src/pack/sft.js';
import { TextTokenizer } from '../../../../src/tokenize/tokenizer.js';
import { vectorsDir } from '../../../../src/util/paths.js';

interface SftVector {
  name: string;
  image: boolean;
  conversations: Array<{ from: 'human' | 'gpt'; value: string }>;
  rendered: string;
}

const VECTORS = JSON.parse(readFileSync(join(vectorsDir(), 'chatml', 'conversations.json'), 'utf8')) as { sft: SftVector[] };

test('SFT documents decode to the ChatML transformers renders, the image run standing for one <image>', async () => {
  assert.ok(VECTORS.sft.length >= 5);
  const config = resolveRunConfig({ preset: 'tiny', stage: 'sft', name: 'chatml', assignments: ['data.seq_len=4096'] });
  const tokenizer = await TextTokenizer.load(config.tokenizer.path!);
  const sft = await SftDocuments.create(config, tokenizer);
  const imageId = tokenizer.tokenId('<image>');
  const perImage = sft.layout.imageTokensPerImage;
  assert.ok(perImage > 1);
  const records: SftRecord[] = VECTORS.sft.map((v) => ({
    id: v.name,
    image: v.image ? '/unused.jpg' : null, // building a document does not read the image
    turns: v.conversations.map((t) => ({ role: t.from === 'human' ? ('user' as const) : ('assistant' as const), value: t.value })),
  }));
  const { docs } = await sft.build(records);
  for (const [i, v] of VECTORS.sft.entries()) {
    const doc = docs[i];
    assert.ok(doc, `${v.name}: dropped`);
    const ids = Array.from(doc.ids);
    const first = ids.indexOf(imageId);
    let text: string;
    if (v.image) {
      assert.deepEqual(ids.slice(first, first + perImage), new Array<number>(perImage).fill(imageId), `${v.name}: one run of image tokens`);
      assert.equal(ids.filter((id) => id === imageId).length, perImage, `${v.name}: image tokens outside the run`);
      text = (await tokenizer.decode(ids.slice(0, first))) + '<image>' + (await tokenizer.decode(ids.slice(first + perImage)));
    } else {
      assert.equal(first, -1, `${v.name}: an image token without an image`);
      text = await tokenizer.decode(ids);
    }
    assert.equal(text, v.rendered, `${v.name}: SFT ChatML differs from transformers' rendering`);
  }
});
