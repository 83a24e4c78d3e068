// The exact command line that starts a compute worker, and how it is shown to the user.
import { LoomError, EXIT_USAGE } from '../util/errors.js';
import { pythonExecutable } from '../util/paths.js';

/** How to start several worker processes with torchrun (one per GPU, optionally several nodes). */
export interface LauncherOptions {
  nprocPerNode: number;
  nnodes?: number;
  nodeRank?: number;
  /** Required with more than one node; on one node torchrun's standalone rendezvous is used without it. */
  masterAddr?: string;
  masterPort?: number;
}

const DEFAULT_MASTER_PORT = 29500;
const DEFAULT_WORKER_MODULE = 'loom_compute';

export interface WorkerCommandOptions {
  verb: string;
  configPath?: string;
  args?: string[];
  /** Python module run with -m; default 'loom_compute'. */
  module?: string;
  /** Interpreter; default pythonExecutable() ($LOOM_PYTHON, the repo's .venv, python3). */
  python?: string;
  /** Start through torchrun when set. */
  launcher?: LauncherOptions;
}

function positiveInteger(value: number, what: string, min: number, max = Number.MAX_SAFE_INTEGER): number {
  if (!Number.isInteger(value) || value < min || value > max) {
    throw new LoomError(`${what} must be an integer from ${min} to ${max}, got ${value}`, EXIT_USAGE);
  }
  return value;
}

/**
 * torchrun's arguments, as `python -m torch.distributed.run` (exactly what the `torchrun` script
 * runs, but always with the same interpreter as the worker).
 */
function launcherArgs(launcher: LauncherOptions): string[] {
  const nproc = positiveInteger(launcher.nprocPerNode, 'processes per node', 1);
  const nnodes = positiveInteger(launcher.nnodes ?? 1, 'number of nodes', 1);
  const nodeRank = positiveInteger(launcher.nodeRank ?? 0, 'node rank', 0, nnodes - 1);
  const args = ['-m', 'torch.distributed.run', `--nproc-per-node=${nproc}`];
  if (nnodes === 1 && launcher.masterAddr === undefined) {
    if (launcher.masterPort !== undefined) {
      throw new LoomError('a master port was given without a master address; give both, or neither for a single node', EXIT_USAGE);
    }
    return [...args, '--standalone', '--nnodes=1'];
  }
  if (launcher.masterAddr === undefined || launcher.masterAddr.trim() === '') {
    throw new LoomError(`training on ${nnodes} nodes needs the master address (the host name of node 0)`, EXIT_USAGE);
  }
  const port = positiveInteger(launcher.masterPort ?? DEFAULT_MASTER_PORT, 'master port', 1, 65535);
  return [...args, `--nnodes=${nnodes}`, `--node-rank=${nodeRank}`, `--master-addr=${launcher.masterAddr}`, `--master-port=${port}`];
}

/** The argv that starts the worker: `python -m <module> <verb> ...` or `python -m torch.distributed.run ... -m <module> <verb> ...`. */
export function workerCommand(options: WorkerCommandOptions): string[] {
  const verb = options.verb;
  if (verb === '' || verb.startsWith('-')) throw new LoomError(`invalid worker verb ${JSON.stringify(verb)}`, EXIT_USAGE);
  const python = options.python ?? pythonExecutable();
  const module = options.module ?? DEFAULT_WORKER_MODULE;
  const tail = [verb, ...(options.configPath !== undefined ? ['--config', options.configPath] : []), ...(options.args ?? [])];
  if (options.launcher) return [python, ...launcherArgs(options.launcher), '-m', module, ...tail];
  return [python, '-m', module, ...tail];
}

const SAFE_WORD = /^[A-Za-z0-9_@%+=:,./-]+$/;

/** One argument quoted for a POSIX shell (left bare when nothing in it is special). */
export function shellQuote(arg: string): string {
  if (SAFE_WORD.test(arg)) return arg;
  return `'${arg.replace(/'/g, `'\\''`)}'`;
}

/** The command as a line a user can paste into a POSIX shell. */
export function formatCommand(argv: string[]): string {
  return argv.map(shellQuote).join(' ');
}
