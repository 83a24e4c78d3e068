import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { repoRoot } from '../../../src/util/paths.js';
import { buildProgram } from '../../../src/cli/main.js';

const cli = join(repoRoot(), 'bin', 'loom.js');
const loom = (...args: string[]) => spawnSync(process.execPath, [cli, ...args], { encoding: 'utf8' });

const STAGES = ['synth', 'inspect', 'curate', 'select', 'reshard', 'pack', 'train', 'chat', 'generate', 'export', 'import', 'eval'];

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

test('`loom --help` lists each command on one line with its summary; the detail is in its own --help', () => {
  const commands = buildProgram().commands;
  for (const command of commands) {
    assert.notEqual(command.summary(), '', `${command.name()} needs .summary(...): without one the list shows its whole description`);
    assert.notEqual(command.description(), '', `${command.name()} --help needs a description`);
  }
  // stdout is a pipe here, so commander wraps at 80 columns: the width of the narrowest usual terminal.
  const top = loom('--help');
  assert.equal(top.status, 0, top.stderr);
  const section = top.stdout.split('\nCommands:\n')[1]?.split('\n\n')[0]?.trimEnd().split('\n') ?? [];
  const continued = section.filter((line) => !/^ {2}\S/.test(line));
  assert.deepEqual(continued, [], `a command's summary wraps onto more lines:\n${top.stdout}`);
  assert.deepEqual(
    section.map((line) => line.trim().split(' ')[0]),
    [...commands.map((c) => c.name()), 'help'],
    'every command is listed, in order',
  );
});

test('stages marked "not built yet" in --help exit 2 saying so; built ones are not marked', () => {
  const help = loom('--help').stdout.replace(/\n\s{10,}/g, ' ');
  const unbuilt = [...help.matchAll(/^\s+(\w+)\s.*\[not built yet\]/gm)].map((m) => m[1]!);
  for (const built of ['synth', 'inspect', 'config', 'doctor', 'demo']) assert.ok(!unbuilt.includes(built), `${built} is built`);
  for (const stage of unbuilt) {
    const run = loom(stage, 'some-arg', '--some-flag');
    assert.equal(run.status, 2, `${stage}: ${run.stderr}`);
    assert.match(run.stderr, new RegExp(`loom: error: 'loom ${stage}' is not built yet`));
  }
});

test('unknown commands and options fail with a usage error', () => {
  const unknown = loom('frobnicate');
  assert.notEqual(unknown.status, 0);
  assert.match(unknown.stderr, /unknown command 'frobnicate'/);
  const badOption = loom('config', 'init', '--no-such-option');
  assert.notEqual(badOption.status, 0);
  assert.match(badOption.stderr, /unknown option/);
});
