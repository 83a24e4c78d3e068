// SFT pack on a LLaVA JSON naming hostile image paths: escapes from the image root (.., absolute
// paths, symlinks), things that are not regular files (a directory, a FIFO, /dev/zero), a 1 GiB
// sparse file over the size cap, and files that are not good images. Each is a bad record with
// its reason, counted once and listed with its id and index; the files are never read (a FIFO
// read would hang the test, a 1 GiB read would show); every good conversation is packed once.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { mkdir, mkdtemp, realpath, rm, symlink, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { runPack } from '../../../../src/pack/run.js';
import { readSftJson, sftUid } from '../../../../src/pack/sft.js';
import { repoRoot } from '../../../../src/util/paths.js';
import { makeImageKit, packedUids, tinyConfig } from './fixtures.js';

const exec = promisify(execFile);
const loom = (args: string[]) => exec(process.execPath, [join(repoRoot(), 'bin', 'loom.js'), ...args], { maxBuffer: 1 << 24 });

let root = '';
let data = '';
let outside = '';
let hasFifo = false;

/** The image path of each kind of record, relative to data/ (the JSON's folder) unless absolute, and the reason it must give. */
let KINDS: Record<string, { image: string | null; reason: string | null }> = {};

before(async () => {
  root = await mkdtemp(join(tmpdir(), 'loom-sft-hostile-'));
  data = join(root, 'data');
  outside = join(root, 'outside');
  await mkdir(join(data, 'images', 'adir'), { recursive: true });
  await mkdir(outside, { recursive: true });
  const kit = await makeImageKit();
  for (const [i, img] of kit.good.entries()) await writeFile(join(data, 'images', `g${i}.jpg`), img);
  await writeFile(join(outside, 'secret.jpg'), kit.good[0]!);
  await writeFile(join(data, 'images', 'cut.jpg'), kit.cut);
  await writeFile(join(data, 'images', 'bomb.png'), kit.bomb);
  await writeFile(join(data, 'images', 'zero.jpg'), Buffer.alloc(0));
  await writeFile(join(data, 'images', 'text.jpg'), kit.text);
  await writeFile(join(data, 'images', 'sparse.jpg'), kit.good[1]!);
  await truncate(join(data, 'images', 'sparse.jpg'), 2 ** 30); // 1 GiB, sparse: free to make, slow to read
  await symlink('g2.jpg', join(data, 'images', 'link_in.jpg'));
  await symlink(join(outside, 'secret.jpg'), join(data, 'images', 'link_out.jpg'));
  await symlink(join(outside, 'nothing.jpg'), join(data, 'images', 'dangling.jpg'));
  try {
    await exec('mkfifo', [join(data, 'images', 'fifo.jpg')]);
    await exec('mkfifo', [join(outside, 'fifo.jpg')]);
    await symlink(join(outside, 'fifo.jpg'), join(data, 'images', 'link_fifo.jpg'));
    hasFifo = true;
  } catch {
    // No mkfifo here: the FIFO records are left out.
  }
  KINDS = {
    good0: { image: 'images/g0.jpg', reason: null },
    good1: { image: 'images/g1.jpg', reason: null },
    good2: { image: './images/sub/../g2.jpg', reason: null },
    text_only: { image: null, reason: null },
    link_in: { image: 'images/link_in.jpg', reason: null },
    cut: { image: 'images/cut.jpg', reason: 'truncated_image' },
    bomb: { image: 'images/bomb.png', reason: 'image_too_large' },
    zero: { image: 'images/zero.jpg', reason: 'corrupt_image' },
    text: { image: 'images/text.jpg', reason: 'corrupt_image' },
    dir: { image: 'images/adir', reason: 'image_not_a_file' },
    sparse: { image: 'images/sparse.jpg', reason: 'image_too_big' },
    dotdot: { image: '../outside/secret.jpg', reason: 'image_outside_root' },
    dotdot_deep: { image: 'images/../../outside/secret.jpg', reason: 'image_outside_root' },
    absolute: { image: join(outside, 'secret.jpg'), reason: 'image_outside_root' },
    absolute_inside: { image: join(data, 'images', 'g0.jpg'), reason: 'image_outside_root' },
    dev_zero: { image: '/dev/zero', reason: 'image_outside_root' },
    link_out: { image: 'images/link_out.jpg', reason: 'image_outside_root' },
    dangling: { image: 'images/dangling.jpg', reason: 'image_missing' },
    missing: { image: 'images/nope.jpg', reason: 'image_missing' },
    ...(hasFifo ? { fifo: { image: 'images/fifo.jpg', reason: 'image_not_a_file' }, link_fifo: { image: 'images/link_fifo.jpg', reason: 'image_outside_root' } } : {}),
  };
});

after(async () => {
  if (root) await rm(root, { recursive: true, force: true });
});

