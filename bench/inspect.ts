// `loom inspect` throughput (full decode and --no-decode) against the usual Python way
// (webdataset + PIL, bench/inspect_reference.py), each run in a fresh process, the three
// interleaved so a busy machine slows them alike.
// Usage: node dist/bench/inspect.js [SHARDS...] [--samples 10000] [--repeats 3] [--sharp-only]
//   SHARDS: files, directories or brace ranges (as `loom inspect`); none: synthesise --samples
//   pretraining samples with `loom synth` into a temporary directory (removed afterwards).
//   --sharp-only also times the full decode with the fast JPEG path off (LOOM_DECODE_WORKERS=0).
// Prints one JSON line per run, then one summary line: median samples/s per implementation and
// the ratios of Loom's full decode to the Python reference and to the sharp-only decode.
// Rates use each tool's own timer (reading and checking only, not process start-up).
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pythonExecutable, repoRoot } from '../src/util/paths.js';
import { listShards } from '../src/shards/listShards.js';

interface Run {
  impl: string;
  samples: number;
  bad: number;
  seconds: number;
  samples_per_s: number;
}

function flag(name: string, fallback: number): number {
  const i = process.argv.indexOf(`--${name}`);
  if (i < 0) return fallback;
  const n = Number(process.argv[i + 1]);
  if (!Number.isInteger(n) || n < 1) throw new Error(`--${name}: expected a positive integer, got '${process.argv[i + 1]}'`);
  return n;
}

function positional(): string[] {
  const args = process.argv.slice(2);
  const out: string[] = [];
  for (let i = 0; i < args.length; i++) {
    if (args[i] === '--samples' || args[i] === '--repeats') i++;
    else if (!args[i]!.startsWith('--')) out.push(args[i]!);
  }
  return out;
}

function runChild(command: string, args: string[], env: NodeJS.ProcessEnv = {}): string {
  const child = spawnSync(command, args, { encoding: 'utf8', maxBuffer: 64 << 20, env: { ...process.env, ...env } });
  if (child.status !== 0) throw new Error(`${command} ${args.join(' ')} failed (exit ${child.status}): ${child.stderr}`);
  return child.stdout;
}

const loomBin = join(repoRoot(), 'bin', 'loom.js');

function loom(impl: string, paths: string[], extra: string[], env: NodeJS.ProcessEnv = {}): Run {
  const out = runChild(process.execPath, [loomBin, 'inspect', '--json', ...extra, ...paths], env);
  const r = JSON.parse(out) as { samples: number; bad: number; seconds: number };
  return { impl, samples: r.samples, bad: r.bad, seconds: r.seconds, samples_per_s: (r.samples + r.bad) / r.seconds };
}

function python(paths: string[]): Run {
  const out = runChild(pythonExecutable(), [join(repoRoot(), 'bench', 'inspect_reference.py'), ...paths]);
  const r = JSON.parse(out.trim().split('\n').pop()!) as { samples: number; bad: number; seconds: number };
  return { impl: 'python-webdataset+PIL', samples: r.samples, bad: r.bad, seconds: r.seconds, samples_per_s: (r.samples + r.bad) / r.seconds };
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

const round = (x: number, digits = 1) => Number(x.toFixed(digits));

async function main(): Promise<void> {
  const repeats = flag('repeats', 3);
  const sharpOnly = process.argv.includes('--sharp-only');
  let specs = positional();
  let tempDir: string | null = null;
  if (specs.length === 0) {
    const samples = flag('samples', 10_000);
    tempDir = mkdtempSync(join(tmpdir(), 'loom-bench-inspect-'));
    runChild(process.execPath, [loomBin, 'synth', '--out', tempDir, '--samples', String(samples), '--sft', '0', '--bench', '0', '--quiet']);
    specs = [join(tempDir, 'pretrain')];
  }
  try {
    const paths = await listShards(specs);
    const runs: Run[] = [];
    const record = (r: Run) => {
      runs.push(r);
      console.log(JSON.stringify({ ...r, seconds: round(r.seconds, 3), samples_per_s: round(r.samples_per_s) }));
    };
    for (let i = 0; i < repeats; i++) {
      record(loom('loom-decode', paths, []));
      record(loom('loom-no-decode', paths, ['--no-decode']));
      record(python(paths));
      if (sharpOnly) record(loom('loom-decode-sharp-only', paths, [], { LOOM_DECODE_WORKERS: '0' }));
    }
    const rate = (impl: string) => median(runs.filter((r) => r.impl === impl).map((r) => r.samples_per_s));
    const summary: Record<string, unknown> = {
      summary: true,
      shards: paths.length,
      samples: runs[0]!.samples + runs[0]!.bad,
      repeats,
      median_samples_per_s: Object.fromEntries([...new Set(runs.map((r) => r.impl))].map((impl) => [impl, round(rate(impl))])),
      ratio_decode_vs_python: round(rate('loom-decode') / rate('python-webdataset+PIL'), 2),
      ratio_no_decode_vs_python: round(rate('loom-no-decode') / rate('python-webdataset+PIL'), 2),
    };
    if (sharpOnly) summary.ratio_decode_vs_sharp_only = round(rate('loom-decode') / rate('loom-decode-sharp-only'), 2);
    console.log(JSON.stringify(summary));
  } finally {
    if (tempDir) rmSync(tempDir, { recursive: true, force: true });
  }
}

await main();
