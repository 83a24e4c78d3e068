// End-to-end `loom pack` on synthetic data: samples/s and images/s of the whole command (read,
// tokenize, pack, prepare images, write shards), for each packer on the same input in one run.
// Usage: node dist/bench/pack_e2e.js [--samples 10000] [--preset tiny]
// Prints one JSON line per packer. There is no outside reference for the whole command; the
// packers' own speed and efficiency against the original's method are in bench/pack.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { repoRoot } from '../src/util/paths.js';

function option(name: string, fallback: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i < 0 ? fallback : (process.argv[i + 1] ?? fallback);
}

function loom(args: string[]): string {
  const run = spawnSync(process.execPath, [join(repoRoot(), 'bin', 'loom.js'), ...args], { encoding: 'utf8', maxBuffer: 1 << 28 });
  if (run.status !== 0) throw new Error(`loom ${args.join(' ')} failed:\n${run.stderr}`);
  return run.stdout;
}

const samples = option('samples', '10000');
const preset = option('preset', 'tiny');
const dir = mkdtempSync(join(tmpdir(), 'loom-bench-pack-'));
try {
  loom(['synth', '--out', join(dir, 'synth'), '--samples', samples, '--sft', '0', '--bench', '0', '--quiet']);
  for (const algorithm of ['exact-fill', 'bfd', 'ffd']) {
    const out = join(dir, `packed-${algorithm}`);
    const started = performance.now();
    const report = JSON.parse(
      loom(['pack', '--preset', preset, '--set', `data.shards=${join(dir, 'synth', 'pretrain')}`, '--out', out, '--algorithm', algorithm, '--json', '--quiet']),
    );
    const seconds = (performance.now() - started) / 1000;
    const total = report.total ?? report.this_run;
    console.log(
      JSON.stringify({
        command: 'loom pack',
        preset,
        algorithm,
        samples: Number(samples),
        sequences: total.sequences,
        efficiency: total.efficiency,
        wall_seconds: Number(seconds.toFixed(2)),
        samples_per_s: Math.round(Number(samples) / seconds),
        images_per_s: Math.round(total.images / seconds),
      }),
    );
  }
} finally {
  rmSync(dir, { recursive: true, force: true });
}
