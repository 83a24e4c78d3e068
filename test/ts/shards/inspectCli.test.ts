// `loom inspect` end to end, cross-checked against the reader's own item stream.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { ShardWriter } from '../../../src/shards/writer.js';
import { repoRoot } from '../../../src/util/paths.js';
import { makeImage, readAll, sampleMembers, withTempDir, writeTar } from './fixtures.js';

const run = promisify(execFile);
const loom = (args: string[]) => run(process.execPath, [join(repoRoot(), 'bin', 'loom.js'), ...args], { maxBuffer: 1 << 24 });

async function dataset(dir: string): Promise<void> {
  const writer = new ShardWriter({ dir, samplesPerShard: 5 });
  const sizes = [[16, 16], [40, 20], [100, 7]] as const;
  for (let i = 0; i < 12; i++) {
    const [w, h] = sizes[i % 3]!;
    await writer.write({ key: `s${i}`, image: { ext: i % 4 === 0 ? 'png' : 'jpg', data: await makeImage(i % 4 === 0 ? 'png' : 'jpg', w, h, i) }, caption: 'word '.repeat(i + 1).trim(), json: {} });
  }
  await writer.close();
  const jpg = await makeImage('jpg', 30, 30, 99);
  await writeTar(dir, '00000003.tar', [
    ...sampleMembers('x0', jpg),
    ...sampleMembers('x1', jpg.subarray(0, jpg.length >> 1)),
    { name: 'x2.jpg', data: jpg },
    { name: 'x2.json', data: '{}' },
  ]);
  await writeFile(join(dir, '00000004.tar'), 'not a tar');
}

test('inspect --json reports counts, reasons and histograms that agree with the reader', async () => {
  await withTempDir(async (dir) => {
    await dataset(dir);
    const { stdout } = await loom(['inspect', '--json', dir]);
    const report = JSON.parse(stdout);
    const items = await readAll((report.perShard as Array<{ shard: string }>).map((s) => s.shard), { decodeImages: true });
    const samples = items.flatMap((i) => (i.kind === 'sample' ? [i.sample] : []));
    assert.equal(report.shards, 5);
    assert.equal(report.samples, samples.length);
    assert.equal(report.samples, 13);
    assert.deepEqual(
      Object.fromEntries(Object.entries(report.badByReason).map(([r, e]) => [r, (e as { count: number }).count])),
      { truncated_image: 1, missing_caption: 1, not_a_tar: 1 },
    );
    assert.equal(report.badByReason.truncated_image.examples[0].key, 'x1');
    assert.equal(report.formats.png + report.formats.jpg, samples.length);
    for (const h of [report.captionChars, report.captionWords, report.imageWidth, report.imageHeight]) {
      assert.equal(h.count, samples.length);
      assert.equal(h.buckets.reduce((a: number, b: { count: number }) => a + b.count, 0), samples.length);
    }
    assert.equal(report.imageWidth.max, 100);
    assert.equal(report.imageHeight.min, 7);
    assert.equal(report.captionWords.max, 12);
  });
});

test('inspect --no-decode trusts pixel data; --limit stops early; the readable summary names reasons', async () => {
  await withTempDir(async (dir) => {
    await dataset(dir);
    const cheap = JSON.parse((await loom(['inspect', '--json', '--no-decode', dir])).stdout);
    assert.equal(cheap.decoded, false);
    assert.equal(cheap.samples, 14); // the cut JPEG's header is intact
    const limited = JSON.parse((await loom(['inspect', '--json', '--limit', '4', join(dir, '{00000000..00000001}.tar')])).stdout);
    assert.equal(limited.samples, 4);
    assert.equal(limited.limited, true);
    const { stdout, stderr } = await loom(['inspect', dir]);
    assert.match(stdout, /samples ok\s+13/);
    assert.match(stdout, /missing_caption: 1/);
    assert.match(stdout, /key x2/);
    assert.match(stdout, /Image width \(px\)/);
    assert.match(stderr, /inspect/);
  });
});

test('inspect fails clearly on a path that does not exist and on a bad --limit', async () => {
  await assert.rejects(loom(['inspect', '/definitely/not/here']), (e: { code?: number; stderr?: string }) => e.code === 1 && /no such shard file or directory/.test(e.stderr ?? ''));
  await assert.rejects(loom(['inspect', '--limit', 'x', '/tmp']), (e: { code?: number; stderr?: string }) => e.code === 2 && /--limit/.test(e.stderr ?? ''));
});
