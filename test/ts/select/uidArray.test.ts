import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import fc from 'fast-check';
import { UidSorter } from '../../../src/select/uidSorter.js';
import { readUidNpy } from '../../../src/select/uidNpy.js';
import { python, tempDir, testUid } from './helpers.js';

const uidArb = fc.oneof(
  fc.stringMatching(/^[0-9a-f]{32}$/),
  // Uids that share long prefixes, so the later words decide the order.
  fc.tuple(fc.constantFrom('00000000', 'ffffffff', '7fffffff'), fc.stringMatching(/^[0-9a-f]{24}$/)).map(([a, b]) => a + b),
);

test('property: runs of any size merge into the sorted unique uids (the merge path included)', async () => {
  const dir = await tempDir('sort');
  let n = 0;
  await fc.assert(
    fc.asyncProperty(fc.array(uidArb, { maxLength: 300 }), fc.integer({ min: 1, max: 40 }), async (raw, runSize) => {
      const uids = [...raw, ...raw.slice(0, raw.length >> 2)]; // with duplicates
      const target = join(dir, `sel${n++}.npy`);
      const sorter = new UidSorter(target, runSize);
      for (const u of uids) await sorter.add(u);
      const count = await sorter.finish();
      const want = [...new Set(uids)].sort();
      assert.equal(count, want.length);
      const got = await readUidNpy(target);
      assert.deepEqual(Array.from({ length: got.size }, (_, i) => got.uidAt(i)), want);
      if (uids.length > runSize) assert.ok(sorter.spilledRuns >= 1);
    }),
    { numRuns: 60 },
  );
  // No temporary run directories or files are left behind.
  assert.deepEqual((await readdir(dir)).filter((f) => !/^sel\d+\.npy$/.test(f)), []);
});

test('more runs than the merge fan-in are merged in groups', async () => {
  const dir = await tempDir('fanin');
  const uids = Array.from({ length: 700 }, (_, i) => testUid('fanin', i % 650));
  const sorter = new UidSorter(join(dir, 'sel.npy'), 3);
  for (const u of uids) await sorter.add(u);
  assert.equal(await sorter.finish(), 650);
  assert.ok(sorter.spilledRuns > 64);
  const got = await readUidNpy(join(dir, 'sel.npy'));
  assert.deepEqual(Array.from({ length: got.size }, (_, i) => got.uidAt(i)), [...new Set(uids)].sort());
});

test('the .npy is byte-identical to numpy\'s np.save of the same u8,u8 array, and numpy reads the uids back', async () => {
  const dir = await tempDir('npy');
  const uids = Array.from({ length: 257 }, (_, i) => testUid('npy', i));
  uids.push('ffffffffffffffffffffffffffffffff', '00000000000000000000000000000000', '8000000000000000000000000000000f');
  const sorter = new UidSorter(join(dir, 'sel.npy'), 50);
  for (const u of uids) await sorter.add(u);
  await sorter.finish();
  await writeFile(join(dir, 'uids.json'), JSON.stringify(uids));
  const out = python(
    `
import json, sys, numpy as np
d = sys.argv[1] if len(sys.argv) > 1 else ${JSON.stringify(dir)}
uids = json.load(open(d + '/uids.json'))
a = np.load(d + '/sel.npy', allow_pickle=False)
assert a.dtype == np.dtype('u8,u8'), a.dtype
want = np.array(sorted({(int(u[:16], 16), int(u[16:], 16)) for u in uids}), dtype='u8,u8')
assert np.array_equal(a, want)
np.save(d + '/numpy.npy', want)
print(json.dumps(['%016x%016x' % (int(r['f0']), int(r['f1'])) for r in a]))
`,
  );
  assert.deepEqual(JSON.parse(out), [...new Set(uids)].sort());
  assert.deepEqual(await readFile(join(dir, 'sel.npy')), await readFile(join(dir, 'numpy.npy')));
});

test('readUidNpy names the file and the problem', async () => {
  const dir = await tempDir('badnpy');
  await writeFile(join(dir, 'junk.npy'), 'not numpy');
  await assert.rejects(readUidNpy(join(dir, 'junk.npy')), /junk\.npy: not a \.npy file/);
  python(`import numpy as np; np.save(${JSON.stringify(join(dir, 'i4.npy'))}, np.arange(3, dtype='<i4'))`);
  await assert.rejects(readUidNpy(join(dir, 'i4.npy')), /i4\.npy: expected a 1-D numpy array of dtype u8,u8/);
  python(`import numpy as np; np.save(${JSON.stringify(join(dir, 'unsorted.npy'))}, np.array([(2, 0), (1, 0)], dtype='u8,u8'))`);
  await assert.rejects(readUidNpy(join(dir, 'unsorted.npy')), /unsorted\.npy: uids are not sorted/);
  await assert.rejects(readUidNpy(join(dir, 'missing.npy')), /missing\.npy: cannot read/);
});
