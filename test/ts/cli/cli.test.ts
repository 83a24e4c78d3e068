import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { repoRoot } from '../../../src/util/paths.js';

const cli = join(repoRoot(), 'bin', 'loom.js');
const loom = (...args: string[]) => spawnSync(process.execPath, [cli, ...args], { encoding: 'utf8' });

const STAGES = ['synth', 'inspect', 'curate', 'select', 'reshard', 'pack', 'train', 'eval'];

test('`loom --help` lists every pipeline stage, and each stage has its own --help', () => {
  const top = loom('--help');
  assert.equal(top.status, 0, top.stderr);
  for (const stage of STAGES) {
    assert.match(top.stdout, new RegExp(`^\\s+${stage}\\b`, 'm'), `${stage} missing from loom --help`);
    const help = loom(stage, '--help');
    assert.equal(help.status, 0, `${stage} --help: ${help.stderr}`);
    assert.match(help.stdout, new RegExp(`Usage: loom ${stage}`));
  }
});

test('stages not built yet say so and exit non-zero', () => {
  for (const stage of ['curate', 'select', 'reshard', 'pack', 'train', 'eval']) {
    const run = loom(stage, 'some-arg');
    if (run.status === 2 && /not built yet/.test(run.stderr)) continue;
    // A stage that has landed must not claim to be unbuilt in --help either.
    assert.doesNotMatch(loom('--help').stdout, new RegExp(`${stage}\\s+.*not built yet`));
  }
  const pack = loom('train');
  if (/not built yet/.test(pack.stderr)) assert.equal(pack.status, 2);
});

test('unknown commands and options fail with a usage error', () => {
  const unknown = loom('frobnicate');
  assert.notEqual(unknown.status, 0);
  assert.match(unknown.stderr, /unknown command 'frobnicate'/);
  const badOption = loom('config', 'init', '--no-such-option');
  assert.notEqual(badOption.status, 0);
  assert.match(badOption.stderr, /unknown option/);
});
