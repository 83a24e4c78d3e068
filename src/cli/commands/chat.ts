// `loom chat`: talk to an exported model. With a question it prints the answer (streamed on a
// terminal; --json for scripts); without one it is an interactive session on stdin. The session
// (history, /image, /reset) is src/infer/chatSession.ts, the worker process src/infer/chatWorker.ts.
import { createInterface } from 'node:readline';
import type { Command } from 'commander';
import { ChatSession, SESSION_HELP, type SessionReply } from '../../infer/chatSession.js';
import { ChatInterrupted, ChatWorker, type ChatReady } from '../../infer/chatWorker.js';
import { requireImage, resolveExportDir } from '../../infer/paths.js';
import { samplingArgs } from '../../infer/sampling.js';
import { formatCommand } from '../../protocol/command.js';
import { LoomError } from '../../util/errors.js';
import { addSamplingOptions, samplingFromOptions, type SamplingCliOptions } from '../samplingOptions.js';

interface ChatCliOptions extends SamplingCliOptions {
  model: string;
  image?: string;
  system?: string;
  json?: boolean;
}

const HELP = [
  'Talk to a model exported by `loom train` (runs/<name>/export, or the run directory itself) or brought in by ' +
    '`loom import`. The model keeps its own prompt format (Loom SFT: ChatML; a pre-trained model: the image and ' +
    'the text as a caption prefix; imported Open-Qwen2VL/LLaVA models: theirs).',
  'With a question: prints the answer, streamed token by token when stdout is a terminal. --json prints one object ' +
    '{question, image, answer, finish_reason, new_tokens, seconds} instead.',
  'Without a question: an interactive session on stdin. Each turn sends the whole conversation so far, so the model ' +
    `sees the history. Commands:\n${SESSION_HELP.replace(/^/gm, '  ')}\nA refused request (an unreadable image, a ` +
    'conversation longer than the model takes) prints the reason and the session goes on. Ctrl-C ends it. With ' +
    '--json each answer is one JSON line.',
  'The model runs in `python -m loom_compute chat` (greedy by default; see the sampling flags). Set LOOM_LOG_LEVEL=info ' +
    'to see the worker\'s log lines (default here: warnings only).',
].join('\n\n');

const EXAMPLES = [
  '',
  'Examples:',
  '  loom chat --model runs/demo/runs/demo-sft --image runs/demo/data/sft/images/synth_sft_00000000.jpg "How many shapes are there?"',
  '  loom chat --model runs/ow-sft/export --image cat.jpg --json "What is in the picture?" | jq .answer',
  '  loom chat --model runs/ow-sft/export --image cat.jpg --temperature 0.7 --top-p 0.9   # interactive',
  '',
].join('\n');

export function registerChat(program: Command): void {
  const command = program
    .command('chat')
    .summary('ask an exported model about an image')
    .description(HELP)
    .argument('[question...]', 'the question (several words are joined); none starts an interactive session')
    .requiredOption('--model <export>', 'a Loom export (runs/<name>/export), or a run directory holding one')
    .option('--image <path>', 'the image the conversation is about (any format sharp or PIL reads)')
    .option('--system <text>', 'a system message that opens every conversation');
  addSamplingOptions(command)
    .option('--json', 'print {question, image, answer, finish_reason, new_tokens, seconds} as JSON (one line per answer in a session)')
    .addHelpText('after', EXAMPLES)
    .action(async (words: string[], opts: ChatCliOptions) => {
      const model = resolveExportDir(opts.model, '--model');
      const image = opts.image !== undefined ? requireImage(opts.image, '--image') : null;
      const args = samplingArgs(samplingFromOptions(opts));
      const question = words.join(' ').trim();
      try {
        await chat({ model, image, args, question, ...(opts.system !== undefined ? { system: opts.system } : {}), json: opts.json === true });
      } catch (err) {
        if (!(err instanceof ChatInterrupted)) throw err;
        process.stderr.write('\n');
        process.exitCode = err.exitCode;
      }
    });
}

interface ChatRun {
  model: string;
  image: string | null;
  args: string[];
  question: string;
  system?: string;
  json: boolean;
}

