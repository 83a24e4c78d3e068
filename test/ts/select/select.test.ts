import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFile, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Rng } from '../../../src/util/rng.js';
import { repoRoot } from '../../../src/util/paths.js';
import { runSelect } from '../../../src/select/select.js';
import { readSidecar } from '../../../src/select/sidecars.js';
import { parseRule, type RuleNode } from '../../../src/select/rule.js';
import { f32, python, tempDir, testUid, writeSidecars, type SidecarSpec } from './helpers.js';

interface Fixture {
  dir: string;
  /** uid -> scorer.column -> value (absent: no row; null: a null score). */
  scores: Map<string, Map<string, number | null>>;
}

/**
 * Three shards. clip scores all of them; dfn scores shards 0 and 1 only, and misses some rows of
 * shard 1 (bad samples for it); one dfn score is null. Values are random float32.
 */
async function makeFixture(): Promise<Fixture> {
  const dir = await tempDir('fixture');
  const rng = new Rng(5);
  const scores = new Map<string, Map<string, number | null>>();
  const specs: SidecarSpec[] = [];
  for (let shard = 0; shard < 3; shard++) {
    const stem = String(shard).padStart(8, '0');
    const uids = Array.from({ length: 400 }, (_, i) => testUid(stem, i));
    const clip = uids.map(() => f32(rng.uniform(0, 0.5)));
    uids.forEach((u, i) => scores.set(u, new Map([['clip.cosine', clip[i]!]])));
    specs.push({ path: join(dir, `${stem}.clip.parquet`), uids, columns: { cosine: clip }, rowGroupSize: 150, meta: { format: 'loom-scores', version: 1, scorer: 'clip', shard: `${stem}.tar`, samples: 400, bad: 2, bad_by_reason: { corrupt_image: 2 } } });
    if (shard === 2) continue;
    const dfnUids = shard === 1 ? uids.filter((_, i) => i % 7 !== 3) : uids;
    const dfn = dfnUids.map((_, i): number | null => (shard === 0 && i === 11 ? null : f32(rng.uniform(0, 1))));
    dfnUids.forEach((u, i) => scores.get(u)!.set('dfn.cosine', dfn[i]!));
    specs.push({ path: join(dir, `${stem}.dfn.parquet`), uids: dfnUids, columns: { cosine: dfn }, meta: { format: 'loom-scores', version: 1, scorer: 'dfn', bad: 400 - dfnUids.length, bad_by_reason: { missing_caption: 400 - dfnUids.length } } });
  }
  writeSidecars(specs);
  return { dir, scores };
}

const fixture = makeFixture();

/** The exact answer, computed independently: sorted thresholds, Kleene logic on numbers. */
function reference(f: Fixture, rule: string): { kept: string[]; total: number; atoms: Array<{ passed: number; failed: number; missing: number }> } {
  const parsed = parseRule(rule);
  // The samples known to the rule: those with a row in any of its scorers' sidecars.
  const scorers = new Set(parsed.atoms.map((a) => a.ref.scorer));
  const universe = [...f.scores].filter(([, m]) => [...m.keys()].some((col) => scorers.has(col.split('.')[0]!)));
  const thresholds = parsed.atoms.map((a) => {
    if (a.kind === 'compare') return { op: a.op, t: f32(a.value) };
    const col = `${a.ref.scorer}.${a.ref.column}`;
    const values = [...f.scores.values()].map((m) => m.get(col)).filter((v): v is number => typeof v === 'number').sort((x, y) => x - y);
    const c = Math.ceil(a.fraction * values.length - 1e-9);
    return a.kind === 'top' ? { op: '>=', t: c === 0 ? Infinity : values[values.length - c]! } : { op: '<=', t: c === 0 ? -Infinity : values[c - 1]! };
  });
  const atoms = parsed.atoms.map(() => ({ passed: 0, failed: 0, missing: 0 }));
  const kept: string[] = [];
  for (const [uid, m] of universe) {
    const truth = parsed.atoms.map((a, i) => {
      const v = m.get(`${a.ref.scorer}.${a.ref.column}`);
      if (typeof v !== 'number') {
        atoms[i]!.missing++;
        return 0.5;
      }
      const { op, t } = thresholds[i]!;
      const ok = op === '>=' ? v >= t : op === '>' ? v > t : op === '<=' ? v <= t : op === '<' ? v < t : v === t;
      atoms[i]![ok ? 'passed' : 'failed']++;
      return ok ? 1 : 0;
    });
    const value = (n: RuleNode): number =>
      n.kind === 'atom' ? truth[n.atom.id]! : n.kind === 'not' ? 1 - value(n.expr) : n.kind === 'and' ? Math.min(value(n.left), value(n.right)) : Math.max(value(n.left), value(n.right));
    if (value(parsed.root) === 1) kept.push(uid);
  }
  return { kept: kept.sort(), total: universe.length, atoms };
}

