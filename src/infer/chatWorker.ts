// A long-lived `python -m loom_compute chat` process: requests go in as JSON lines on its stdin,
// and its events come back on stdout (docs/architecture.md, "The process protocol"):
//   {"event":"ready","model","prompt_format","stage"}   once the model is loaded
//   {"event":"token","text"}                             zero or more per request (streaming)
//   {"event":"answer","text","finish_reason","new_tokens","seconds"} or {"event":"answer","error"}
//   {"event":"done","answers"}                           after stdin's EOF
// runWorker (src/protocol/worker.ts) runs a verb to its end with no input; this keeps one open.
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { createInterface } from 'node:readline';
import { LoomError, EXIT_FAILURE } from '../util/errors.js';
import { pythonExecutable } from '../util/paths.js';
import { workerCommand } from '../protocol/command.js';
import { parseWorkerEvent } from '../protocol/events.js';
import { LineTail } from '../protocol/tail.js';
import { SETUP_HINT, WorkerError, crashHint, quoteTail, signalExitCode } from '../protocol/worker.js';

export type Role = 'system' | 'user' | 'assistant';

export interface ChatMessage {
  role: Role;
  content: string;
}

/** One request: the whole conversation so far, ending with the user's new turn. */
export interface ChatRequest {
  messages: ChatMessage[];
  /** Absolute path of the conversation's image, or null. */
  image: string | null;
}

export interface ChatAnswer {
  text: string;
  finish_reason: 'stop' | 'length';
  new_tokens: number;
  seconds: number;
}

/** An answer, or the worker's reason for refusing the request (the session goes on). */
export type ChatReply = ({ ok: true } & ChatAnswer) | { ok: false; error: string };

export interface ChatReady {
  model: string;
  prompt_format: string;
  stage: string;
}

export interface ChatWorkerOptions {
  /** The export folder (already resolved). */
  model: string;
  /** Worker arguments after `--model EXPORT` (sampling: src/infer/sampling.ts). */
  args?: string[];
  /** Python module run with -m (tests use a fixture); default loom_compute. */
  module?: string;
  python?: string;
  cwd?: string;
  env?: Record<string, string>;
  /** Where the worker's stderr and `log` events go; default our stderr. */
  onStderr?: (text: string) => void;
}

/** Interrupted by the user (Ctrl-C, SIGTERM): the caller ends quietly with this code. */
export class ChatInterrupted extends LoomError {
  constructor(readonly signal: NodeJS.Signals) {
    super('interrupted', signalExitCode(signal));
    this.name = 'ChatInterrupted';
  }
}

const VERB = 'chat';

interface Pending {
  onToken?: (text: string) => void;
  resolve: (reply: ChatReply) => void;
  reject: (err: unknown) => void;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

export class ChatWorker {
  readonly argv: string[];
  private readonly child: ChildProcessWithoutNullStreams;
  private readonly tail = new LineTail(50);
  private pending: Pending | undefined;
  private readyWaiter: { resolve: (r: ChatReady) => void; reject: (e: unknown) => void } | undefined;
  private errorEvent: { msg: string } | undefined;
  private doneEvent: Record<string, unknown> | undefined;
  private interruptedBy: NodeJS.Signals | undefined;
  private failure: unknown;
  private readonly exited: Promise<void>;
  private readonly onStderr: (text: string) => void;
  private readonly removeExitHook: () => void;

  /** Starts the worker and waits until its model is loaded (or it fails, with the reason). */
  static async start(o: ChatWorkerOptions): Promise<{ worker: ChatWorker; ready: ChatReady }> {
    const worker = ChatWorker.spawn(o);
    return { worker, ready: await worker.ready };
  }

  /** Starts the worker; `ready` settles once its model is loaded, and interrupt() works meanwhile. */
  static spawn(o: ChatWorkerOptions): ChatWorker {
    return new ChatWorker(o);
  }

  /** The worker's `ready` event, or why it ended before sending one. */
  readonly ready: Promise<ChatReady>;

