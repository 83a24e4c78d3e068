// Reshard over unusual input: an image + .txt sample without .json is copied with a json that
// carries its uid and key; a sample whose key the writer cannot store is skipped and counted
// at read time instead of aborting the job.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { readShards } from '../../../src/shards/reader.js';
import { listShards } from '../../../src/shards/listShards.js';
import { deriveUid, MAX_KEY_PART_BYTES } from '../../../src/shards/keys.js';
import { UidSorter } from '../../../src/select/uidSorter.js';
import { runReshard } from '../../../src/select/reshard.js';
import { makeImage, sampleMembers, tarFileMembers, writeTar } from '../shards/fixtures.js';
import { tempDir } from './helpers.js';

test('reshard copies a json-less sample with a json holding its uid and key, and skips unsafe keys', async () => {
  const root = await tempDir('reshard-hostile');
  const jpg = await makeImage('jpg', 8, 8);
  const input = await writeTar(root, '00000004.tar', [
    { name: 'cap1.jpg', data: jpg },
    { name: 'cap1.txt', data: 'only a caption' },
    ...sampleMembers('../../escape', jpg),
    { name: 'nl\nkey.jpg', data: jpg },
    { name: 'nl\nkey.txt', data: 'control char in the key' },
    ...sampleMembers('ok', jpg),
  ]);
  const uids = [deriveUid(input, 'cap1'), deriveUid(input, '../../escape'), deriveUid(input, 'nl\nkey'), deriveUid(input, 'ok')];
  const sorter = new UidSorter(join(root, 'sel.npy'), 8);
  for (const uid of uids) await sorter.add(uid);
  await sorter.finish();

  const out = join(root, 'out');
  const summary = await runReshard({ shards: [input], selection: join(root, 'sel.npy'), out });
  assert.equal(summary.written, 2);
  assert.deepEqual(summary.input_bad_by_reason, { unsafe_key: 2 });

  const [shard] = await listShards(out);
  const members = await tarFileMembers(shard!);
  const json = JSON.parse(members.find((m) => m.name === 'cap1.json')!.data.toString('utf8'));
  assert.deepEqual(json, { uid: uids[0], key: 'cap1' });
  const back = [];
  for await (const item of readShards([shard!])) back.push(item);
  assert.deepEqual(back.map((i) => (i.kind === 'sample' ? [i.sample.key, i.sample.uid] : i.bad.reason)), [['cap1', uids[0]], ['ok', uids[3]]]);
});

test('a key at the length limit that an upsampled copy would push over it gets a short key instead of aborting', async () => {
  const root = await tempDir('reshard-long');
  const jpg = await makeImage('jpg', 8, 8);
  const longKey = 'k'.repeat(MAX_KEY_PART_BYTES);
  const input = await writeTar(root, '00000000.tar', sampleMembers(longKey, jpg));
  const uid = deriveUid(input, longKey);
  const sorter = new UidSorter(join(root, 'sel.npy'), 8);
  await sorter.add(uid);
  await sorter.finish();
  const boost = new UidSorter(join(root, 'boost.npy'), 8);
  await boost.add(uid);
  await boost.finish();
  const summary = await runReshard({ shards: [input], selection: join(root, 'sel.npy'), out: join(root, 'out'), upsample: [{ path: join(root, 'boost.npy'), k: 2 }] });
  assert.equal(summary.written, 2);
  assert.equal(summary.renamed_keys, 1);
  const back = [];
  for await (const item of readShards(await listShards(join(root, 'out')))) back.push(item);
  assert.deepEqual(back.map((i) => (i.kind === 'sample' ? [i.sample.key, i.sample.uid] : i.bad.reason)), [[longKey, uid], ['r000000001', uid]]);
});