/** A LLaVA JSON of one record per kind, in this order (ids kind#n), written next to data/images. */
async function writeJson(name: string, kinds: string[]): Promise<{ path: string; ids: string[] }> {
  const ids = kinds.map((k, n) => `${k}#${n}`);
  const records = kinds.map((k, n) => {
    const { image } = KINDS[k]!;
    return { id: ids[n], ...(image !== null ? { image } : {}), conversations: [{ from: 'human', value: `${image !== null ? '<image>\n' : ''}Question ${n}?` }, { from: 'gpt', value: `Answer ${n}.` }] };
  });
  const path = join(data, name);
  await writeFile(path, JSON.stringify(records));
  return { path, ids };
}

async function checkPacked(out: string, kinds: string[], ids: string[], total: Record<string, any>): Promise<void> {
  const good = ids.filter((_, n) => KINDS[kinds[n]!]!.reason === null);
  const packed = await packedUids(out);
  assert.deepEqual([...packed.counts.keys()].sort(), good.map(sftUid).sort(), 'exactly the good conversations are packed');
  assert.ok([...packed.counts.values()].every((c) => c === 1), 'no conversation is packed twice');
  const bad = kinds.flatMap((k, n) => (KINDS[k]!.reason === null ? [] : [{ id: ids[n], index: n, reason: KINDS[k]!.reason }]));
  assert.deepEqual(
    total.bad_records.map((b: Record<string, unknown>) => ({ id: b.id, index: b.index, reason: b.reason })),
    bad,
    'every bad record listed once, in file order, with its reason',
  );
  const reasons: Record<string, number> = {};
  for (const b of bad) reasons[b.reason!] = (reasons[b.reason!] ?? 0) + 1;
  assert.deepEqual(Object.fromEntries(Object.entries(total.bad_reasons).sort()), Object.fromEntries(Object.entries(reasons).sort()));
  assert.equal(total.bad_samples, bad.length);
  assert.equal(total.samples_read, good.length);
  assert.equal(total.documents.kept + total.documents.truncated, good.length);
  assert.equal(total.images, good.filter((_, i) => KINDS[kinds[ids.indexOf(good[i]!)]!]!.image !== null).length);
  assert.equal(total.images, packed.images);
  assert.equal(total.sequences, packed.sequences);
  assert.equal(total.real_tokens, packed.tokens);
}

test('pack sft: hostile image paths and files are bad records with their reasons; every good conversation is packed once', { timeout: 120_000 }, async () => {
  const kinds = Object.keys(KINDS).flatMap((k, i) => (i % 3 === 0 ? ['good0', k] : [k])).concat(['good1']);
  const { path, ids } = await writeJson('hostile.json', kinds);
  const out = join(root, 'out-hostile');
  const started = performance.now();
  const result = await runPack({ config: tinyConfig('sft'), sftJson: path, out, window: 4, sequencesPerShard: 2 });
  assert.ok(result.complete);
  await checkPacked(out, kinds, ids, result.total!);
  assert.ok(performance.now() - started < 60_000, 'the 1 GiB file was not read');
  // The detail says which file and why, for the person who has to fix the JSON.
  const sparse = result.total!.bad_records!.find((b) => b.id.startsWith('sparse#'))!;
  assert.match(sparse.detail!, /sparse\.jpg: 1073741824 bytes, over the cap of 67108864 \(--max-image-bytes\)/);
  const linkOut = result.total!.bad_records!.find((b) => b.id.startsWith('link_out#'))!;
  assert.match(linkOut.detail!, /symlink.*outside the image root/);
});

test('readSftJson: /dev/zero under an image root of /dev is not a file and is never opened; a missing root is fatal; details are bounded', { timeout: 30_000 }, async () => {
  const path = join(root, 'dev.json');
  await writeFile(path, JSON.stringify([{ id: 'z', image: 'zero', conversations: [{ from: 'human', value: 'q' }, { from: 'gpt', value: 'a' }] }]));
  const [entry] = await readSftJson(path, { imageRoot: '/dev' });
  assert.ok(entry && !entry.ok);
  assert.equal(entry.bad.reason, 'image_not_a_file');
  assert.match(entry.bad.detail!, /character device/);
  await assert.rejects(readSftJson(path, { imageRoot: join(root, 'no-such-root') }), /image root .*no-such-root: no such directory/);
  // A path of any length gives a bounded detail (reports keep up to 1000 bad records).
  await writeFile(path, JSON.stringify([{ id: 'long', image: `${'x'.repeat(20_000)}.jpg`, conversations: [{ from: 'human', value: 'q' }, { from: 'gpt', value: 'a' }] }]));
  const [long] = await readSftJson(path);
  assert.ok(long && !long.ok && long.bad.reason === 'image_unreadable' && long.bad.detail!.length <= 400, JSON.stringify(long).slice(0, 200));
});

