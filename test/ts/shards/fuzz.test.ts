// Fuzzing the shard reader: generated tars (random member names, sizes and contents, cut at
// random, overwritten with garbage) never make it throw; every item is a good sample the writer
// could store or a bad one with a known reason.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import fc from 'fast-check';
import { buildTar, makeImage, readAll, withTempDir } from './fixtures.js';
import { BAD_REASONS } from '../../../src/shards/types.js';
import { isValidUid, keyProblem } from '../../../src/shards/keys.js';
import { readImageHeader } from '../../../src/shards/imageHeader.js';

const KNOWN_REASONS = new Set<string>(BAD_REASONS);

test('fuzz: generated tars through the reader and validator never throw; every item is good or a known bad reason', async () => {
  const jpg = await makeImage('jpg', 12, 9, 7);
  const png = await makeImage('png', 6, 5, 8);
  const keyArb = fc.oneof(
    fc.constantFrom('a', 'b', 'dir/c', '../x', '/abs', 'a.b', 'k\n', 'a//b', 'x\\y', 'ü'),
    fc.string({ maxLength: 8 }),
  );
  const extArb = fc.oneof(fc.constantFrom('jpg', 'JPEG', 'png', 'webp', 'txt', 'json', 'npy', 'b.jpg', 'x.txt', ''), fc.string({ maxLength: 5 }));
  const dataArb = fc.oneof(
    fc.constantFrom(jpg, png, jpg.subarray(0, 40), Buffer.from('{}'), Buffer.from('{"uid":"nope"}'), Buffer.from('[1]'), Buffer.from('a caption'), Buffer.from('  '), Buffer.from([0xff, 0xfe]), Buffer.alloc(0)),
    fc.uint8Array({ maxLength: 700 }).map((a) => Buffer.from(a)),
  );
  const memberArb = fc.record({ key: keyArb, ext: extArb, data: dataArb });
  const damageArb = fc.oneof(
    fc.constant({ kind: 'none' as const }),
    fc.record({ kind: fc.constant('cut' as const), at: fc.double({ min: 0, max: 1, noNaN: true }) }),
    fc.record({ kind: fc.constant('garbage' as const), at: fc.double({ min: 0, max: 1, noNaN: true }), bytes: fc.uint8Array({ minLength: 1, maxLength: 600 }) }),
  );
  await withTempDir(async (dir) => {
    let run = 0;
    await fc.assert(
      fc.asyncProperty(fc.array(memberArb, { maxLength: 14 }), damageArb, fc.boolean(), async (members, damage, decode) => {
        let bytes: Buffer;
        try {
          bytes = await buildTar(members.map((m) => ({ name: m.ext === '' ? m.key : `${m.key}.${m.ext}`, data: m.data })));
        } catch {
          return; // a name tar-stream cannot write at all: nothing to read
        }
        if (damage.kind === 'cut') bytes = bytes.subarray(0, Math.floor(bytes.length * damage.at));
        if (damage.kind === 'garbage') {
          bytes = Buffer.from(bytes);
          Buffer.from(damage.bytes).copy(bytes, Math.floor(bytes.length * damage.at));
        }
        const path = join(dir, `${String(run++).padStart(8, '0')}.tar`);
        await writeFile(path, bytes);
        const items = await readAll([path], { decodeImages: decode, decodeConcurrency: 4 });
        for (const item of items) {
          if (item.kind === 'bad') {
            assert.ok(KNOWN_REASONS.has(item.bad.reason), item.bad.reason);
            assert.equal(item.bad.shard, path);
            assert.ok(item.bad.detail.length > 0);
            continue;
          }
          assert.equal(item.kind, 'sample');
          const s = item.sample;
          assert.equal(keyProblem(s.key), null, `good sample with an unwritable key ${JSON.stringify(s.key)}`);
          assert.ok(isValidUid(s.uid));
          assert.ok(s.caption.trim().length > 0);
          const header = readImageHeader(s.image.data);
          assert.ok(header.ok && header.format === s.image.ext);
        }
      }),
      { numRuns: 300 },
    );
  });
});