/** The uids of a selection as numpy sees them. */
function numpyUids(path: string): string[] {
  return JSON.parse(
    python(`
import json, numpy as np
a = np.load(${JSON.stringify(path)}, allow_pickle=False)
assert a.dtype == np.dtype('u8,u8')
assert np.array_equal(a, np.unique(a))  # sorted and unique
print(json.dumps(['%016x%016x' % (int(r['f0']), int(r['f1'])) for r in a]))
`),
  ) as string[];
}

test('select joins scorers per shard, resolves top fractions and matches an exact reference', async () => {
  const f = await fixture;
  const rules = [
    'top(dfn.cosine, 0.3) | !(clip.cosine < 0.25) & dfn.cosine > 0.1',
    'clip.cosine >= 0.2 & !(dfn.cosine >= 0.5)',
    'bottom(clip.cosine, 0.1) | top(clip.cosine, 0.05)',
    'top(dfn.cosine, 0)',
  ];
  for (const [i, rule] of rules.entries()) {
    const out = join(f.dir, `sel${i}`);
    const summary = await runSelect({ scoresDir: f.dir, rule, out, runSize: 50 });
    const want = reference(f, rule);
    assert.deepEqual(numpyUids(`${out}.npy`), want.kept, rule);
    assert.equal(summary.kept, want.kept.length);
    assert.equal(summary.total, want.total);
    assert.deepEqual(summary.atoms.map((a) => ({ passed: a.passed, failed: a.failed, missing: a.missing })), want.atoms, rule);
    assert.deepEqual(JSON.parse(await readFile(`${out}.json`, 'utf8')), JSON.parse(JSON.stringify(summary)));
    if (rule.includes('dfn') && rule.includes('clip')) {
      assert.deepEqual(summary.shards_missing_scorer, { '00000002': ['dfn'] });
      assert.equal(summary.missing_rows_by_scorer.dfn, 400 + 57);
    } else assert.deepEqual(summary.shards_missing_scorer, {});
    if (rule.includes('clip')) assert.equal(summary.inputs.scorers.clip!.bad, 6);
    else assert.equal(summary.inputs.scorers.dfn!.bad, 57);
    if (want.kept.length > 50) assert.ok(summary.sort.spilled_runs >= 2, 'the merge path ran');
  }
  assert.deepEqual((await readdir(f.dir)).filter((n) => n.startsWith('.')), [], 'no temporary files left');
});

test('with a small sketch, the top threshold is approximate but its rank error stays within the reported bound', async () => {
  const f = await fixture;
  const out = join(f.dir, 'approx');
  const summary = await runSelect({ scoresDir: f.dir, rule: 'top(clip.cosine, 0.2)', out, sketchK: 16 });
  const atom = summary.atoms[0]!;
  const values = [...f.scores.values()].map((m) => m.get('clip.cosine') as number).sort((a, b) => a - b);
  const exactAbove = values.filter((v) => v >= atom.threshold).length;
  assert.equal(atom.passed, exactAbove);
  assert.ok(atom.sketch!.rankErrorBound > 0);
  assert.ok(Math.abs(exactAbove - 240) <= atom.sketch!.rankErrorBound + 1, `${exactAbove} kept, bound ${atom.sketch!.rankErrorBound}`);
});