test('readSftJson: a JPEG whose frame header lies past the first 64 KiB (large APP segments) is read whole and accepted', async () => {
  const good = (await makeImageKit()).good[0]!;
  const app = (fill: number) => Buffer.concat([Buffer.from([0xff, 0xe2, 0xea, 0x60]), Buffer.alloc(60_000 - 2, fill)]); // APP2, length 60,000
  await writeFile(join(data, 'images', 'late_header.jpg'), Buffer.concat([good.subarray(0, 2), app(1), app(2), good.subarray(2)]));
  const path = join(data, 'late.json');
  await writeFile(path, JSON.stringify([{ id: 'late', image: 'images/late_header.jpg', conversations: [{ from: 'human', value: 'q' }, { from: 'gpt', value: 'a' }] }]));
  const [entry] = await readSftJson(path);
  assert.ok(entry && entry.ok, JSON.stringify(entry));
  assert.equal(entry.record.image, join(await realpath(data), 'images', 'late_header.jpg'));
});

test('loom pack --stage sft: --image-root confines and resolves paths, --max-image-bytes caps files; both are in the plan', async () => {
  // The JSON lives apart from its images, as in LLaVA's layout (llava_v1_5_mix665k.json + a data folder).
  const jsonDir = join(root, 'json-apart');
  await mkdir(jsonDir, { recursive: true });
  const json = join(jsonDir, 'llava.json');
  const conv = [{ from: 'human', value: '<image>\nq' }, { from: 'gpt', value: 'a' }];
  await writeFile(json, JSON.stringify([{ id: 'a', image: 'images/g0.jpg', conversations: conv }, { id: 'b', image: 'images/g1.jpg', conversations: conv }]));
  const base = ['pack', '--preset', 'tiny', '--stage', 'sft', '--sft-json', json, '--json', '--quiet'];
  // Default root: the JSON's folder, where images/ does not exist.
  const byDefault = JSON.parse((await loom([...base, '--out', join(root, 'cli-default')])).stdout);
  assert.deepEqual(byDefault.total.bad_reasons, { image_missing: 2 });
  const rooted = JSON.parse((await loom([...base, '--image-root', data, '--out', join(root, 'cli-rooted')])).stdout);
  assert.equal(rooted.total.images, 2);
  assert.deepEqual(rooted.total.bad_reasons, {});
  // A cap between the two files' sizes: the larger is a bad record.
  const sizes = (await makeImageKit()).good.slice(0, 2).map((b) => b.length);
  const cap = Math.min(...sizes);
  const capped = JSON.parse((await loom([...base, '--image-root', data, '--max-image-bytes', String(cap), '--out', join(root, 'cli-capped')])).stdout);
  assert.equal(capped.total.images, sizes[0] === sizes[1] ? 2 : 1);
  if (sizes[0] !== sizes[1]) assert.deepEqual(capped.total.bad_reasons, { image_too_big: 1 });
  // Another root or cap decides other records: resuming into the same folder is refused.
  const refused = await loom([...base, '--image-root', jsonDir, '--out', join(root, 'cli-rooted')]).catch((err: { stderr: string; code: number }) => err);
  assert.equal((refused as { code: number }).code, 1);
  assert.match((refused as { stderr: string }).stderr, /^loom: error: .*packed with other/);
  const pre = await loom(['pack', '--preset', 'tiny', '--shards', data, '--image-root', data, '--out', join(root, 'cli-pre')]).catch((err: { stderr: string }) => err);
  assert.match((pre as { stderr: string }).stderr, /--image-root needs a stage sft config/);
  const help = (await loom(['pack', '--help'])).stdout;
  for (const word of ['--image-root', '--max-image-bytes', 'image_outside_root', 'image_not_a_file', 'image_too_big', 'truncated_image']) assert.ok(help.includes(word), `help mentions ${word}`);
});

test('pack sft (property): random mixes of good and bad records: every good conversation packed once, every bad one counted once', { timeout: 300_000 }, async () => {
  let run = 0;
  const kinds = Object.keys(KINDS).filter((k) => k !== 'sparse');
  await fc.assert(
    fc.asyncProperty(fc.array(fc.constantFrom(...kinds, 'good0', 'good1', 'text_only'), { minLength: 1, maxLength: 16 }), fc.integer({ min: 1, max: 6 }), async (picked, window) => {
      const { path, ids } = await writeJson(`prop-${run}.json`, picked);
      const out = join(root, `prop-out-${run++}`);
      const result = await runPack({ config: tinyConfig('sft'), sftJson: path, out, window, sequencesPerShard: 3 });
      assert.ok(result.complete);
      await checkPacked(out, picked, ids, result.total!);
      await rm(out, { recursive: true, force: true });
    }),
    { numRuns: 12, seed: 7 },
  );
});
