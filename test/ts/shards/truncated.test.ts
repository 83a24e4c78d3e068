// A tar cut at any point: every sample complete before the cut is kept, the cut is reported
// once as truncated_tar (under the cut sample's key when one was cut), nothing else is invented.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import fc from 'fast-check';
import { buildTar, makeImage, readAll, goodKeys, sampleMembers, withTempDir, headerOffsets } from './fixtures.js';

const KEYS = ['k0', 'k1', 'k2', 'k3'];

async function fullTar(): Promise<{ bytes: Buffer; dataEnds: number[] }> {
  const jpg = await makeImage('jpg', 24, 24, 5);
  const members = KEYS.flatMap((k, i) => sampleMembers(k, jpg, 'jpg', `caption ${i} `.repeat(i * 50 + 1)));
  const bytes = await buildTar(members);
  const offsets = headerOffsets(bytes);
  const dataEnds = offsets.map((o, i) => o + 512 + Buffer.byteLength(members[i]!.data));
  return { bytes, dataEnds };
}

function expectedAt(cut: number, dataEnds: number[], headers: number[]): { kept: string[]; cutKey: string | null } {
  // A sample is complete when its last member's data lies before the cut; samples are in order.
  const kept = KEYS.filter((_, i) => dataEnds[i * 3 + 2]! <= cut);
  const next = kept.length;
  // The first incomplete sample is named once the header of its first member was read whole.
  const cutKey = next < KEYS.length && headers[next * 3]! + 512 <= cut ? KEYS[next]! : null;
  return { kept, cutKey };
}

test('a tar cut anywhere keeps every complete sample before the cut and reports the cut once', async () => {
  const { bytes, dataEnds } = await fullTar();
  const headers = headerOffsets(bytes);
  const endOfMembers = Math.ceil(dataEnds[dataEnds.length - 1]! / 512) * 512;
  await withTempDir(async (dir) => {
    const path = join(dir, 'cut.tar');
    const check = async (cut: number) => {
      await writeFile(path, bytes.subarray(0, cut));
      const items = await readAll([path]);
      const { kept, cutKey } = expectedAt(cut, dataEnds, headers);
      assert.deepEqual(goodKeys(items), kept, `cut at ${cut}`);
      const bad = items.flatMap((i) => (i.kind === 'bad' ? [i.bad] : []));
      assert.equal(bad.length, 1, `cut at ${cut}: ${JSON.stringify(bad)}`);
      if (cut < 512) {
        assert.equal(bad[0]!.reason, 'not_a_tar', `cut at ${cut}`);
        return;
      }
      assert.equal(bad[0]!.reason, 'truncated_tar', `cut at ${cut}`);
      if (kept.length === KEYS.length) assert.equal(bad[0]!.key, null, `cut at ${cut}`);
      else assert.equal(bad[0]!.key, cutKey, `cut at ${cut}`);
    };
    // Every block boundary, the middle of every member, and a property over random cuts.
    for (let cut = 0; cut < bytes.length; cut += 512) if (cut !== 0) await check(cut);
    for (let i = 0; i < dataEnds.length; i++) await check(dataEnds[i]! - 3);
    await check(endOfMembers + 512); // half the end-of-archive marker
    await fc.assert(fc.asyncProperty(fc.integer({ min: 1, max: endOfMembers + 1023 }), check), { numRuns: 60 });
    // The whole archive reads cleanly.
    await writeFile(path, bytes);
    assert.deepEqual(goodKeys(await readAll([path])), KEYS);
  });
});