async function chat(r: ChatRun): Promise<void> {
  const env = { LOOM_LOG_LEVEL: process.env.LOOM_LOG_LEVEL ?? 'warning' };
  const interactive = r.question === '';
  if (interactive && process.stdin.isTTY) process.stderr.write(`loading ${r.model} ...\n`);
  const worker = ChatWorker.spawn({ model: r.model, args: r.args, env });
  // Ctrl-C (outside a terminal session's readline, which sees it as input) and SIGTERM stop the
  // worker, also while it loads; whatever waits on it then ends with ChatInterrupted.
  const stop = (signal: NodeJS.Signals) => (): void => void worker.interrupt(signal);
  const onSigint = stop('SIGINT');
  const onSigterm = stop('SIGTERM');
  process.on('SIGINT', onSigint);
  process.on('SIGTERM', onSigterm);
  try {
    const ready = await worker.ready;
    const session = new ChatSession(worker, { image: r.image, ...(r.system !== undefined ? { system: r.system } : {}) });
    if (interactive) await interactiveSession(worker, session, ready, r.json);
    else await oneQuestion(session, r.question, r.json);
    await worker.close();
  } finally {
    process.off('SIGINT', onSigint);
    process.off('SIGTERM', onSigterm);
    if (worker.running) await worker.interrupt();
  }
}

/** Streams tokens to stdout when it is a terminal (and no JSON is asked for). */
function tokenPrinter(json: boolean): { onToken?: (text: string) => void; streamed: () => boolean } {
  if (json || !process.stdout.isTTY) return { streamed: () => false };
  let any = false;
  return {
    onToken: (text) => {
      any = true;
      process.stdout.write(text);
    },
    streamed: () => any,
  };
}

function jsonAnswer(reply: Extract<SessionReply, { kind: 'answer' }>): Record<string, unknown> {
  return { question: reply.question, image: reply.image, answer: reply.text, finish_reason: reply.finish_reason, new_tokens: reply.new_tokens, seconds: reply.seconds };
}

/** Prints an answer (the rest of it, when tokens were streamed). */
function printAnswer(reply: Extract<SessionReply, { kind: 'answer' }>, json: boolean, streamed: boolean, pretty: boolean): void {
  if (json) {
    process.stdout.write(JSON.stringify(jsonAnswer(reply), null, pretty ? 2 : undefined) + '\n');
    return;
  }
  process.stdout.write(streamed ? '\n' : `${reply.text}\n`);
  if (reply.finish_reason === 'length') process.stderr.write(`(cut at ${reply.new_tokens} new tokens: raise --max-new-tokens for longer answers)\n`);
}

async function oneQuestion(session: ChatSession, question: string, json: boolean): Promise<void> {
  const printer = tokenPrinter(json);
  const reply = await session.ask(question, printer.onToken);
  if (reply.kind === 'error') throw new LoomError(`chat: the model refused the request: ${reply.message}`);
  if (reply.kind === 'answer') printAnswer(reply, json, printer.streamed(), true);
}

async function interactiveSession(worker: ChatWorker, session: ChatSession, ready: ChatReady, json: boolean): Promise<void> {
  const terminal = process.stdin.isTTY === true && process.stderr.isTTY === true;
  if (terminal) {
    process.stderr.write(
      `Loom chat: ${ready.model} (stage ${ready.stage}, prompt ${ready.prompt_format})${session.image ? `, image ${session.image}` : ', no image'}\n` +
        `$ ${formatCommand(worker.argv)}\nType a question; ${SESSION_HELP.split('\n').map((l) => l.split('  ')[0]).join(', ')}.\n`,
    );
  }
  const rl = createInterface({ input: process.stdin, ...(terminal ? { output: process.stderr, prompt: '> ', terminal: true } : { terminal: false }) });
  // Ctrl-C: on a terminal readline reads it as input, elsewhere the signal handler stops the
  // worker; either way the worker's end closes the input, which ends the loop.
  rl.on('SIGINT', () => void worker.interrupt('SIGINT'));
  void worker.finished.then(() => rl.close());
  try {
    if (terminal) rl.prompt();
    for await (const line of rl) {
      const printer = tokenPrinter(json);
      const reply = await session.input(line, printer.onToken);
      if (reply.kind === 'exit') break;
      if (reply.kind === 'answer') printAnswer(reply, json, printer.streamed(), false);
      else if (reply.kind === 'error') process.stderr.write(`error: ${reply.message}\n`);
      else if (reply.kind === 'info') process.stderr.write(`${reply.message}\n`);
      if (terminal) rl.prompt();
    }
  } finally {
    rl.close();
  }
  if (!worker.running && worker.failureReason !== undefined) throw worker.failureReason;
}
