// `loom train --packed DIR` on a folder that is not the output of `loom pack` fails with one
// clear line naming the folder, before any worker starts.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { repoRoot } from '../../../src/util/paths.js';
import { checkPackedDir } from '../../../src/train/packedDir.js';
import { buildTar, makeImage, sampleMembers } from '../shards/fixtures.js';

const train = (cwd: string, packed: string) =>
  spawnSync(process.execPath, [join(repoRoot(), 'bin', 'loom.js'), 'train', '--preset', 'tiny', '--name', 'p', '--packed', packed], { cwd, encoding: 'utf8', timeout: 60_000 });

test('loom train refuses an empty folder, raw shards and non-tars as --packed, naming the folder', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'loom-packed-'));
  try {
    mkdirSync(join(dir, 'empty'));
    mkdirSync(join(dir, 'raw'));
    mkdirSync(join(dir, 'raw', 'w000000'), { recursive: true });
    writeFileSync(join(dir, 'raw', 'w000000', '00000000.tar'), await buildTar(sampleMembers('000000000', await makeImage('jpg', 8, 8))));
    mkdirSync(join(dir, 'text', 'w000000'), { recursive: true });
    writeFileSync(join(dir, 'text', 'w000000', '00000000.tar'), 'not a tar at all\n'.repeat(64));

    const empty = train(dir, 'empty');
    assert.equal(empty.status, 2);
    assert.match(empty.stderr, new RegExp(`--packed ${join(dir, 'empty')}: no packed shards`));
    const raw = train(dir, 'raw');
    assert.equal(raw.status, 2);
    assert.ok(raw.stderr.includes(`--packed ${join(dir, 'raw')}: w000000/00000000.tar is not a packed shard (its first member is "000000000.jpg", not __loom_pack__.json)`), raw.stderr);
    assert.match(raw.stderr, /loom pack/);
    const text = train(dir, 'text');
    assert.match(text.stderr, /w000000\/00000000\.tar is not a packed shard \(no tar header/);
    for (const run of [empty, raw, text]) assert.doesNotMatch(run.stderr, /Traceback|python/i, 'the worker never started');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a finished pack passes; one without pack.json is unfinished; shards at the top level are not where the trainer looks', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'loom-packed-'));
  try {
    const shard = await buildTar([{ name: '__loom_pack__.json', data: '{}' }, { name: '000000000.json', data: '{}' }]);
    writeFileSync(join(dir, '00000000.tar'), shard);
    writeFileSync(join(dir, 'pack.json'), '{}');
    assert.throws(() => checkPackedDir(dir), /no packed shards \(w\*\/\{:08d\}\.tar\)/);
    mkdirSync(join(dir, 'w000000'));
    writeFileSync(join(dir, 'w000000', '00000000.tar'), shard);
    checkPackedDir(dir);
    rmSync(join(dir, 'pack.json'));
    assert.throws(() => checkPackedDir(dir), /the pack is not finished \(no pack\.json\)/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
