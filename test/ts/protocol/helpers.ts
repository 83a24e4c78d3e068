// Shared set-up for the protocol tests: the fixture workers live in python/tests/fixtures.
import { join } from 'node:path';
import { repoRoot } from '../../../src/util/paths.js';
import type { WorkerOptions } from '../../../src/protocol/worker.js';

export const PYTHON_TESTS_DIR = join(repoRoot(), 'python', 'tests');
export const FIXTURES_DIR = join(PYTHON_TESTS_DIR, 'fixtures');

/** Options that run `python -m fixtures.fake_worker <verb> <args>` quietly. */
export function fixture(verb: string, args: string[] = [], extra: Partial<WorkerOptions> = {}): WorkerOptions {
  return {
    verb,
    args,
    module: 'fixtures.fake_worker',
    cwd: PYTHON_TESTS_DIR,
    silent: true,
    ...extra,
    env: { PYTHONPATH: PYTHON_TESTS_DIR, ...extra.env },
  };
}
