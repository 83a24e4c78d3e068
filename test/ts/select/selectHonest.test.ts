// `loom select` over imperfect sidecars: top/bottom fractions are fractions of the rows the rule
// is applied to (rows with an invalid or repeated uid are skipped in both passes), and the spill
// leftovers of a killed run are removed by the next run, and nothing else is.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdir, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { runSelect } from '../../../src/select/select.js';
import { tempDir, testUid, writeSidecars } from './helpers.js';

async function imperfectSidecar(): Promise<{ dir: string; uids: string[] }> {
  const dir = await tempDir('honest');
  const uids = Array.from({ length: 40 }, (_, i) => testUid('honest', i));
  const values = uids.map((_, i) => i + 1);
  // 5 rows with an invalid uid and 5 repeating a uid, all with the highest scores: counted in the
  // quantile, they would push the threshold up and keep fewer than half of the real rows.
  const rows = [...uids, ...Array.from({ length: 5 }, (_, i) => `not-a-uid-${i}`), ...uids.slice(0, 5)];
  const scores = [...values, 100, 101, 102, 103, 104, 200, 201, 202, 203, 204];
  writeSidecars([{ path: join(dir, '00000000.clip.parquet'), uids: rows, columns: { cosine: scores } }]);
  return { dir, uids };
}

test('top(x, 0.5) keeps exactly half of the rows used when some rows are invalid or repeated', async () => {
  const { dir } = await imperfectSidecar();
  const top = await runSelect({ scoresDir: dir, rule: 'top(clip.cosine, 0.5)', out: join(dir, 'top') });
  assert.equal(top.total, 40);
  assert.equal(top.invalid_uid_rows, 5);
  assert.equal(top.duplicate_uid_rows, 5);
  assert.equal(top.kept, 20);
  assert.equal(top.atoms[0]!.sketch!.rows, 40);
  assert.equal(top.atoms[0]!.threshold, 21);
  const bottom = await runSelect({ scoresDir: dir, rule: 'bottom(clip.cosine, 0.25)', out: join(dir, 'bottom') });
  assert.equal(bottom.kept, 10);
  assert.equal(bottom.atoms[0]!.threshold, 10);
});

test("a killed run's spill folder and temporary files are removed by the next run; live or foreign ones are kept", async () => {
  const { dir } = await imperfectSidecar();
  const out = join(dir, 'sel', 'keep');
  await mkdir(join(dir, 'sel'));
  const dead = spawnSync(process.execPath, ['-e', '0']).pid!;
  const live = process.ppid;
  const leftovers = [`.keep.npy.runs.tmp-${dead}-0123abcd`, `.keep.npy.tmp-${dead}-89abcdef`, `.keep.json.tmp-${dead}-00000000`];
  const kept = [`.keep.npy.runs.tmp-${live}-0123abcd`, '.keep.npy.runs.mine', `.other.npy.runs.tmp-${dead}-0123abcd`, 'notes.txt'];
  await mkdir(join(dir, 'sel', leftovers[0]!));
  await writeFile(join(dir, 'sel', leftovers[0]!, 'run-000000-abc.bin'), 'x');
  for (const name of [leftovers[1]!, leftovers[2]!, ...kept]) await writeFile(join(dir, 'sel', name), 'x');
  const summary = await runSelect({ scoresDir: dir, rule: 'clip.cosine > 0', out, runSize: 4 });
  assert.equal(summary.sort.spilled_runs > 0, true);
  const after = (await readdir(join(dir, 'sel'))).sort();
  assert.deepEqual(after, [...kept, 'keep.json', 'keep.npy'].sort());
  assert.equal(summary.warnings.filter((w) => /left over by a killed run/.test(w)).length, 3);
});
