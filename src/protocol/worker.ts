// Runs a Python compute worker and follows its JSON Lines events (docs/architecture.md,
// "Process protocol"): progress goes to the caller's progress display, logs and the worker's stderr reach
// our stderr, and the outcome becomes either the `done` summary or one clear LoomError.
import { spawn } from 'node:child_process';
import { constants as osConstants } from 'node:os';
import { createInterface } from 'node:readline';
import { LoomError, EXIT_FAILURE } from '../util/errors.js';
import { noProgress, type Progress, type StartProgress } from '../util/progress.js';
import { pythonExecutable } from '../util/paths.js';
import { workerCommand, type WorkerCommandOptions } from './command.js';
import { parseWorkerEvent, type WorkerEvent } from './events.js';
import { LineTail } from './tail.js';

export { formatCommand, workerCommand, shellQuote, type LauncherOptions } from './command.js';
export { parseWorkerEvent, type WorkerEvent } from './events.js';

/** What to run (verb, config, args, module, python, launcher: see WorkerCommandOptions) and how to show it. */
export interface WorkerOptions extends WorkerCommandOptions {
  /** Added to our own environment (PYTHONUNBUFFERED=1 is always set). */
  env?: Record<string, string>;
  cwd?: string;
  /** Shows the worker's progress events (the CLI passes its bars); nothing is shown without it. */
  startProgress?: StartProgress;
  /** Label of the progress display; default the verb. */
  progressLabel?: string;
  /** Text shown after the progress (e.g. the latest loss), read at every update. */
  progressSuffix?: () => string;
  /** Print nothing (no progress, logs or forwarded stderr); stderr is still kept for error messages. */
  silent?: boolean;
  onEvent?: (e: WorkerEvent) => void;
}

export interface WorkerResult {
  done: Record<string, unknown>;
  events: WorkerEvent[];
}

/** How many lines of the worker's stderr an error message quotes. */
const STDERR_TAIL_LINES = 50;

/** A worker that failed: why, with what it last said. */
export class WorkerError extends LoomError {
  constructor(
    message: string,
    exitCode: number,
    readonly details: {
      verb: string;
      argv: string[];
      workerExitCode: number | null;
      workerSignal: NodeJS.Signals | null;
      errorEvent?: Extract<WorkerEvent, { event: 'error' }>;
      stderrTail: string[];
    },
  ) {
    super(message, exitCode);
    this.name = 'WorkerError';
  }
}

/** The line loom_compute.protocol prints on stderr when a verb fails on one of several ranks. */
const RANK_FAILURE = /^\[rank (\d+)\/\d+\] loom_compute: (?:failed|error): (.*)$/;

export const SETUP_HINT = 'run `make setup` (creates .venv with loom_compute installed) or set LOOM_PYTHON to a Python that has it';

export function signalExitCode(signal: NodeJS.Signals): number {
  const number = (osConstants.signals as Record<string, number | undefined>)[signal];
  return number === undefined ? EXIT_FAILURE : 128 + number;
}

/** The worker's last stderr lines, quoted for an error message. */
export function quoteTail(lines: string[]): string {
  const shown = lines.filter((line, i) => line.trim() !== '' || i < lines.length - 1);
  if (shown.length === 0) return '\n(the worker wrote nothing to stderr)';
  return `\nlast lines of its stderr:\n${shown.map((line) => `  | ${line}`).join('\n')}`;
}

