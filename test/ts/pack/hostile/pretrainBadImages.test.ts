// Pre-training pack on shards holding bad images: the ones the reader's header check lets
// through (a cut JPEG: only pass 2's decode finds it) and the ones it or pass 1 refuses (a PNG
// announcing 30000x30000, zero bytes, text named .jpg). Each is skipped and counted once; every
// good sample around it is packed exactly once; the report matches the shards; a rerun is equal.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { mkdir, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { runPack } from '../../../../src/pack/run.js';
import { repoRoot } from '../../../../src/util/paths.js';
import { assertSameFiles, packedFiles } from '../packedOutput.js';
import { sampleMembers, writeTar, type RawMember } from '../../shards/fixtures.js';
import { makeImageKit, packedUids, tinyConfig, uidOf, type ImageKit } from './fixtures.js';

const exec = promisify(execFile);

type Kind = 'good' | 'cut' | 'bomb' | 'zero' | 'text';
const REASON: Record<Exclude<Kind, 'good'>, string> = { cut: 'truncated_image', bomb: 'image_too_large', zero: 'corrupt_image', text: 'corrupt_image' };

let root = '';
let kit: ImageKit;

before(async () => {
  root = await mkdtemp(join(tmpdir(), 'loom-pack-hostile-'));
  kit = await makeImageKit();
});

after(async () => {
  if (root) await rm(root, { recursive: true, force: true });
});

/** One shard of these samples in order; sample n has uid uidOf(n) and key k{n}. */
async function writeShard(dir: string, kinds: Kind[]): Promise<string> {
  const members: RawMember[] = kinds.flatMap((kind, n) => {
    const image = kind === 'good' ? kit.good[n % kit.good.length]! : kind === 'cut' ? kit.cut : kind === 'bomb' ? kit.bomb : kind === 'zero' ? Buffer.alloc(0) : kit.text;
    return sampleMembers(`k${String(n).padStart(4, '0')}`, image, kind === 'bomb' ? 'png' : 'jpg', `caption number ${n} of a hostile shard`, { uid: uidOf(n) });
  });
  await mkdir(dir, { recursive: true });
  return writeTar(dir, '00000000.tar', members);
}

function expectedReasons(kinds: Kind[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const k of kinds) if (k !== 'good') out[REASON[k]] = (out[REASON[k]] ?? 0) + 1;
  return out;
}

/** Every good uid packed exactly once, no bad one packed, and the report equals what was written. */
async function checkPacked(out: string, kinds: Kind[], total: Record<string, any>): Promise<void> {
  const packed = await packedUids(out);
  const good = kinds.flatMap((k, n) => (k === 'good' ? [uidOf(n)] : []));
  assert.deepEqual([...packed.counts.keys()].sort(), good.sort(), 'exactly the good uids are packed');
  assert.ok([...packed.counts.values()].every((c) => c === 1), 'no uid is packed twice');
  assert.deepEqual(total.bad_reasons, expectedReasons(kinds));
  assert.equal(total.bad_samples, kinds.length - good.length);
  assert.equal(total.samples_read, good.length);
  assert.equal(total.documents.documents, good.length);
  assert.equal(total.documents.kept + total.documents.truncated, good.length);
  assert.equal(total.sequences, packed.sequences);
  assert.equal(total.images, packed.images);
  assert.equal(total.real_tokens, packed.tokens);
  assert.equal(total.capacity_tokens, packed.sequences * tinyConfig('pretrain').data.seq_len);
  assert.equal(total.efficiency, packed.sequences === 0 ? 0 : packed.tokens / total.capacity_tokens);
}

const HOSTILE: Kind[] = ['good', 'cut', 'good', 'good', 'bomb', 'good', 'zero', 'good', 'text', 'good', 'good', 'cut', 'good'];

test('pack: a cut JPEG, a 30000x30000 PNG, a zero-byte and a text ".jpg" are skipped and counted; the good samples are all packed', async () => {
  const dir = join(root, 'one');
  const shard = await writeShard(dir, HOSTILE);
  const out = join(dir, 'out');
  const result = await runPack({ config: tinyConfig('pretrain'), shards: shard, out, window: 3, sequencesPerShard: 2 });
  assert.ok(result.complete);
  await checkPacked(out, HOSTILE, result.total!);
  assert.deepEqual(result.total, JSON.parse(await readFile(join(out, 'pack.json'), 'utf8')));
  // The cut JPEGs pass the reader (header only) and are found in pass 2, in their own windows.
  const late = [];
  for (let w = 0; w < result.windows; w++) {
    const report = JSON.parse(await readFile(join(out, `w${String(w).padStart(6, '0')}.done.json`), 'utf8'));
    if (report.bad_reasons.truncated_image) late.push(w);
    assert.equal(report.documents.documents, report.samples_read, `window ${w}: a skipped sample is no document`);
  }
  assert.ok(late.length >= 1);

  // Rerun into the same folder: nothing to do, the same pack.json. A window whose done file is
  // gone (a killed run) is packed again to the same bytes, bad samples counted the same way.
  const again = await runPack({ config: tinyConfig('pretrain'), shards: shard, out, window: 3, sequencesPerShard: 2 });
  assert.deepEqual(again.packed_windows, []);
  const fresh = join(dir, 'fresh');
  await runPack({ config: tinyConfig('pretrain'), shards: shard, out: fresh, window: 3, sequencesPerShard: 2 });
  for (const w of late) await rm(join(fresh, `w${String(w).padStart(6, '0')}.done.json`));
  await rm(join(fresh, 'pack.json'));
  const resumed = await runPack({ config: tinyConfig('pretrain'), shards: shard, out: fresh, window: 3, sequencesPerShard: 2 });
  assert.deepEqual(resumed.packed_windows, late);
  assertSameFiles(await packedFiles(out), await packedFiles(fresh));
  const strip = (s: Record<string, unknown>) => ({ ...s, seconds: 0, samples_per_s: 0, images_per_s: 0 });
  assert.deepEqual(strip(resumed.total!), strip(result.total!));
});

