// Which checkpoints a run directory holds. The rule lives on the Python side, with the trainer that
// writes them (loom_compute/checkpoints.py); `loom train` asks it through the torch-free
// `checkpoints` verb instead of repeating it, and refuses a fresh run over a run that has one.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { LoomError } from '../util/errors.js';
import { parseWorkerEvent } from '../protocol/events.js';
import { workerCommand } from '../protocol/command.js';

export interface CheckpointEntry {
  step: number;
  path: string;
}

/** The run's complete checkpoints, oldest first, as the worker's rule sees them. */
export function completeCheckpoints(runDir: string): CheckpointEntry[] {
  // No checkpoints/ folder, no checkpoint under any rule: skip starting Python.
  if (!existsSync(join(runDir, 'checkpoints'))) return [];
  const [python, ...args] = workerCommand({ verb: 'checkpoints', args: ['--run-dir', resolve(runDir)] });
  const result = spawnSync(python!, args, { encoding: 'utf8', env: { ...process.env, RANK: '0' } });
  if (result.error) {
    throw new LoomError(`cannot start ${python} to list the checkpoints of ${runDir}: ${result.error.message} (run \`make setup\`, or set LOOM_PYTHON)`);
  }
  const events = result.stdout.split('\n').map(parseWorkerEvent);
  const failure = events.find((e) => e?.event === 'error');
  const done = events.find((e) => e?.event === 'done');
  if (failure !== undefined || done === undefined || !Array.isArray(done.checkpoints)) {
    const why = failure !== undefined ? String(failure.msg) : `exit ${result.status}: ${result.stderr.trim().split('\n').slice(-3).join(' | ')}`;
    throw new LoomError(`cannot list the checkpoints of ${runDir}: python -m loom_compute checkpoints failed (${why})`);
  }
  return (done.checkpoints as unknown[]).map((entry) => {
    const { step, path } = entry as { step?: unknown; path?: unknown };
    if (typeof step !== 'number' || typeof path !== 'string') {
      throw new LoomError(`cannot list the checkpoints of ${runDir}: the checkpoints verb answered ${JSON.stringify(entry)}`);
    }
    return { step, path };
  });
}