/** A hint for a crash without an error event (memory, segfault, missing package), or ''. */
export function crashHint(lines: string[], code: number | null, signal: NodeJS.Signals | null): string {
  const text = lines.join('\n');
  if (/No module named ['"]?(loom_compute|torch)\b/.test(text)) return `\nhint: the compute package is not installed for this interpreter: ${SETUP_HINT}`;
  if (signal === 'SIGKILL' || code === 137) return '\nhint: SIGKILL usually means the machine ran out of memory (or a scheduler stopped the job)';
  if (signal === 'SIGSEGV' || code === 139) return '\nhint: a segmentation fault is a bug in a native library; `loom doctor` shows the versions in use';
  return '';
}

/** Starts the worker, follows its events until it exits, and returns its `done` summary. */
export async function runWorker(options: WorkerOptions): Promise<WorkerResult> {
  const argv = workerCommand(options);
  const [file, ...args] = argv as [string, ...string[]];
  const verb = options.verb;
  const silent = options.silent ?? false;
  const events: WorkerEvent[] = [];
  // Under torchrun a failing rank other than 0 reports only on stderr, and rank 0 then reports
  // "interrupted" when torchrun stops it: remember the first such line as the likely cause.
  let rankFailure: string | undefined;
  const stderrTail = new LineTail(STDERR_TAIL_LINES, (line) => {
    const match = RANK_FAILURE.exec(line);
    if (match && rankFailure === undefined && match[1] !== '0') rankFailure = `rank ${match[1]}: ${match[2]}`;
  });
  let progress: Progress | undefined;
  let doneEvent: Extract<WorkerEvent, { event: 'done' }> | undefined;
  let errorEvent: Extract<WorkerEvent, { event: 'error' }> | undefined;
  let interruptedBy: NodeJS.Signals | undefined;
  let callbackError: { error: unknown } | undefined;

  const child = spawn(file, args, {
    cwd: options.cwd,
    env: { ...process.env, PYTHONUNBUFFERED: '1', ...options.env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });

  const handle = (event: WorkerEvent): void => {
    events.push(event);
    switch (event.event) {
      case 'progress': {
        if (!progress) {
          const unit = typeof event.unit === 'string' ? event.unit : undefined;
          const start = silent ? noProgress : (options.startProgress ?? noProgress);
          progress = start(options.progressLabel ?? verb, event.total, { unit, suffix: options.progressSuffix });
        }
        progress.update(event.done, event.total);
        break;
      }
      case 'log':
        if (!silent) process.stderr.write(`${verb} ${event.level}: ${event.msg}\n`);
        break;
      case 'done':
        doneEvent = event;
        break;
      case 'error':
        errorEvent = event;
        break;
      case 'metric':
        break;
    }
    try {
      options.onEvent?.(event);
    } catch (err) {
      // The caller cannot go on: stop the worker and hand the caller's error back once it exited.
      if (callbackError === undefined) {
        callbackError = { error: err };
        child.kill('SIGTERM');
      }
    }
  };

  const stdoutDone = new Promise<void>((resolve) => {
    const lines = createInterface({ input: child.stdout, crlfDelay: Infinity });
    lines.on('line', (line) => {
      const event = parseWorkerEvent(line);
      if (event) handle(event);
      else if (!silent && line.trim() !== '') process.stderr.write(`${line}\n`); // not an event: someone's print
    });
    lines.on('close', resolve);
  });
  child.stderr.on('data', (chunk: Buffer) => {
    stderrTail.push(chunk);
    if (!silent) process.stderr.write(chunk);
  });

  // Ctrl-C reaches the worker too (same process group), but a `kill` of the CLI alone would not.
  const forward = (signal: NodeJS.Signals) => (): void => {
    interruptedBy = signal;
    if (child.exitCode === null && child.signalCode === null) child.kill(signal);
  };
  const onSigint = forward('SIGINT');
  const onSigterm = forward('SIGTERM');
  process.on('SIGINT', onSigint);
  process.on('SIGTERM', onSigterm);

  let outcome: { code: number | null; signal: NodeJS.Signals | null; spawnError?: NodeJS.ErrnoException };
  try {
    outcome = await new Promise((resolve) => {
      child.once('error', (err: NodeJS.ErrnoException) => {
        // Only a failed start ends the run here; later errors (a failed kill) leave 'close' to do it.
        if (child.pid === undefined) resolve({ code: null, signal: null, spawnError: err });
      });
      child.once('close', (code, signal) => resolve({ code, signal }));
    });
    if (!outcome.spawnError) await stdoutDone;
  } finally {
    process.off('SIGINT', onSigint);
    process.off('SIGTERM', onSigterm);
    progress?.stop();
  }

  if (callbackError) throw callbackError.error;
  const { code, signal, spawnError } = outcome;
  const tail = stderrTail.snapshot();
  const details = { verb, argv, workerExitCode: code, workerSignal: signal, errorEvent, stderrTail: tail };
  if (spawnError) {
    const python = options.python ?? pythonExecutable();
    const reason = spawnError.code === 'ENOENT' ? 'not found' : (spawnError.code ?? spawnError.message);
    throw new WorkerError(`cannot start the Python worker: interpreter '${python}' ${reason === 'not found' ? 'was not found' : `failed (${reason})`}; ${SETUP_HINT}`, EXIT_FAILURE, details);
  }
  if (errorEvent) {
    const exitCode = code !== null && code !== 0 ? code : signal ? signalExitCode(signal) : EXIT_FAILURE;
    if (errorEvent.msg === 'interrupted' && interruptedBy === undefined && rankFailure !== undefined) {
      throw new WorkerError(`${verb} failed on ${rankFailure}`, exitCode, details);
    }
    throw new WorkerError(`${verb} failed: ${errorEvent.msg}`, exitCode, details);
  }
  if (code === 0) {
    if (doneEvent) {
      const { event: _kind, ...summary } = doneEvent;
      return { done: summary, events };
    }
    throw new WorkerError(`${verb} failed: the worker exited without a result (no "done" event)${quoteTail(tail)}`, EXIT_FAILURE, details);
  }
  if (interruptedBy && (signal !== null || code === 130 || code === 143)) {
    throw new WorkerError(`${verb} interrupted`, signalExitCode(interruptedBy), details);
  }
  const how = signal ? `was killed by ${signal}` : `exited with code ${code}`;
  const exitCode = signal ? signalExitCode(signal) : (code ?? EXIT_FAILURE);
  throw new WorkerError(`${verb} failed: the worker ${how} without reporting an error${quoteTail(tail)}${crashHint(tail, code, signal)}`, exitCode, details);
}
