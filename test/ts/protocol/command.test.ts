import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fc from 'fast-check';
import { formatCommand, workerCommand } from '../../../src/protocol/command.js';
import { LoomError } from '../../../src/util/errors.js';
import { pythonExecutable } from '../../../src/util/paths.js';

test('a plain worker runs as python -m <module> <verb> --config <file> <args>', () => {
  assert.deepEqual(workerCommand({ verb: 'train', configPath: 'runs/a/config.json', args: ['--resume'], python: 'py' }), [
    'py', '-m', 'loom_compute', 'train', '--config', 'runs/a/config.json', '--resume',
  ]);
  assert.deepEqual(workerCommand({ verb: 'doctor', python: 'py', module: 'fixtures.fake_worker' }), ['py', '-m', 'fixtures.fake_worker', 'doctor']);
  assert.equal(workerCommand({ verb: 'doctor' })[0], pythonExecutable());
});

test('a launcher runs torchrun with the same interpreter', () => {
  assert.deepEqual(workerCommand({ verb: 'train', configPath: 'c.json', python: 'py', launcher: { nprocPerNode: 8 } }), [
    'py', '-m', 'torch.distributed.run', '--nproc-per-node=8', '--standalone', '--nnodes=1', '-m', 'loom_compute', 'train', '--config', 'c.json',
  ]);
  assert.deepEqual(
    workerCommand({ verb: 'train', python: 'py', launcher: { nprocPerNode: 4, nnodes: 2, nodeRank: 1, masterAddr: 'node0', masterPort: 1234 } }),
    ['py', '-m', 'torch.distributed.run', '--nproc-per-node=4', '--nnodes=2', '--node-rank=1', '--master-addr=node0', '--master-port=1234', '-m', 'loom_compute', 'train'],
  );
  assert.ok(workerCommand({ verb: 't', python: 'py', launcher: { nprocPerNode: 1, nnodes: 2, masterAddr: 'h' } }).includes('--master-port=29500'));
});

test('impossible launches are refused with a usage error', () => {
  const bad = [
    { nprocPerNode: 0 },
    { nprocPerNode: 1.5 },
    { nprocPerNode: 2, nnodes: 2 },
    { nprocPerNode: 2, nnodes: 2, nodeRank: 2, masterAddr: 'h' },
    { nprocPerNode: 2, nnodes: 2, masterAddr: 'h', masterPort: 70000 },
    { nprocPerNode: 2, masterPort: 1234 },
  ];
  for (const launcher of bad) {
    assert.throws(() => workerCommand({ verb: 'train', python: 'py', launcher }), (err: unknown) => err instanceof LoomError && err.exitCode === 2, JSON.stringify(launcher));
  }
  assert.throws(() => workerCommand({ verb: '--help', python: 'py' }), LoomError);
});

test('formatCommand leaves plain words bare and quotes the rest', () => {
  assert.equal(formatCommand(['python', '-m', 'loom_compute', 'train', '--config', 'runs/a b/config.json']), "python -m loom_compute train --config 'runs/a b/config.json'");
  assert.equal(formatCommand(['echo', "it's", '', '$HOME']), `echo 'it'\\''s' '' '$HOME'`);
});

test('property: a POSIX shell reads formatCommand back into the same argv', () => {
  const special = fc.constantFrom("'", '"', ' ', '\\', '$', '`', '\n', '*', '~', '#', ';', '&', '!', '{', '}', 'é', '日');
  const arg = fc
    .array(fc.oneof(special, fc.string({ unit: 'binary', maxLength: 3 })), { maxLength: 6 })
    .map((parts) => parts.join(''))
    .filter((s) => !s.includes('\0'));
  fc.assert(
    fc.property(fc.array(arg, { minLength: 1, maxLength: 6 }), (args) => {
      const script = `printf '%s\\0' ${formatCommand(args)}`;
      const out = spawnSync('/bin/sh', ['-c', script], { encoding: 'utf8' });
      assert.equal(out.status, 0, out.stderr);
      assert.deepEqual(out.stdout.split('\0').slice(0, -1), args);
    }),
    { numRuns: 150 },
  );
});
