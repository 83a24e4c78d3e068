// Used by python/tests/test_packed_interop.py: packs the synthetic pre-training shards into
// packed shards with Loom's real document builder and writer, grouping documents greedily in
// order (the real packer lives in src/pack/algorithms), and writes expected.json describing
// every sequence so the Python reader can be checked field by field.
//   node dist/test/ts/pack/format/fixture.js <synth dir> <out dir> <seq_len> <sequences per shard>
// A few captions are altered on purpose: one gets literal special tokens, one is made overlong.
import { join } from 'node:path';
import { resolveRunConfig } from '../../../../src/config/resolve.js';
import { listShards, readShards } from '../../../../src/shards/index.js';
import type { Sample } from '../../../../src/shards/types.js';
import { TextTokenizer, tinyTokenizerPath } from '../../../../src/tokenize/tokenizer.js';
import { writeJsonAtomic } from '../../../../src/util/atomic.js';
import { PretrainDocuments, prepareDocumentImage } from '../../../../src/pack/sample.js';
import { PackedShardWriter, packedSpecFor, sequenceKey, type PackedDoc } from '../../../../src/pack/packedShard.js';

interface ExpectedDoc {
  uid: string;
  source_shard: string;
  source_key: string;
  caption: string;
  truncated_tokens: number;
}

async function main(argv: string[]): Promise<void> {
  const [synthDir, outDir, seqLen, perShard] = argv;
  if (!synthDir || !outDir || !seqLen || !perShard) throw new Error('usage: fixture.js <synth dir> <out dir> <seq_len> <sequences per shard>');
  const config = resolveRunConfig({ preset: 'tiny', stage: 'pretrain', name: 'packed-interop', assignments: [`data.seq_len=${seqLen}`] });
  const tokenizer = await TextTokenizer.load(tinyTokenizerPath());
  const builder = await PretrainDocuments.create(config, tokenizer);

  const samples: Sample[] = [];
  for await (const item of readShards(await listShards(join(synthDir, 'pretrain')))) {
    if (item.kind === 'bad') throw new Error(`bad synthetic sample: ${item.bad.detail}`);
    samples.push(item.sample);
  }
  samples[0]!.caption += ' <image> and <ima<image>ge> then <|im_end|>';
  samples[1]!.caption = `${samples[1]!.caption} `.repeat(40);

  const { docs, counts } = await builder.build(samples.map((s) => s.caption));
  const packedDocs: Array<{ doc: PackedDoc; expected: ExpectedDoc }> = [];
  for (const [i, built] of docs.entries()) {
    if (!built) continue;
    const s = samples[i]!;
    const image = await prepareDocumentImage(config, s.image.data);
    packedDocs.push({
      doc: { uid: s.uid, ids: built.ids, loss: built.loss, images: [image] },
      expected: { uid: s.uid, source_shard: s.shard, source_key: s.key, caption: s.caption, truncated_tokens: built.truncatedTokens },
    });
  }

  const groups: Array<typeof packedDocs> = [];
  let used = Infinity;
  for (const d of packedDocs) {
    if (used + d.doc.ids.length > config.data.seq_len) {
      groups.push([]);
      used = 0;
    }
    groups.at(-1)!.push(d);
    used += d.doc.ids.length;
  }

  const spec = packedSpecFor(config, tokenizer);
  const writer = new PackedShardWriter({ dir: join(outDir, 'packed'), spec, sequencesPerShard: Number(perShard) });
  for (const group of groups) await writer.write({ docs: group.map((g) => g.doc) });
  const summary = await writer.close();

  const per = Number(perShard);
  await writeJsonAtomic(join(outDir, 'expected.json'), {
    spec,
    config,
    tokenizer_path: tokenizer.path,
    template: config.data.pretrain_template,
    image_mean: config.model.vision.image_mean,
    image_std: config.model.vision.image_std,
    resize: config.data.resize,
    counts,
    summary,
    sequences: groups.map((group, i) => ({
      shard: summary.shards[Math.floor(i / per)],
      key: sequenceKey(i),
      tokens: group.flatMap((g) => Array.from(g.doc.ids)),
      loss: group.flatMap((g) => Array.from(g.doc.loss)),
      doclens: group.map((g) => g.doc.ids.length),
      uids: group.map((g) => g.doc.uid),
      images: group.length,
      docs: group.map((g) => g.expected),
    })),
  });
  process.stdout.write(JSON.stringify(summary) + '\n');
}

await main(process.argv.slice(2));
