// runWorker against real Python processes: the fixture workers in python/tests/fixtures use
// the real loom_compute protocol, so both sides of the contract are exercised together.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { runWorker, WorkerError, type WorkerEvent } from '../../../src/protocol/worker.js';
import { fixture, FIXTURES_DIR, PYTHON_TESTS_DIR } from './helpers.js';

async function failure(promise: Promise<unknown>): Promise<WorkerError> {
  try {
    await promise;
  } catch (err) {
    assert.ok(err instanceof WorkerError, `expected a WorkerError, got ${String(err)}`);
    return err;
  }
  assert.fail('the worker was expected to fail');
}

test('progress, metrics and logs arrive in order and done is the result', async () => {
  const seen: WorkerEvent[] = [];
  const { done, events } = await runWorker(fixture('progress', ['--steps', '5'], { onEvent: (e) => seen.push(e) }));
  assert.deepEqual(done, { steps: 5 });
  assert.deepEqual(seen, events);
  const progress = events.filter((e) => e.event === 'progress');
  assert.deepEqual(progress.map((e) => [e.done, e.total]), [[1, 5], [2, 5], [3, 5], [4, 5], [5, 5]]);
  assert.deepEqual(events.filter((e) => e.event === 'metric').map((e) => e.step), [1, 2, 3, 4, 5]);
  assert.deepEqual(events.filter((e) => e.event === 'log'), [{ event: 'log', level: 'info', msg: 'finished the steps' }]);
  assert.equal(events.at(-1)?.event, 'done');
});

test('config path and arguments reach the worker, in order', async () => {
  const { done } = await runWorker(fixture('echo-args', ['a b', "it's", 'x=1 -y'], { configPath: 'runs/x/config.json' }));
  assert.deepEqual(done, { config: 'runs/x/config.json', words: ['a b', "it's", 'x=1 -y'] });
});

test('the environment is passed and PYTHONUNBUFFERED is set', async () => {
  const { done } = await runWorker(fixture('emit-env', ['PYTHONUNBUFFERED', 'LOOM_TEST_VALUE'], { env: { LOOM_TEST_VALUE: 'x=1 y' } }));
  assert.deepEqual(done, { PYTHONUNBUFFERED: '1', LOOM_TEST_VALUE: 'x=1 y' });
});

test('a known Python error reaches the user verbatim with exit code 1', async () => {
  const err = await failure(runWorker(fixture('fail', ['--message', 'shard 00000002.tar: member k.json is not JSON'])));
  assert.equal(err.message, 'fail failed: shard 00000002.tar: member k.json is not JSON');
  assert.equal(err.exitCode, 1);
  assert.equal(err.details.errorEvent?.key, 'sample-7');
});

test('an unexpected Python exception names its type, and its traceback is kept', async () => {
  const err = await failure(runWorker(fixture('bug')));
  assert.equal(err.message, 'bug failed: ValueError: boom');
  assert.match(String(err.details.errorEvent?.traceback), /raise ValueError\("boom"\)/);
  assert.ok(err.details.stderrTail.some((line) => line.includes('Traceback (most recent call last)')));
});

test('the worker exit code is kept (usage errors exit 2)', async () => {
  const unknown = await failure(runWorker(fixture('no-such-verb')));
  assert.equal(unknown.exitCode, 2);
  assert.match(unknown.message, /^no-such-verb failed: unknown verb 'no-such-verb'; verbs: progress, fail, bug/);
  const status = await failure(runWorker(fixture('exit-status', ['--code', '6'])));
  assert.equal(status.exitCode, 6);
  assert.equal(status.message, 'exit-status failed: exited with status 6');
});

test('a crash without an error event names the exit code and quotes stderr', async () => {
  const err = await failure(runWorker(fixture('crash', ['--code', '3', '--stderr-lines', '80'])));
  assert.equal(err.exitCode, 3);
  assert.equal(err.details.workerExitCode, 3);
  assert.match(err.message, /^crash failed: the worker exited with code 3 without reporting an error/);
  assert.equal(err.details.stderrTail.length, 50);
  assert.equal(err.details.stderrTail.at(-1), 'stderr line 79');
  assert.ok(err.message.includes('  | stderr line 79') && err.message.includes('  | stderr line 30') && !err.message.includes('stderr line 29\n'));
});

