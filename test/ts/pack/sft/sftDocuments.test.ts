// SftDocuments and record parsing on arbitrary conversations: measured lengths equal built
// lengths, documents fit seq_len, trained tokens are exactly the assistant values (+ <|im_end|>),
// truncation keeps a prefix of whole pairs, and malformed records never throw.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { resolveRunConfig } from '../../../../src/config/resolve.js';
import { TextTokenizer } from '../../../../src/tokenize/tokenizer.js';
import { parseSftRecord, SftDocuments, stripImagePlaceholder, type SftRecord } from '../../../../src/pack/sft.js';

const SPECIALS = ['<image>', '<|im_start|>', '<|im_end|>', '<|endoftext|>'];
const valueArb = fc
  .array(fc.oneof(fc.constantFrom(...SPECIALS, 'red', ' circle', '\n', 'How many?', ' '), fc.string({ maxLength: 6 })), { maxLength: 8 })
  .map((parts) => parts.join(''));
const recordArb: fc.Arbitrary<SftRecord> = fc
  .record({ image: fc.boolean(), pairs: fc.array(fc.tuple(valueArb, valueArb), { minLength: 1, maxLength: 4 }) })
  .map(({ image, pairs }) => ({
    id: 'r',
    image: image ? '/img.jpg' : null,
    turns: pairs.flatMap(([q, a]) => [
      { role: 'user' as const, value: q },
      { role: 'assistant' as const, value: a },
    ]),
  }));

function clean(v: string): string {
  let s = v;
  for (let prev = ''; prev !== s; ) {
    prev = s;
    for (const t of SPECIALS) s = s.split(t).join('');
  }
  return s;
}

test('SftDocuments: lengths match builds, loss is exactly the answers, truncation keeps whole pairs', async () => {
  for (const [seqLen, overlong] of [
    [1024, 'truncate'],
    [110, 'truncate'],
    [110, 'drop'],
  ] as const) {
    const config = resolveRunConfig({ preset: 'tiny', stage: 'sft', name: 'r', overrides: [], assignments: [`data.seq_len=${seqLen}`, `data.overlong=${overlong}`] });
    const tokenizer = await TextTokenizer.load(config.tokenizer.path!);
    const sft = await SftDocuments.create(config, tokenizer);
    const imageId = tokenizer.tokenId('<image>');
    await fc.assert(
      fc.asyncProperty(fc.array(recordArb, { minLength: 1, maxLength: 4 }), async (records) => {
        const { lengths, counts } = await sft.lengths(records);
        const built = await sft.build(records);
        assert.deepEqual(built.counts, counts);
        assert.equal(counts.documents, records.length);
        for (const [i, r] of records.entries()) {
          const doc = built.docs[i];
          assert.equal(doc?.ids.length ?? 0, lengths[i]);
          const answers = r.turns.filter((t) => t.role === 'assistant').map((t) => clean(t.value));
          if (!doc) {
            assert.ok(answers.every((a) => a.length === 0) || overlong === 'drop' || seqLen < 1024);
            continue;
          }
          assert.ok(doc.ids.length <= seqLen);
          assert.equal(doc.ids.filter((t) => t === imageId).length, r.image ? 64 : 0);
          const trained: number[] = [];
          doc.loss.forEach((l, k) => {
            if (l) trained.push(doc.ids[k]!);
          });
          const text = await tokenizer.decode(Array.from(doc.ids));
          const pairsKept = text.split('<|im_start|>assistant\n').length - 1;
          assert.ok(pairsKept >= 1 && pairsKept <= answers.length);
          if (pairsKept < answers.length) assert.equal(overlong, 'truncate');
          const expected = answers.slice(0, pairsKept).map((a) => `${a}<|im_end|>`).join('');
          assert.equal(await tokenizer.decode(trained), expected);
          assert.ok(text.endsWith('<|im_end|>\n'));
        }
      }),
      { numRuns: 25, seed: 11 },
    );
  }
});

test('parseSftRecord: arbitrary JSON never throws; valid records keep their turns', () => {
  fc.assert(
    fc.property(fc.jsonValue(), (raw) => {
      const entry = parseSftRecord(raw, 3, '/data');
      if (!entry.ok) assert.equal(entry.bad.index, 3);
    }),
    { numRuns: 300, seed: 5 },
  );
  const ok = parseSftRecord({ id: 7, image: 'images/a.jpg', conversations: [{ from: 'human', value: '<image>\nq' }, { from: 'gpt', value: 'a' }] }, 0, '/data');
  assert.ok(ok.ok);
  assert.deepEqual(ok.record, { id: '7', image: '/data/images/a.jpg', turns: [{ role: 'user', value: '<image>\nq' }, { role: 'assistant', value: 'a' }] });
  assert.equal(stripImagePlaceholder('<image>\nq', '<image>'), 'q');
  assert.equal(stripImagePlaceholder('q\n<image>', '<image>'), 'q');
  assert.equal(stripImagePlaceholder('a <image> b <image>', '<image>'), 'a  b <image>');
});
