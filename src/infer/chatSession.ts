// A conversation with a model: the history (the worker is stateless, so every turn sends the
// whole conversation), the image (one per conversation, at its first user turn) and the session
// commands a user types: /image PATH, /reset, /exit. Used by `loom chat` and the demo's last step.
import { requireImage } from './paths.js';
import type { ChatAnswer, ChatMessage, ChatReply, ChatRequest } from './chatWorker.js';

/** What answers a request: the chat worker (src/infer/chatWorker.ts). */
export interface ChatTransport {
  ask(request: ChatRequest, onToken?: (text: string) => void): Promise<ChatReply>;
}

/** What one line typed into a session did. */
export type SessionReply =
  | ({ kind: 'answer'; question: string; image: string | null } & ChatAnswer)
  /** The request was refused (bad image, too long, ...); the conversation is as it was before. */
  | { kind: 'error'; message: string }
  /** A session command's confirmation (/image, /reset) or a hint. */
  | { kind: 'info'; message: string }
  | { kind: 'exit' }
  | { kind: 'empty' };

export const SESSION_HELP = '/image PATH  new image (starts a new conversation)\n/reset  clear the conversation\n/exit  quit (or Ctrl-D)';

export type SessionCommand =
  | { kind: 'ask'; text: string }
  | { kind: 'image'; path: string }
  | { kind: 'reset' }
  | { kind: 'exit' }
  | { kind: 'help' }
  | { kind: 'empty' }
  | { kind: 'unknown'; name: string };

/** Reads one typed line: a session command (`/name ...`) or a question. `//text` sends `/text`. */
export function parseSessionLine(line: string): SessionCommand {
  const text = line.trim();
  if (text === '') return { kind: 'empty' };
  if (text.startsWith('//')) return { kind: 'ask', text: text.slice(1) };
  if (!text.startsWith('/')) return { kind: 'ask', text };
  const name = text.slice(1).split(/\s+/, 1)[0] ?? '';
  const arg = text.slice(1 + name.length).trim();
  switch (name) {
    case 'image':
      return arg === '' ? { kind: 'unknown', name: '/image needs a path: /image PATH' } : { kind: 'image', path: arg };
    case 'reset':
    case 'clear':
      return { kind: 'reset' };
    case 'exit':
    case 'quit':
      return { kind: 'exit' };
    case 'help':
    case '?':
      return { kind: 'help' };
    default:
      return { kind: 'unknown', name: `unknown command /${name}` };
  }
}

export interface SessionOptions {
  /** Absolute image path for the first conversation, or null. */
  image?: string | null;
  /** A system message that opens every conversation. */
  system?: string;
  /** Where relative /image paths are resolved. */
  cwd?: string;
}

export class ChatSession {
  private turns: ChatMessage[] = [];
  private currentImage: string | null;

  constructor(
    private readonly transport: ChatTransport,
    private readonly options: SessionOptions = {},
  ) {
    this.currentImage = options.image ?? null;
  }

  get image(): string | null {
    return this.currentImage;
  }

  /** The conversation as the next request will send it (system message first, when set). */
  get history(): ChatMessage[] {
    const system: ChatMessage[] = this.options.system !== undefined ? [{ role: 'system', content: this.options.system }] : [];
    return [...system, ...this.turns];
  }

  /** Asks `question` in the current conversation; a refused request leaves the conversation unchanged. */
  async ask(question: string, onToken?: (text: string) => void): Promise<SessionReply> {
    const messages: ChatMessage[] = [...this.history, { role: 'user', content: question }];
    const reply = await this.transport.ask({ messages, image: this.currentImage }, onToken);
    if (!reply.ok) return { kind: 'error', message: reply.error };
    this.turns.push({ role: 'user', content: question }, { role: 'assistant', content: reply.text });
    const { ok: _ok, ...answer } = reply;
    return { kind: 'answer', question, image: this.currentImage, ...answer };
  }

  /** A new image starts a new conversation (the image belongs to its first user turn). */
  setImage(path: string): SessionReply {
    let file: string;
    try {
      file = requireImage(path, 'image', this.options.cwd);
    } catch (err) {
      return { kind: 'error', message: (err as Error).message };
    }
    this.currentImage = file;
    this.turns = [];
    return { kind: 'info', message: `image ${file}; new conversation` };
  }

  reset(): SessionReply {
    this.turns = [];
    return { kind: 'info', message: 'new conversation' + (this.currentImage ? ` (same image ${this.currentImage})` : '') };
  }

  /** Handles one typed line (a question or a session command). */
  async input(line: string, onToken?: (text: string) => void): Promise<SessionReply> {
    const command = parseSessionLine(line);
    switch (command.kind) {
      case 'ask':
        return this.ask(command.text, onToken);
      case 'image':
        return this.setImage(command.path);
      case 'reset':
        return this.reset();
      case 'exit':
        return { kind: 'exit' };
      case 'help':
        return { kind: 'info', message: SESSION_HELP };
      case 'empty':
        return { kind: 'empty' };
      case 'unknown':
        return { kind: 'error', message: `${command.name}\n${SESSION_HELP}` };
    }
  }
}
