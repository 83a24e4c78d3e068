import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import fc from 'fast-check';
import { expandBraces, listShards } from '../../../src/shards/listShards.js';
import { LoomError } from '../../../src/util/errors.js';
import { withTempDir } from './fixtures.js';

test('a directory lists its .tar files sorted, skipping temp files and other files', async () => {
  await withTempDir(async (dir) => {
    for (const n of ['00000002.tar', '00000000.tar', '00000001.tar', '00000000_stats.json', 'notes.txt', '.00000003.tar.tmp-12-0badbeef']) await writeFile(join(dir, n), '');
    await mkdir(join(dir, 'sub.tar'));
    assert.deepEqual(await listShards(dir), ['00000000.tar', '00000001.tar', '00000002.tar'].map((n) => join(dir, n)));
  });
});

test('files, brace ranges and mixtures resolve in order, each path once', async () => {
  await withTempDir(async (dir) => {
    for (let i = 0; i < 12; i++) await writeFile(join(dir, `${String(i).padStart(8, '0')}.tar`), '');
    const one = join(dir, '00000003.tar');
    assert.deepEqual(await listShards(one), [one]);
    const range = await listShards(join(dir, '{00000008..00000011}.tar'));
    assert.deepEqual(range, [8, 9, 10, 11].map((i) => join(dir, `${String(i).padStart(8, '0')}.tar`)));
    const mixed = await listShards([one, join(dir, '{00000002..00000004}.tar'), dir]);
    assert.equal(mixed.length, 12);
    assert.deepEqual(mixed.slice(0, 3), [one, join(dir, '00000002.tar'), join(dir, '00000004.tar')]);
  });
});

test('nothing matching is a clear error naming the spec', async () => {
  await withTempDir(async (dir) => {
    await writeFile(join(dir, '00000000.tar'), '');
    await assert.rejects(listShards(join(dir, 'nope.tar')), (e: unknown) => e instanceof LoomError && /no such shard file or directory: .*nope\.tar/.test(e.message));
    await assert.rejects(listShards(join(dir, '{00000000..00000002}.tar')), (e: unknown) => e instanceof LoomError && /00000001\.tar, .*00000002\.tar/.test(e.message));
    await mkdir(join(dir, 'empty'));
    await assert.rejects(listShards(join(dir, 'empty')), /holds no \.tar shards/);
    await assert.rejects(listShards([]), /no shard paths/);
    await assert.rejects(listShards(join(dir, '{5..2}.tar')), /greater/);
  });
});

test('brace expansion: count, order, padding and several ranges (property)', () => {
  fc.assert(
    fc.property(fc.nat(500), fc.nat(30), fc.integer({ min: 1, max: 8 }), fc.nat(3), (from, span, width, second) => {
      const a = String(from).padStart(width, '0');
      const b = String(from + span);
      const out = expandBraces(`p/{${a}..${b}}.tar`);
      assert.equal(out.length, span + 1);
      out.forEach((p, i) => {
        assert.equal(p, `p/${String(from + i).padStart(a.length, '0')}.tar`);
      });
      const two = expandBraces(`{${a}..${b}}_{0..${second}}`);
      assert.equal(two.length, (span + 1) * (second + 1));
      assert.equal(new Set(two).size, two.length);
    }),
  );
  assert.deepEqual(expandBraces('plain.tar'), ['plain.tar']);
});
