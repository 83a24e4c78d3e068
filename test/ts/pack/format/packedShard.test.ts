import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import sharp from 'sharp';
import { resolveRunConfig } from '../../../../src/config/resolve.js';
import { TextTokenizer, tinyTokenizerPath } from '../../../../src/tokenize/tokenizer.js';
import { readTarMembers } from '../../../../src/shards/tarMembers.js';
import { decodeNpy } from '../../../../src/pack/npy.js';
import { PretrainDocuments, prepareDocumentImage } from '../../../../src/pack/sample.js';
import {
  PACK_META_BYTES,
  PACK_META_MEMBER,
  PackedShardWriter,
  packedSpecFor,
  type PackedDoc,
  type PackedSequence,
  type PackedShardSpec,
} from '../../../../src/pack/packedShard.js';

const config = resolveRunConfig({ preset: 'tiny', stage: 'pretrain', name: 'packed-shard-test', assignments: ['data.seq_len=128'] });
const setup = (async () => {
  const tokenizer = await TextTokenizer.load(tinyTokenizerPath());
  const docs = await PretrainDocuments.create(config, tokenizer);
  return { tokenizer, docs, spec: packedSpecFor(config, tokenizer) };
})();

async function pngOf(seed: number, width = 40, height = 30): Promise<Buffer> {
  const pixels = Buffer.alloc(width * height * 3);
  for (let i = 0; i < pixels.length; i++) pixels[i] = (i * 7 + seed * 31) & 255;
  return sharp(pixels, { raw: { width, height, channels: 3 } }).png().toBuffer();
}

function uidOf(i: number): string {
  return createHash('md5').update(`doc-${i}`).digest('hex');
}

const CAPTIONS = ['a red circle', 'two blue squares and a green star', 'a yellow triangle <image> left of a circle', 'one purple star', 'three circles'];

/** Sequences of 1-2 documents each, built the way the pack command builds them. */
async function sequences(): Promise<PackedSequence[]> {
  const { docs } = await setup;
  const built = await docs.build(CAPTIONS);
  const packed: PackedDoc[] = await Promise.all(
    built.docs.map(async (d, i) => ({ uid: uidOf(i), ids: d!.ids, loss: d!.loss, images: [await prepareDocumentImage(config, await pngOf(i))] })),
  );
  return [{ docs: packed.slice(0, 2) }, { docs: packed.slice(2, 3) }, { docs: packed.slice(3, 5) }];
}

async function members(path: string): Promise<Array<{ name: string; data: Buffer }>> {
  const out: Array<{ name: string; data: Buffer }> = [];
  for await (const event of readTarMembers(path)) {
    if (event.type === 'member') out.push({ name: event.name, data: event.data });
    else assert.equal(event.status, 'ok', event.detail);
  }
  return out;
}

async function writeAll(dir: string, seqs: PackedSequence[], spec: PackedShardSpec, per = 2) {
  const writer = new PackedShardWriter({ dir, spec, sequencesPerShard: per });
  for (const s of seqs) await writer.write(s);
  return writer.close();
}

