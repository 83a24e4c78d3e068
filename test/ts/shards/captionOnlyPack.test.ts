// `loom pack` takes an image + .txt sample without .json (img2dataset caption sets) as the good
// sample the reader now calls it, and still counts a hostile key as bad instead of failing.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { resolveRunConfig } from '../../../src/config/resolve.js';
import { runPack } from '../../../src/pack/run.js';
import { makeImage, sampleMembers, withTempDir, writeTar } from './fixtures.js';
import { join } from 'node:path';

test('pack packs json-less samples and counts unsafe keys as bad', async () => {
  await withTempDir(async (dir) => {
    const jpg = await makeImage('jpg', 32, 24);
    const members = [];
    for (let i = 0; i < 4; i++) members.push({ name: `c${i}.jpg`, data: jpg }, { name: `c${i}.txt`, data: `a small picture number ${i}` });
    members.push(...sampleMembers('../evil', jpg));
    await writeTar(dir, '00000000.tar', members);
    const config = resolveRunConfig({ preset: 'tiny', stage: 'pretrain', name: 'run', overrides: [], assignments: [] });
    const result = await runPack({ config, shards: join(dir, '00000000.tar'), out: join(dir, 'packed'), window: 100, sequencesPerShard: 2 });
    assert.equal(result.complete, true);
    assert.equal(result.total!.samples_read, 4);
    assert.deepEqual(result.total!.bad_reasons, { unsafe_key: 1 });
  });
});