  /** The command line start() runs. */
  static command(o: ChatWorkerOptions): string[] {
    return workerCommand({ verb: VERB, args: ['--model', o.model, ...(o.args ?? [])], ...(o.module ? { module: o.module } : {}), ...(o.python ? { python: o.python } : {}) });
  }

  private constructor(private readonly o: ChatWorkerOptions) {
    this.argv = ChatWorker.command(o);
    this.onStderr = o.onStderr ?? ((text) => process.stderr.write(text));
    this.ready = new Promise<ChatReady>((resolve, reject) => {
      this.readyWaiter = { resolve, reject };
    });
    this.ready.catch(() => {}); // a caller that never awaits it still sees the failure in ask()/close()
    const [file, ...args] = this.argv as [string, ...string[]];
    // Its own process group: a Ctrl-C on the terminal reaches only us, and we decide how the
    // session ends (the worker would otherwise die mid-answer with "interrupted").
    this.child = spawn(file, args, {
      cwd: o.cwd,
      env: { ...process.env, PYTHONUNBUFFERED: '1', ...o.env },
      stdio: ['pipe', 'pipe', 'pipe'],
      detached: true,
    });
    // Never leave the worker behind when we exit (its stdin closing ends it too, but later).
    const kill = (): void => {
      if (this.running) this.child.kill('SIGTERM');
    };
    process.on('exit', kill);
    this.removeExitHook = () => process.off('exit', kill);
    this.child.stdin.on('error', () => {}); // EPIPE after the worker died: the exit reports why
    this.child.stderr.on('data', (chunk: Buffer) => {
      this.tail.push(chunk);
      // Once the user ended the session, the worker's "interrupted" is noise.
      if (!this.interruptedBy) this.onStderr(chunk.toString('utf8'));
    });
    const stdoutClosed = new Promise<void>((resolve) => {
      const lines = createInterface({ input: this.child.stdout, crlfDelay: Infinity });
      lines.on('line', (line) => this.onLine(line));
      lines.on('close', resolve);
    });
    this.exited = new Promise<void>((resolve) => {
      this.child.once('error', (err: NodeJS.ErrnoException) => {
        if (this.child.pid !== undefined) return;
        const python = o.python ?? pythonExecutable();
        this.failure = new WorkerError(
          `cannot start the Python worker: interpreter '${python}' ${err.code === 'ENOENT' ? 'was not found' : `failed (${err.code ?? err.message})`}; ${SETUP_HINT}`,
          EXIT_FAILURE,
          this.details(null, null),
        );
        this.settle();
        resolve();
      });
      this.child.once('close', (code, signal) => {
        void stdoutClosed.then(() => {
          this.failure ??= this.exitFailure(code, signal);
          this.settle();
          this.removeExitHook();
          resolve();
        });
      });
    });
  }

  /** Settles once the worker has exited, for whatever reason. */
  get finished(): Promise<void> {
    return this.exited;
  }

  /** Why the worker ended, once it has: ChatInterrupted, a WorkerError, or undefined after a clean close. */
  get failureReason(): unknown {
    return this.failure;
  }

  get running(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null && this.child.pid !== undefined;
  }

  /** Sends one request; resolves with the answer or the worker's refusal, rejects if the worker dies. */
  ask(request: ChatRequest, onToken?: (text: string) => void): Promise<ChatReply> {
    if (this.pending) return Promise.reject(new Error('ChatWorker.ask: a request is already in flight'));
    if (!this.running || this.failure) return Promise.reject(this.failure ?? new LoomError('the chat worker is not running'));
    return new Promise<ChatReply>((resolve, reject) => {
      this.pending = { resolve, reject, ...(onToken ? { onToken } : {}) };
      this.child.stdin.write(JSON.stringify(request) + '\n');
    });
  }

  /** Ends the session (EOF on the worker's stdin) and returns its `done` summary. */
  async close(): Promise<Record<string, unknown>> {
    this.child.stdin.end();
    await this.exited;
    if (this.doneEvent && !(this.failure instanceof ChatInterrupted)) return this.doneEvent;
    throw this.failure ?? new LoomError('the chat worker exited without a result');
  }

