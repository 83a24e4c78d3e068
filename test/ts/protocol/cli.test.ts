// The real `loom doctor`, run as a user runs it (node bin/loom.js), healthy and broken.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import sharp from 'sharp';
import { repoRoot } from '../../../src/util/paths.js';
import { FIXTURES_DIR } from './helpers.js';

function loom(args: string[], env: Record<string, string | undefined> = {}) {
  const merged: Record<string, string | undefined> = { ...process.env, ...env };
  for (const [k, v] of Object.entries(env)) if (v === undefined) delete merged[k];
  return spawnSync(process.execPath, [join(repoRoot(), 'bin', 'loom.js'), ...args], {
    cwd: repoRoot(),
    env: merged as NodeJS.ProcessEnv,
    encoding: 'utf8',
    timeout: 120_000,
  });
}

test('loom doctor --json reports both planes of a working machine', () => {
  const run = loom(['doctor', '--json'], { LOOM_PYTHON: undefined, PYTHONPATH: undefined });
  assert.equal(run.status, 0, run.stderr);
  const report = JSON.parse(run.stdout);
  assert.equal(report.ok, true);
  assert.deepEqual(report.problems, []);
  assert.equal(report.node.version, process.version);
  assert.equal(report.node.sharp.libvips, sharp.versions.vips);
  assert.equal(report.node.tokenizers.ok, true);
  assert.equal(report.python.source, "the repository's .venv");
  assert.equal(report.python.report.ok, true);
  assert.match(report.python.report.torch.version, /^\d+\.\d+/);
});

test('loom doctor fails with a clear message when Python cannot import torch', () => {
  const run = loom(['doctor'], { PYTHONPATH: join(FIXTURES_DIR, 'broken_torch') });
  assert.equal(run.status, 1);
  assert.match(run.stdout, /torch\s+BROKEN: ImportError: libtorch_cpu\.so/);
  assert.match(run.stderr, /^loom: error: doctor found \d+ problem\(s\) \(listed above\)$/m);
  assert.match(run.stdout, /^Problems:\n {2}- python: torch cannot be imported \(ImportError: libtorch_cpu\.so/m);
  assert.doesNotMatch(run.stderr, /internal error|at .*\.js:\d+/);
});

test('loom doctor names the missing interpreter and how to set one up', () => {
  const run = loom(['doctor'], { LOOM_PYTHON: '/nonexistent/python3' });
  assert.equal(run.status, 1);
  assert.match(run.stderr, /loom: error: doctor found 1 problem/);
  assert.match(run.stdout, /interpreter '\/nonexistent\/python3' was not found; run `make setup`/);
  assert.match(run.stdout, /Python: \/nonexistent\/python3 \(from LOOM_PYTHON\)/);
});

test('loom doctor quotes the stderr of a worker that crashes', () => {
  const run = loom(['doctor', '--json'], { PYTHONPATH: join(FIXTURES_DIR, 'crashing_worker'), LOOM_PYTHON: undefined });
  assert.equal(run.status, 1);
  const report = JSON.parse(run.stdout);
  assert.equal(report.python.ok, false);
  assert.match(report.python.error, /exited with code 3 without reporting an error/);
  assert.match(report.python.error, /\| Fatal Python error: Segmentation fault \(loom test fixture\)/);
  assert.match(run.stderr, /^ {2}- the Python worker does not run: doctor failed: the worker exited with code 3/m);
  assert.match(run.stderr, /hint: run `make setup`/);
});