test('pack: a bin whose only documents have bad images writes no sequence; keys stay unique', async () => {
  const kinds: Kind[] = ['cut', 'cut', 'good'];
  const dir = join(root, 'lonely');
  const shard = await writeShard(dir, kinds);
  const out = join(dir, 'out');
  // One image per sequence: each cut JPEG had a bin to itself.
  const config = tinyConfig('pretrain', ['data.max_images_per_sequence=1']);
  const result = await runPack({ config, shards: shard, out, window: 10 });
  const total = result.total!;
  assert.equal(total.sequences, 1);
  assert.equal(total.images_per_sequence.min, 1);
  await checkPacked(out, kinds, total);
  const windowDir = (await readdir(out)).find((n) => /^w\d{6}$/.test(n))!;
  assert.ok((await readdir(join(out, windowDir))).some((n) => n.endsWith('.tar')));
});

test('loom pack (CLI): a shard with bad images packs, and the rerun completes, with no internal error or stack trace', async () => {
  const dir = join(root, 'cli');
  const shard = await writeShard(dir, HOSTILE);
  const out = join(dir, 'out');
  const args = [join(repoRoot(), 'bin', 'loom.js'), 'pack', '--preset', 'tiny', '--shards', shard, '--out', out, '--window', '4', '--json', '--quiet'];
  for (const attempt of ['first run', 'rerun']) {
    const { stdout, stderr } = await exec(process.execPath, args, { maxBuffer: 1 << 24 }).catch((err: { stdout: string; stderr: string; code: number }) => {
      assert.fail(`${attempt} exited ${err.code}: ${err.stderr}`);
    });
    assert.doesNotMatch(stderr, /internal error|\n\s+at /, attempt);
    const summary = JSON.parse(stdout);
    assert.equal(summary.complete, true, attempt);
    assert.deepEqual(summary.total.bad_reasons, expectedReasons(HOSTILE), attempt);
  }
  const human = await exec(process.execPath, args.filter((a) => a !== '--json'));
  assert.match(human.stdout, /bad samples skipped\s+5 \(.*truncated_image 2/);
});

test('pack (property): random mixes of good and bad images: every good uid packed once, every bad one counted once', async () => {
  let run = 0;
  await fc.assert(
    fc.asyncProperty(fc.array(fc.constantFrom<Kind>('good', 'good', 'good', 'cut', 'bomb', 'zero', 'text'), { minLength: 1, maxLength: 14 }), fc.integer({ min: 1, max: 5 }), async (kinds, window) => {
      const dir = join(root, `prop-${run++}`);
      const shard = await writeShard(dir, kinds);
      const out = join(dir, 'out');
      const result = await runPack({ config: tinyConfig('pretrain'), shards: shard, out, window, sequencesPerShard: 3 });
      assert.ok(result.complete);
      await checkPacked(out, kinds, result.total!);
      await rm(dir, { recursive: true, force: true });
    }),
    { numRuns: 12, seed: 42 },
  );
});

test('loom pack (CLI): an unreadable pack-plan.json or window report, or an --out the OS refuses, is a clear error naming the file, not an internal one', async () => {
  const dir = join(root, 'corrupt-out');
  const shard = await writeShard(dir, ['good', 'good', 'good']);
  const out = join(dir, 'out');
  const args = [join(repoRoot(), 'bin', 'loom.js'), 'pack', '--preset', 'tiny', '--shards', shard, '--out', out, '--window', '2', '--quiet'];
  await exec(process.execPath, args);
  const failing = async () => {
    const err = (await exec(process.execPath, args).then(() => assert.fail('expected a failure'), (e: { code: number; stderr: string }) => e)) as { code: number; stderr: string };
    assert.equal(err.code, 1);
    assert.doesNotMatch(err.stderr, /internal error|\n\s+at /);
    return err.stderr;
  };
  await writeFile(join(out, 'w000001.done.json'), '{"window": 1, "cut');
  assert.match(await failing(), /^loom: error: .*w000001\.done\.json: cannot read .*delete it to pack window 1 again/);
  await writeFile(join(out, 'pack-plan.json'), 'not json');
  assert.match(await failing(), /^loom: error: .*pack-plan\.json: cannot read .*pack into a new --out/);
  // An --out that is a file is one error line too.
  const outIsFile = args.map((a) => (a === out ? shard : a));
  const err = (await exec(process.execPath, outIsFile).then(() => assert.fail('expected a failure'), (e: { code: number; stderr: string }) => e)) as { code: number; stderr: string };
  assert.match(err.stderr, /^loom: error: --out .*00000000\.tar exists and is not a directory/);
  assert.doesNotMatch(err.stderr, /internal error|\n\s+at /);
});