  /** Stops the worker because the user asked to (Ctrl-C); pending and later calls see ChatInterrupted. */
  async interrupt(signal: NodeJS.Signals = 'SIGINT'): Promise<void> {
    this.interruptedBy ??= signal;
    if (this.running) this.child.kill('SIGTERM');
    await this.exited;
  }

  private onLine(line: string): void {
    const text = line.trim();
    let value: unknown;
    try {
      value = text.startsWith('{') ? JSON.parse(text) : undefined;
    } catch {
      value = undefined;
    }
    if (!isRecord(value)) {
      if (text !== '') this.onStderr(`${line}\n`); // not an event: someone's print
      return;
    }
    switch (value.event) {
      case 'ready': {
        const ready = { model: String(value.model ?? this.o.model), prompt_format: String(value.prompt_format ?? ''), stage: String(value.stage ?? '') };
        this.readyWaiter?.resolve(ready);
        this.readyWaiter = undefined;
        return;
      }
      case 'token':
        if (typeof value.text === 'string') this.pending?.onToken?.(value.text);
        return;
      case 'answer': {
        const pending = this.pending;
        this.pending = undefined;
        if (!pending) return;
        if (typeof value.error === 'string') pending.resolve({ ok: false, error: value.error });
        else if (typeof value.text === 'string') {
          pending.resolve({
            ok: true,
            text: value.text,
            finish_reason: value.finish_reason === 'length' ? 'length' : 'stop',
            new_tokens: typeof value.new_tokens === 'number' ? value.new_tokens : 0,
            seconds: typeof value.seconds === 'number' ? value.seconds : 0,
          });
        } else pending.resolve({ ok: false, error: `the worker sent an answer without text or error: ${text}` });
        return;
      }
    }
    const event = parseWorkerEvent(line);
    if (!event) {
      this.onStderr(`${line}\n`);
      return;
    }
    if (event.event === 'log') this.onStderr(`${VERB} ${event.level}: ${event.msg}\n`);
    else if (event.event === 'done') {
      const { event: _kind, ...summary } = event;
      this.doneEvent = summary;
    } else if (event.event === 'error') this.errorEvent = event;
  }

  /** Rejects whoever still waits, once the worker is gone. */
  private settle(): void {
    const failure = this.failure ?? new LoomError('the chat worker exited');
    this.readyWaiter?.reject(failure);
    this.readyWaiter = undefined;
    this.pending?.reject(failure);
    this.pending = undefined;
  }

  private exitFailure(code: number | null, signal: NodeJS.Signals | null): unknown {
    if (this.interruptedBy) return new ChatInterrupted(this.interruptedBy);
    if (code === 0 && this.doneEvent) return undefined;
    const details = this.details(code, signal);
    const exitCode = code !== null && code !== 0 ? code : signal ? signalExitCode(signal) : EXIT_FAILURE;
    if (this.errorEvent) return new WorkerError(`${VERB} failed: ${this.errorEvent.msg}`, exitCode, details);
    const tail = this.tail.snapshot();
    if (code === 0) return new WorkerError(`${VERB} failed: the worker exited without a result (no "done" event)${quoteTail(tail)}`, EXIT_FAILURE, details);
    const how = signal ? `was killed by ${signal}` : `exited with code ${code}`;
    return new WorkerError(`${VERB} failed: the worker ${how} without reporting an error${quoteTail(tail)}${crashHint(tail, code, signal)}`, exitCode, details);
  }

  private details(code: number | null, signal: NodeJS.Signals | null) {
    return {
      verb: VERB,
      argv: this.argv,
      workerExitCode: code,
      workerSignal: signal,
      ...(this.errorEvent ? { errorEvent: { event: 'error' as const, ...this.errorEvent } } : {}),
      stderrTail: this.tail.snapshot(),
    };
  }
}