function loom(args: string[]): { status: number | null; stdout: string; stderr: string } {
  const run = spawnSync(process.execPath, [join(repoRoot(), 'bin', 'loom.js'), ...args], { encoding: 'utf8' });
  return { status: run.status, stdout: run.stdout, stderr: run.stderr };
}

test('loom select CLI: --json summary, readable summary, and clear errors for bad rules and files', async () => {
  const f = await fixture;
  const ok = loom(['select', '--scores', f.dir, '--rule', 'clip.cosine >= 0.4', '--out', join(f.dir, 'cli'), '--json']);
  assert.equal(ok.status, 0, ok.stderr);
  const summary = JSON.parse(ok.stdout);
  assert.equal(summary.kept, reference(f, 'clip.cosine >= 0.4').kept.length);
  const human = loom(['select', '--scores', f.dir, '--rule', 'clip.cosine >= 0.4 | dfn.cosine > 0.9', '--out', join(f.dir, 'cli2')]);
  assert.equal(human.status, 0, human.stderr);
  assert.match(human.stdout, /Selected [\d,]+ of 1,200 samples/);
  assert.match(human.stderr, /warning: 1 shard\(s\) lack a sidecar .*00000002 \(no dfn\)/);

  const badRule = loom(['select', '--scores', f.dir, '--rule', 'clip.cosine >> 1', '--out', join(f.dir, 'x')]);
  assert.equal(badRule.status, 2);
  assert.match(badRule.stderr, /loom: error: rule: expected a number after '>', found '>' at column 14/);
  const unknown = loom(['select', '--scores', f.dir, '--rule', 'siglip.cosine > 1', '--out', join(f.dir, 'x')]);
  assert.equal(unknown.status, 1);
  assert.match(unknown.stderr, /no sidecars for scorer 'siglip' named in the rule \(scorers found: clip, dfn\)/);
  const noColumn = loom(['select', '--scores', f.dir, '--rule', 'clip.itm > 1', '--out', join(f.dir, 'x')]);
  assert.match(noColumn.stderr, /00000000\.clip\.parquet: no column 'itm' \(columns: uid, key, cosine\)/);
  const missingDir = loom(['select', '--scores', join(f.dir, 'nope'), '--rule', 'clip.cosine > 1', '--out', join(f.dir, 'x')]);
  assert.match(missingDir.stderr, /--scores .*nope: cannot list the directory \(ENOENT\)/);

  const broken = await tempDir('broken');
  await writeFile(join(broken, '00000000.clip.parquet'), 'PAR1 this is not parquet PAR1');
  const bad = loom(['select', '--scores', broken, '--rule', 'clip.cosine > 0', '--out', join(broken, 'x')]);
  assert.equal(bad.status, 1);
  assert.match(bad.stderr, /loom: error: .*00000000\.clip\.parquet: not a (readable )?parquet file/);
  assert.deepEqual((await readdir(broken)).sort(), ['00000000.clip.parquet'], 'nothing written on failure');
});

test('sidecars compressed with gzip or brotli read the same as snappy; zstd is refused by name', async () => {
  const dir = await tempDir('codecs');
  const uids = Array.from({ length: 300 }, (_, i) => testUid('codec', i));
  const cosine = uids.map((_, i) => f32(i / 300));
  writeSidecars(['snappy', 'gzip', 'brotli', 'none', 'zstd'].map((compression) => ({ path: join(dir, `${compression}.parquet`), uids, columns: { cosine }, compression })));
  for (const codec of ['snappy', 'gzip', 'brotli', 'none']) {
    const data = await readSidecar(join(dir, `${codec}.parquet`), ['cosine']);
    assert.deepEqual(data.uids, uids, codec);
    assert.deepEqual(Array.from(data.columns.get('cosine')!), cosine, codec);
  }
  await assert.rejects(readSidecar(join(dir, 'zstd.parquet'), ['cosine']), /zstd\.parquet: column 'uid' is compressed with ZSTD, which Loom's reader does not decode; write sidecars with compression 'snappy'/);
});