test('a worker killed by a signal is reported with the signal', async () => {
  const err = await failure(runWorker(fixture('sigkill')));
  assert.equal(err.details.workerSignal, 'SIGKILL');
  assert.equal(err.exitCode, 128 + 9);
  assert.match(err.message, /was killed by SIGKILL without reporting an error/);
  assert.match(err.message, /about to be killed/);
  assert.match(err.message, /out of memory/);
});

test('exit 0 without a done event is a failure', async () => {
  const err = await failure(runWorker(fixture('silent-exit')));
  assert.equal(err.exitCode, 1);
  assert.match(err.message, /^silent-exit failed: the worker exited without a result/);
});

test('non-event lines on stdout are tolerated', async () => {
  const { done, events } = await runWorker(fixture('raw-noise'));
  assert.deepEqual(done, { survived: true });
  assert.deepEqual(events.map((e) => e.event), ['progress', 'done']);
});

test('an event written in pieces is read as one line', async () => {
  const { events } = await runWorker(fixture('partial'));
  assert.deepEqual(events[0], { event: 'progress', done: 5, total: 7 });
});

test('non-finite metrics arrive as readable strings', async () => {
  const { events } = await runWorker(fixture('nan-metric'));
  assert.deepEqual(events[0], { event: 'metric', loss: 'NaN', grad_norm: 'Infinity' });
});

test('a missing interpreter says which one was tried and how to set one up', async () => {
  const err = await failure(runWorker(fixture('progress', [], { python: '/nonexistent/bin/python3' })));
  assert.equal(err.exitCode, 1);
  assert.match(err.message, /interpreter '\/nonexistent\/bin\/python3' was not found/);
  assert.match(err.message, /make setup/);
  assert.match(err.message, /LOOM_PYTHON/);
});

test('an interpreter without the package gets the set-up hint', async () => {
  const err = await failure(runWorker(fixture('doctor', [], { module: 'no_such_loom_module' })));
  assert.match(err.message, /No module named no_such_loom_module/);
  const missing = await failure(runWorker({ verb: 'doctor', silent: true, cwd: PYTHON_TESTS_DIR, env: { PYTHONPATH: join(FIXTURES_DIR, 'crashing_worker') } }));
  assert.match(missing.message, /^doctor failed: the worker exited with code 3 without reporting an error/);
  assert.match(missing.message, /Segmentation fault \(loom test fixture\)/);
});

test('SIGINT on the CLI is forwarded and reported as an interruption', async () => {
  const run = runWorker(
    fixture('sleep', ['--seconds', '60'], {
      onEvent: (e) => {
        if (e.event === 'progress') process.kill(process.pid, 'SIGINT');
      },
    }),
  );
  const started = Date.now();
  const err = await failure(run);
  assert.ok(Date.now() - started < 20_000);
  assert.equal(err.message, 'sleep failed: interrupted');
  assert.equal(err.exitCode, 130);
  assert.equal(err.details.errorEvent?.signal, 'SIGINT');
  assert.equal(process.listenerCount('SIGINT'), 0, 'the forwarding handler is removed afterwards');
});

test('under torchrun only rank 0 reports', async () => {
  const { done, events } = await runWorker(fixture('ranks', [], { launcher: { nprocPerNode: 2 } }));
  assert.deepEqual(done, { rank: 0, world_size: 2, local_rank: 0 });
  assert.deepEqual(events.filter((e) => e.event === 'metric'), [{ event: 'metric', rank: 0 }]);
  assert.deepEqual(events.filter((e) => e.event === 'progress'), [{ event: 'progress', done: 1, total: 2 }]);
});

test('under torchrun a failure on another rank is named, not reported as an interruption', async () => {
  const err = await failure(runWorker(fixture('rank-fails', [], { launcher: { nprocPerNode: 2 } })));
  assert.equal(err.message, 'rank-fails failed on rank 1: ValueError: rank 1 broke');
  assert.equal(err.details.errorEvent?.msg, 'interrupted');
  assert.notEqual(err.exitCode, 0);
});

test('an exception in onEvent stops the worker and reaches the caller', async () => {
  const started = Date.now();
  await assert.rejects(
    runWorker(
      fixture('sleep', ['--seconds', '60'], {
        onEvent: () => {
          throw new RangeError('caller gave up');
        },
      }),
    ),
    /caller gave up/,
  );
  assert.ok(Date.now() - started < 20_000);
});
