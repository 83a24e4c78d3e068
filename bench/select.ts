// `loom select` at scale: rows/s and peak memory on synthetic score sidecars, against an exact
// in-memory reference (pyarrow + numpy: read every column, np.partition for the top fraction,
// np.unique), in the same invocation on the same files.
// Usage: node dist/bench/select.js [--sizes 1000000,10000000] [--per-shard 10000] [--dir DIR]
//        [--rule RULE] [--run-size 1000000] [--skip-reference]
//   Each size writes N samples scored by two scorers (clip: cosine; mlmf: semantic_understanding,
//   image_text_matching), so 2N sidecar rows are read per pass. Data is written once per size
//   under DIR (default: a temp dir, removed at the end) and reused when present.
// Prints one JSON line per (size, implementation), then one "memory" line: peak RSS at the
// largest size over peak RSS at the smallest (bounded memory means close to 1).
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { pythonExecutable } from '../src/util/paths.js';
import { runSelect } from '../src/select/select.js';

function option(name: string): string | undefined {
  const i = process.argv.indexOf(`--${name}`);
  return i < 0 ? undefined : process.argv[i + 1];
}

const RULE = option('rule') ?? 'top(clip.cosine, 0.15) | mlmf.semantic_understanding >= 85';

const GENERATE = `
import sys, json, os, numpy as np, pyarrow as pa, pyarrow.parquet as pq
out, n, per = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
os.makedirs(out, exist_ok=True)
rng = np.random.default_rng(0)
for shard, start in enumerate(range(0, n, per)):
    m = min(per, n - start)
    raw = rng.bytes(16 * m).hex()
    uids = pa.array([raw[32 * i: 32 * i + 32] for i in range(m)], pa.string())
    keys = pa.array([f"{start + i:09d}" for i in range(m)], pa.string())
    for scorer, cols in (('clip', {'cosine': rng.normal(0.3, 0.05, m)}),
                         ('mlmf', {'semantic_understanding': rng.uniform(0, 100, m), 'image_text_matching': rng.uniform(0, 100, m)})):
        table = pa.table({'uid': uids, 'key': keys, **{c: pa.array(v.astype(np.float32)) for c, v in cols.items()}})
        meta = {'format': 'loom-scores', 'version': 1, 'scorer': scorer, 'model': 'bench', 'shard': f'{shard:08d}.tar',
                'samples': m, 'bad': 0, 'bad_by_reason': {}, 'columns': list(cols)}
        pq.write_table(table.replace_schema_metadata({'loom': json.dumps(meta)}), f'{out}/{shard:08d}.{scorer}.parquet')
open(f'{out}/.complete', 'w').write(str(n))
`;

const REFERENCE = `
import sys, glob, json, time, resource, numpy as np, pyarrow.parquet as pq
scores = sys.argv[1]
t0 = time.perf_counter()
def load(scorer, col):
    uids, vals = [], []
    for p in sorted(glob.glob(f'{scores}/*.{scorer}.parquet')):
        t = pq.read_table(p, columns=['uid', col])
        uids.append(t.column('uid').to_numpy(zero_copy_only=False)); vals.append(t.column(col).to_numpy())
    return np.concatenate(uids), np.concatenate(vals)
u, clip = load('clip', 'cosine')
u2, su = load('mlmf', 'semantic_understanding')
assert (u == u2).all()
k = int(np.ceil(0.15 * len(clip)))
t = np.partition(clip, len(clip) - k)[len(clip) - k]
keep = (clip >= t) | (su >= np.float32(85))
kept = u[keep]
arr = np.unique(np.array([(int(x[:16], 16), int(x[16:], 16)) for x in kept], dtype='u8,u8'))
np.save(sys.argv[2], arr)
print(json.dumps({'seconds': time.perf_counter() - t0, 'kept': int(len(arr)), 'threshold': float(t),
                  'peak_rss_mb': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
`;

async function child(): Promise<void> {
  const dir = option('child')!;
  const started = process.hrtime.bigint();
  const summary = await runSelect({ scoresDir: dir, rule: RULE, out: join(dir, 'sel'), runSize: Number(option('run-size') ?? 1_000_000) });
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  const rows = Object.values(summary.inputs.scorers).reduce((n, s) => n + s.rows, 0);
  const passes = summary.atoms.some((a) => a.kind !== 'compare') ? 2 : 1;
  process.stdout.write(
    JSON.stringify({
      seconds, kept: summary.kept, total: summary.total, sidecar_rows: rows, passes,
      rows_per_s: Math.round((rows * passes) / seconds), samples_per_s: Math.round(summary.total / seconds),
      threshold: summary.atoms[0]?.threshold, rank_error_bound: summary.atoms[0]?.sketch?.rankErrorBound,
      spilled_runs: summary.sort.spilled_runs, peak_rss_mb: process.resourceUsage().maxRSS / 1024,
    }) + '\n',
  );
}

async function main(): Promise<void> {
  const sizes = (option('sizes') ?? '1000000,10000000').split(',').map(Number);
  const perShard = Number(option('per-shard') ?? 10_000);
  const given = option('dir');
  const root = given ?? (await mkdtemp(join(tmpdir(), 'loom-bench-select-')));
  const peaks: number[] = [];
  try {
    for (const n of sizes) {
      const dir = join(root, `n${n}`);
      if (!existsSync(join(dir, '.complete'))) {
        const gen = spawnSync(pythonExecutable(), ['-c', GENERATE, dir, String(n), String(perShard)], { stdio: ['ignore', 'inherit', 'inherit'] });
        if (gen.status !== 0) throw new Error('generating sidecars failed');
      }
      const self = fileURLToPath(import.meta.url);
      const run = spawnSync(process.execPath, [self, '--child', dir, '--rule', RULE, '--run-size', option('run-size') ?? '1000000'], { encoding: 'utf8', maxBuffer: 1 << 24 });
      if (run.status !== 0) throw new Error(`loom select failed: ${run.stderr}`);
      const loom = JSON.parse(run.stdout.trim().split('\n').pop()!);
      peaks.push(loom.peak_rss_mb);
      process.stdout.write(JSON.stringify({ size: n, impl: 'loom', rule: RULE, ...loom }) + '\n');
      if (!process.argv.includes('--skip-reference')) {
        const ref = spawnSync(pythonExecutable(), ['-c', REFERENCE, dir, join(dir, 'reference.npy')], { encoding: 'utf8', maxBuffer: 1 << 24 });
        if (ref.status !== 0) throw new Error(`reference failed: ${ref.stderr}`);
        const r = JSON.parse(ref.stdout.trim());
        process.stdout.write(JSON.stringify({ size: n, impl: 'reference (pyarrow+numpy, exact, in memory)', ...r, ratio_loom_speed: r.seconds / loom.seconds, kept_difference: loom.kept - r.kept }) + '\n');
      }
    }
    if (peaks.length > 1) {
      process.stdout.write(JSON.stringify({ memory: 'peak RSS largest / smallest size', sizes, peak_rss_mb: peaks, ratio: peaks[peaks.length - 1]! / peaks[0]! }) + '\n');
    }
  } finally {
    if (!given) await rm(root, { recursive: true, force: true });
  }
}

await (option('child') ? child() : main());
