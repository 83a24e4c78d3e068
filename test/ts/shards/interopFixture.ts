// Used by python/tests/test_shards_interop.py to drive Loom's shard writer and reader:
//   node dist/test/ts/shards/interopFixture.js write <spec.json> <out dir> <samples per shard>
//     spec.json: [{ key, ext, image_b64, caption, json, uid? }]
//   node dist/test/ts/shards/interopFixture.js read <shard>...
//     prints one JSON line per item: samples with image bytes as base64, bad ones with reason.
import { readFile } from 'node:fs/promises';
import { ShardWriter } from '../../../src/shards/writer.js';
import { readShards } from '../../../src/shards/reader.js';
import type { ImageExt } from '../../../src/shards/types.js';

interface SpecSample {
  key: string;
  ext: ImageExt;
  image_b64: string;
  caption: string;
  json: Record<string, unknown>;
  uid?: string;
}

async function main(argv: string[]): Promise<void> {
  const [verb, ...rest] = argv;
  if (verb === 'write') {
    const [spec, dir, per] = rest;
    const samples = JSON.parse(await readFile(spec!, 'utf8')) as SpecSample[];
    const writer = new ShardWriter({ dir: dir!, samplesPerShard: Number(per ?? 10000) });
    for (const s of samples) {
      await writer.write({ key: s.key, image: { ext: s.ext, data: Buffer.from(s.image_b64, 'base64') }, caption: s.caption, json: s.json, ...(s.uid ? { uid: s.uid } : {}) });
    }
    process.stdout.write(JSON.stringify(await writer.close()) + '\n');
  } else if (verb === 'read') {
    for await (const item of readShards(rest, { decodeImages: true })) {
      if (item.kind === 'bad') process.stdout.write(JSON.stringify({ kind: 'bad', ...item.bad }) + '\n');
      else {
        const s = item.sample;
        process.stdout.write(JSON.stringify({ kind: 'sample', shard: s.shard, key: s.key, uid: s.uid, ext: s.image.ext, image_b64: s.image.data.toString('base64'), caption: s.caption, json: s.json }) + '\n');
      }
    }
  } else throw new Error(`usage: interopFixture.js write <spec.json> <dir> <per shard> | read <shard>...`);
}

await main(process.argv.slice(2));
