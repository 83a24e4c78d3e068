// `loom doctor` warns when the worker's loom_compute comes from another checkout than this one.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { formatDoctorReport, otherCheckoutWarning, type DoctorReport } from '../../../src/cli/commands/doctor.js';

test('loom_compute from this repository (also through a link) gives no warning; from another checkout it does', () => {
  const root = mkdtempSync(join(tmpdir(), 'loom-doctor-'));
  try {
    const ours = join(root, 'repo');
    const theirs = join(root, 'other');
    for (const repo of [ours, theirs]) mkdirSync(join(repo, 'python', 'src', 'loom_compute'), { recursive: true });
    symlinkSync(ours, join(root, 'link'));
    assert.equal(otherCheckoutWarning(join(ours, 'python', 'src', 'loom_compute'), ours), null);
    assert.equal(otherCheckoutWarning(join(root, 'link', 'python', 'src', 'loom_compute'), ours), null);
    const warning = otherCheckoutWarning(join(theirs, 'python', 'src', 'loom_compute'), ours);
    assert.ok(warning?.includes(join(theirs, 'python', 'src', 'loom_compute')));
    assert.ok(warning?.includes(`PYTHONPATH=${join(ours, 'python', 'src')}`));
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});

test('the human report lists warnings and still says everything is in place', () => {
  const report: DoctorReport = {
    ok: true,
    problems: [],
    warnings: ['loom_compute is imported from /elsewhere/python/src/loom_compute, not from this repository'],
    node: { version: 'v20', platform: 'linux', arch: 'x64', sharp: { ok: true, version: '1' }, tokenizers: { ok: true, version: '1' } },
    python: { interpreter: 'python3', source: 'x', command: 'python3 -m loom_compute doctor', ok: false, error: 'not run' },
  };
  const text = formatDoctorReport(report);
  assert.match(text, /Warnings:\n {2}- loom_compute is imported from \/elsewhere/);
  assert.match(text, /Everything Loom needs is in place/);
});
