import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { resolveRunConfig } from '../../../../src/config/resolve.js';
import type { RunConfig } from '../../../../src/config/schema.js';
import { TextTokenizer, tinyTokenizerPath } from '../../../../src/tokenize/tokenizer.js';
import {
  PretrainDocuments,
  assembleDocument,
  documentLength,
  documentLayout,
} from '../../../../src/pack/sample.js';

const loading = TextTokenizer.load(tinyTokenizerPath());

function tinyConfig(...assignments: string[]): RunConfig {
  return resolveRunConfig({ preset: 'tiny', stage: 'pretrain', name: 'pack-format-test', assignments });
}

const SPECIALS = ['<image>', '<|im_end|>', '<|endoftext|>'];

/** Captions with special-token strings mixed in, sometimes split by another one. */
const captionArb = fc
  .array(fc.oneof(fc.string({ maxLength: 12 }), fc.constantFrom(...SPECIALS, '<ima<image>ge>', 'a red circle', ' ', '\n')), { maxLength: 8 })
  .map((parts) => parts.join('').replace(/[\uD800-\uDFFF]/gu, ''));

describe('pre-training document layout', () => {
  it('splits the default template into image, text before, caption, text after', async () => {
    const tokenizer = await loading;
    const layout = await documentLayout(tinyConfig(), tokenizer);
    assert.deepEqual(layout.pieces.map((p) => p.kind), ['image', 'text', 'caption', 'text']);
    const [, before, , after] = layout.pieces;
    assert.ok(before?.kind === 'text' && after?.kind === 'text');
    assert.deepEqual(Array.from(before.ids), await tokenizer.encode('\n'));
    assert.equal(before.loss, 0);
    assert.deepEqual(Array.from(after.ids), [tokenizer.tokenId('<|im_end|>')]);
    assert.equal(after.loss, 1);
    assert.equal(layout.imageTokensPerImage, 16);
    assert.equal(layout.fixedTokens, 16 + before.ids.length + 1);
  });

  it('expands the placeholder to image_grid^2 image ids and masks the loss by the rule', async () => {
    const tokenizer = await loading;
    for (const grid of [1, 4, 7]) {
      const docs = await PretrainDocuments.create(tinyConfig(`image_grid=${grid}`, 'data.seq_len=4096'), tokenizer);
      const imageId = tokenizer.tokenId('<image>');
      const eos = tokenizer.tokenId('<|im_end|>');
      const newline = await tokenizer.encode('\n');
      await fc.assert(
        fc.asyncProperty(captionArb, async (caption) => {
          const captionIds = await tokenizer.encodeText(caption);
          const { docs: [doc] } = await docs.build([caption]);
          if (captionIds.length === 0) {
            assert.equal(doc, null);
            return;
          }
          assert.ok(doc);
          const expected = [...Array(grid * grid).fill(imageId), ...newline, ...captionIds, eos];
          assert.deepEqual(Array.from(doc.ids), expected);
          assert.equal(doc.ids.filter((id) => id === imageId).length, grid * grid);
          const expectedLoss = [...Array(grid * grid + newline.length).fill(0), ...Array(captionIds.length + 1).fill(1)];
          assert.deepEqual(Array.from(doc.loss), expectedLoss);
        }),
        { numRuns: 60, seed: grid },
      );
    }
  });

  it('equals tokenizing the whole filled-in template when the caption starts with no whitespace and holds no special string', async () => {
    const tokenizer = await loading;
    const docs = await PretrainDocuments.create(tinyConfig('data.seq_len=4096'), tokenizer);
    const imageId = tokenizer.tokenId('<image>');
    const plain = (c: string) => /^\S/u.test(c) && !SPECIALS.some((s) => c.includes(s)) && !c.includes('<|im_start|>');
    await fc.assert(
      fc.asyncProperty(captionArb.filter(plain), async (caption) => {
        const whole = await tokenizer.encode(`<image>\n${caption}<|im_end|>`);
        const expanded = whole.flatMap((id) => (id === imageId ? Array(16).fill(imageId) : [id]));
        const { docs: [doc] } = await docs.build([caption]);
        assert.deepEqual(Array.from(doc!.ids), expanded);
      }),
      { numRuns: 100, seed: 5 },
    );
  });

  it('keeps literal special-token strings in captions as plain text, deleting nothing, and counts them', async () => {
    const tokenizer = await loading;
    const docs = await PretrainDocuments.create(tinyConfig(), tokenizer);
    const caption = 'a <image> b <ima<image>ge> c<|im_end|> d<|endoftext|><|im_start|>';
    const [tokens] = await docs.tokenizeCaptions([caption]);
    assert.deepEqual(Array.from(tokens!.ids), await tokenizer.encodeText(caption));
    assert.equal(await tokenizer.decode(Array.from(tokens!.ids)), caption);
    assert.equal(tokens!.specialTokenStrings, 5);
    const { docs: built, counts } = await docs.build([caption, 'plain', '<image>', '']);
    assert.equal(counts.specialTokenStrings, 6);
    assert.equal(counts.droppedEmpty, 1, 'only the empty caption is empty: "<image>" is text now');
    assert.equal(built[2]!.ids.filter((id) => id === docs.layout.imageTokenId).length, 16, 'the caption "<image>" adds no image token');
  });

  it('refuses a tokenizer whose image, eos or pad token is not marked special', async () => {
    const data = JSON.parse(readFileSync(tinyTokenizerPath(), 'utf8')) as { added_tokens: Array<{ content: string; special: boolean }> };
    for (const token of SPECIALS) {
      const copy = structuredClone(data);
      for (const t of copy.added_tokens) if (t.content === token) t.special = false;
      const path = join(mkdtempSync(join(tmpdir(), 'loom-sample-')), 'tokenizer.json');
      writeFileSync(path, JSON.stringify(copy));
      const tokenizer = await TextTokenizer.load(path);
      await assert.rejects(PretrainDocuments.create(tinyConfig(), tokenizer), new RegExp(`its tokenizer\\.\\w+_token ${JSON.stringify(token).replace(/[|]/g, '\\|')} is not marked special`));
    }
  });

  it('truncates overlong captions, keeping the image and the final eos, and counts the cut tokens', async () => {
    const tokenizer = await loading;
    const docs = await PretrainDocuments.create(tinyConfig('data.seq_len=40'), tokenizer);
    const layout = docs.layout;
    const long = 'a red circle above a blue square next to a green star '.repeat(10);
    const captionTokens = (await tokenizer.encode(long)).length;
    const { docs: [doc], counts } = await docs.build([long, 'red']);
    assert.ok(doc);
    assert.equal(doc.ids.length, 40);
    assert.equal(doc.ids[39], layout.eosId);
    assert.equal(doc.loss[39], 1);
    assert.equal(doc.ids.filter((id) => id === layout.imageTokenId).length, 16);
    const keep = 40 - layout.fixedTokens;
    assert.equal(doc.truncatedTokens, captionTokens - keep);
    assert.deepEqual(Array.from(doc.ids.subarray(40 - 1 - keep, 39)), (await tokenizer.encode(long)).slice(0, keep));
    assert.deepEqual({ truncated: counts.truncated, kept: counts.kept, cut: counts.truncatedTokens }, { truncated: 1, kept: 1, cut: captionTokens - keep });
  });

  it("drops overlong documents with data.overlong='drop' and counts them", async () => {
    const tokenizer = await loading;
    const docs = await PretrainDocuments.create(tinyConfig('data.seq_len=40', 'data.overlong="drop"'), tokenizer);
    const long = 'green triangles '.repeat(20);
    const { docs: built, counts } = await docs.build([long, 'a blue square', long]);
    assert.equal(built[0], null);
    assert.ok(built[1]);
    assert.equal(built[2], null);
    assert.equal(counts.droppedOverlong, 2);
    assert.equal(counts.kept, 1);
    assert.equal(counts.documents, 3);
  });

  it('lengths() gives the built length of every document (0 when dropped)', async () => {
    const tokenizer = await loading;
    for (const overlong of ['truncate', 'drop']) {
      const docs = await PretrainDocuments.create(tinyConfig('data.seq_len=48', `data.overlong="${overlong}"`), tokenizer);
      await fc.assert(
        fc.asyncProperty(fc.array(captionArb, { minLength: 1, maxLength: 12 }), async (captions) => {
          const { lengths, counts } = await docs.lengths(captions);
          const built = await docs.build(captions);
          assert.deepEqual(Array.from(lengths), built.docs.map((d) => d?.ids.length ?? 0));
          assert.deepEqual(counts, built.counts);
          assert.equal(counts.kept + counts.truncated + counts.droppedEmpty + counts.droppedOverlong, captions.length);
          assert.ok(Array.from(lengths).every((n) => n <= 48));
        }),
        { numRuns: 40, seed: 7 },
      );
    }
  });

  it('documentLength and assembleDocument agree for every caption length (pure)', async () => {
    const tokenizer = await loading;
    const layout = await documentLayout(tinyConfig('data.seq_len=64'), tokenizer);
    for (let n = 0; n < 100; n++) {
      const doc = assembleDocument(layout, new Int32Array(n).fill(7));
      assert.equal(doc?.ids.length ?? 0, documentLength(layout, n));
    }
  });

  it('refuses templates and sequence lengths that cannot make a document', async () => {
    const tokenizer = await loading;
    await assert.rejects(documentLayout(tinyConfig('data.pretrain_template="{caption}<|im_end|>"'), tokenizer), /image token "<image>" exactly once, found 0/);
    await assert.rejects(documentLayout(tinyConfig('data.pretrain_template="<image><image>{caption}"'), tokenizer), /exactly once, found 2/);
    await assert.rejects(documentLayout(tinyConfig('data.pretrain_template="<image>{caption}{caption}"'), tokenizer), /\{caption\} exactly once, found 2/);
    const fixed = (await documentLayout(tinyConfig(), tokenizer)).fixedTokens;
    await assert.rejects(documentLayout(tinyConfig(`data.seq_len=${fixed}`), tokenizer), /cannot hold one pre-training document: the image takes 16 tokens/);
    await documentLayout(tinyConfig(`data.seq_len=${fixed + 1}`), tokenizer);
  });

  it('a template with text after the image and before the caption masks that text too', async () => {
    const tokenizer = await loading;
    const docs = await PretrainDocuments.create(tinyConfig('data.pretrain_template="Picture: <image> Caption: {caption} end<|im_end|>"'), tokenizer);
    const { docs: [doc] } = await docs.build(['a red circle']);
    const caption = await tokenizer.encode('a red circle');
    const before = (await tokenizer.encode('Picture: ')).length + 16 + (await tokenizer.encode(' Caption: ')).length;
    const after = (await tokenizer.encode(' end')).length + 1;
    assert.deepEqual(Array.from(doc!.loss), [...Array(before).fill(0), ...Array(caption.length + after).fill(1)]);
  });
});