describe('PackedShardWriter', () => {
  it('writes the header first, then each sequence as npy arrays, JPEGs and json', async () => {
    const { spec } = await setup;
    const seqs = await sequences();
    const dir = mkdtempSync(join(tmpdir(), 'loom-packed-'));
    const summary = await writeAll(dir, seqs, spec);
    assert.deepEqual(summary.shards.map((p) => p.slice(dir.length + 1)), ['00000000.tar', '00000001.tar']);
    const docs = seqs.flatMap((s) => s.docs);
    const tokens = docs.reduce((n, d) => n + d.ids.length, 0);
    assert.deepEqual({ ...summary, shards: undefined }, { shards: undefined, sequences: 3, documents: 5, images: 5, real_tokens: tokens, fill: tokens / (3 * 128) });

    const first = await members(summary.shards[0]!);
    assert.equal(first[0]!.name, PACK_META_MEMBER);
    assert.equal(first[0]!.data.length, PACK_META_BYTES);
    const meta = JSON.parse(first[0]!.data.toString('utf8'));
    const inFirst = seqs.slice(0, 2).flatMap((s) => s.docs);
    assert.deepEqual(meta, {
      format: 'loom-packed', version: 1, ...spec, shard: '00000000.tar',
      sequences: 2, documents: 3, images: 3, real_tokens: inFirst.reduce((n, d) => n + d.ids.length, 0),
      first_key: '000000000', last_key: '000000001',
    });
    assert.deepEqual(first.slice(1, 6).map((m) => m.name), [
      '000000000.doclens.npy', '000000000.img000.jpg', '000000000.img001.jpg', '000000000.json', '000000000.loss.npy',
    ]);
    const byName = new Map(first.map((m) => [m.name, m.data]));
    const seq0 = seqs[0]!.docs;
    assert.deepEqual(Array.from(decodeNpy(byName.get('000000000.tokens.npy')!)), seq0.flatMap((d) => Array.from(d.ids)));
    assert.deepEqual(Array.from(decodeNpy(byName.get('000000000.loss.npy')!)), seq0.flatMap((d) => Array.from(d.loss)));
    assert.deepEqual(Array.from(decodeNpy(byName.get('000000000.doclens.npy')!)), seq0.map((d) => d.ids.length));
    assert.deepEqual(byName.get('000000000.img001.jpg'), seq0[1]!.images[0]);
    assert.deepEqual(JSON.parse(byName.get('000000000.json')!.toString()), { uids: [uidOf(0), uidOf(1)], docs: 2 });

    const second = await members(summary.shards[1]!);
    assert.equal(JSON.parse(second[0]!.data.toString()).first_key, '000000002');
    const sidecar = JSON.parse(readFileSync(join(dir, '00000001_pack.json'), 'utf8'));
    assert.equal(sidecar.sequences, 1);
    assert.equal(sidecar.tar_bytes, readFileSync(summary.shards[1]!).length);
  });

  it('same sequences give byte-identical shards; no temporary files remain', async () => {
    const { spec } = await setup;
    const seqs = await sequences();
    const a = mkdtempSync(join(tmpdir(), 'loom-packed-a-'));
    const b = mkdtempSync(join(tmpdir(), 'loom-packed-b-'));
    const [ra, rb] = [await writeAll(a, seqs, spec), await writeAll(b, seqs, spec)];
    assert.equal(ra.shards.length, rb.shards.length);
    for (let i = 0; i < ra.shards.length; i++) assert.ok(readFileSync(ra.shards[i]!).equals(readFileSync(rb.shards[i]!)), `shard ${i} differs`);
    assert.deepEqual(readdirSync(a).sort(), ['00000000.tar', '00000000_pack.json', '00000001.tar', '00000001_pack.json']);
    const other = mkdtempSync(join(tmpdir(), 'loom-packed-c-'));
    const rc = await writeAll(other, seqs.slice().reverse(), spec);
    assert.ok(!readFileSync(rc.shards[0]!).equals(readFileSync(ra.shards[0]!)), 'different input, different bytes');
  });

  it('refuses a broken sequence with a clear message and stays usable', async () => {
    const { spec } = await setup;
    const seqs = await sequences();
    const good = seqs[0]!.docs[0]!;
    const dir = mkdtempSync(join(tmpdir(), 'loom-packed-bad-'));
    const writer = new PackedShardWriter({ dir, spec });
    const bigJpeg = await sharp({ create: { width: 65, height: 64, channels: 3, background: '#808080' } }).jpeg().toBuffer();
    const cases: Array<[PackedDoc[], RegExp]> = [
      [[], /packed sequence 000000000: has no documents/],
      [[{ ...good, images: [] }], /ids hold 1 image\(s\) of 16 tokens but 0 image\(s\) are given/],
      [[{ ...good, images: [bigJpeg] }], /image 0 is 65x64, expected 64x64/],
      [[{ ...good, images: [await pngOf(1)] }], /image 0 is not a JPEG/],
      [[{ ...good, uid: 'nope' }], /uid is not 32 lowercase hex/],
      [[{ ...good, loss: good.loss.subarray(1) }], /loss must be a Uint8Array as long as ids/],
      [[{ ...good, loss: Uint8Array.from(good.loss, () => 1) }], /image token at 0 has loss mask 1/],
      [[{ ...good, ids: good.ids.subarray(1), loss: good.loss.subarray(1) }], /a run of 15 image tokens at 0 is not a whole number of images/],
      [Array(10).fill(good), /tokens exceed seq_len 128/],
    ];
    for (const [docs, message] of cases) await assert.rejects(writer.write({ docs }), message);
    await writer.write(seqs[0]!);
    const summary = await writer.close();
    assert.equal(summary.sequences, 1);
    const names = (await members(summary.shards[0]!)).map((m) => m.name);
    assert.equal(names[1], '000000000.doclens.npy', 'refused sequences use no key');
  });

  it('abort removes the unfinished shard; finished ones stay', async () => {
    const { spec } = await setup;
    const seqs = await sequences();
    const dir = mkdtempSync(join(tmpdir(), 'loom-packed-abort-'));
    const writer = new PackedShardWriter({ dir, spec, sequencesPerShard: 2 });
    for (const s of seqs) await writer.write(s);
    await writer.abort();
    assert.deepEqual(readdirSync(dir).sort(), ['00000000.tar', '00000000_pack.json']);
    await assert.rejects(writer.write(seqs[0]!), /closed/);
  });

  it('validates the spec', async () => {
    const { spec } = await setup;
    assert.throws(() => new PackedShardWriter({ dir: tmpdir(), spec: { ...spec, tokenizer_sha256: 'abc', seq_len: 0 } }), /tokenizer_sha256 must be 64 lowercase hex characters; seq_len must be a positive integer/);
  });
});
