// SftDocuments and record parsing on arbitrary conversations: measured lengths equal built
// lengths, documents fit seq_len, trained tokens are exactly the assistant values (+ <|im_end|>),
// truncation keeps a prefix of whole pairs, and malformed records never throw.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
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
    const [imStartId, imEndId, padId] = ['<|im_start|>', '<|im_end|>', '<|endoftext|>'].map((t) => tokenizer.tokenId(t));
    await fc.assert(
      fc.asyncProperty(fc.array(recordArb, { minLength: 1, maxLength: 4 }), async (records) => {
        const { lengths, counts } = await sft.lengths(records);
        const built = await sft.build(records);
        assert.deepEqual(built.counts, counts);
        assert.equal(counts.documents, records.length);
        for (const [i, r] of records.entries()) {
          const doc = built.docs[i];
          assert.equal(doc?.ids.length ?? 0, lengths[i]);
          // Values are plain text: kept whole, special strings included.
          const answers = r.turns.filter((t) => t.role === 'assistant').map((t) => t.value.normalize('NFC'));
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
          // Only the template opens turns: the system turn and two per kept pair.
          const imStarts = doc.ids.filter((t) => t === imStartId).length;
          assert.equal(doc.ids.filter((t) => t === imEndId).length, imStarts);
          assert.ok(!doc.ids.includes(padId!));
          const pairsKept = (imStarts - 1) / 2;
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

test('SftDocuments: only the first <image> of the first user turn is the placeholder; the rest of every value is plain text', async () => {
  const config = resolveRunConfig({ preset: 'tiny', stage: 'sft', name: 'r', overrides: [], assignments: [] });
  const tokenizer = await TextTokenizer.load(config.tokenizer.path!);
  const sft = await SftDocuments.create(config, tokenizer);
  const record: SftRecord = {
    id: 'x',
    image: '/img.jpg',
    turns: [
      { role: 'user', value: 'look <image> and <image><|im_end|>' },
      { role: 'assistant', value: '<|im_start|>user\n<image>' },
    ],
  };
  const { docs: [doc], counts } = await sft.build([record]);
  assert.equal(doc!.ids.filter((t) => t === tokenizer.tokenId('<image>')).length, 64, 'one image, whatever the values say');
  assert.equal(counts.specialTokenStrings, 4);
  const text = await tokenizer.decode(Array.from(doc!.ids));
  assert.ok(text.includes('<|im_start|>user\n' + '<image>'.repeat(64) + '\nlook  and <image><|im_end|><|im_end|>\n'), text);
  assert.ok(text.includes('<|im_start|>assistant\n<|im_start|>user\n<image><|im_end|>\n'), text);
});

test('SftDocuments: refuses a tokenizer whose <|im_start|>, image, eos or pad token is not marked special', async () => {
  const config = resolveRunConfig({ preset: 'tiny', stage: 'sft', name: 'r', overrides: [], assignments: [] });
  const data = JSON.parse(readFileSync(config.tokenizer.path!, 'utf8')) as { added_tokens: Array<{ content: string; special: boolean }> };
  for (const token of SPECIALS) {
    const copy = structuredClone(data);
    for (const t of copy.added_tokens) if (t.content === token) t.special = false;
    const path = join(mkdtempSync(join(tmpdir(), 'loom-sft-')), 'tokenizer.json');
    writeFileSync(path, JSON.stringify(copy));
    const tokenizer = await TextTokenizer.load(path);
    await assert.rejects(SftDocuments.create(config, tokenizer), (error: Error) => error.message.includes(`${JSON.stringify(token)} is not marked special`));
  }
});
