// The demo's last step: ask the instruction-tuned model about one of its SFT images, through the
// same session and worker `loom chat` uses, and set the answer beside the conversation's truth.
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { ChatSession } from '../infer/chatSession.js';
import { ChatWorker, type ChatWorkerOptions } from '../infer/chatWorker.js';
import { samplingArgs } from '../infer/sampling.js';
import type { LlavaRecord } from '../synth/sft.js';
import { LoomError } from '../util/errors.js';

/** Short answers: the synthetic ones are one sentence, and the tiny model runs on a CPU. */
export const DEMO_CHAT_MAX_NEW_TOKENS = 24;

export interface DemoChatProbe {
  id: string;
  image: string;
  question: string;
  answer: string;
  truth: string;
  exact: boolean;
  finish_reason: string;
  new_tokens: number;
  seconds: number;
  /** The same question as a `loom chat` command line. */
  loom_chat: string[];
}

/** The first SFT conversation's image, first question and its true answer (data/sft/llava.json). */
export async function firstSftQuestion(sftDir: string): Promise<{ id: string; image: string; question: string; truth: string }> {
  const file = join(sftDir, 'llava.json');
  const records = JSON.parse(await readFile(file, 'utf8')) as LlavaRecord[];
  const record = records[0];
  const [human, gpt] = record?.conversations ?? [];
  if (!record || human?.from !== 'human' || gpt?.from !== 'gpt') throw new LoomError(`${file}: no conversation starting with a human turn and its answer`);
  return { id: record.id, image: join(sftDir, record.image), question: human.value.replace(/^<image>\n?/, '').trim(), truth: gpt.value };
}

/** How the probe starts the chat worker (greedy, short answers, warnings only on stderr). */
export function demoChatOptions(exportDir: string, maxNewTokens = DEMO_CHAT_MAX_NEW_TOKENS): ChatWorkerOptions {
  return { model: exportDir, args: samplingArgs({ maxNewTokens, temperature: 0 }), env: { LOOM_LOG_LEVEL: process.env.LOOM_LOG_LEVEL ?? 'warning' } };
}

/** Asks the first SFT question about its image; the display sees the worker command first. */
export async function askSftModel(exportDir: string, sftDir: string, onCommand?: (argv: string[]) => void, maxNewTokens = DEMO_CHAT_MAX_NEW_TOKENS): Promise<DemoChatProbe> {
  const { id, image, question, truth } = await firstSftQuestion(sftDir);
  const options = demoChatOptions(exportDir, maxNewTokens);
  onCommand?.(ChatWorker.command(options));
  const { worker } = await ChatWorker.start(options);
  try {
    const reply = await new ChatSession(worker, { image }).ask(question);
    if (reply.kind !== 'answer') throw new LoomError(`chat: the SFT model refused the demo's question: ${reply.kind === 'error' ? reply.message : reply.kind}`);
    await worker.close();
    const answer = reply.text.trim();
    return {
      id,
      image,
      question,
      answer,
      truth,
      exact: answer === truth.trim(),
      finish_reason: reply.finish_reason,
      new_tokens: reply.new_tokens,
      seconds: reply.seconds,
      loom_chat: ['loom', 'chat', '--model', exportDir, '--image', image, '--max-new-tokens', String(maxNewTokens), question],
    };
  } finally {
    if (worker.running) await worker.interrupt();
  }
}
