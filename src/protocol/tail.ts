// Keeps the last N lines of a byte stream (a worker's stderr) for error messages.
import { StringDecoder } from 'node:string_decoder';

export class LineTail {
  private readonly lines: string[] = [];
  private partial = '';
  private readonly decoder = new StringDecoder('utf8');

  constructor(
    private readonly limit = 50,
    /** Sees every complete line, including those that scroll out of the tail. */
    private readonly onLine?: (line: string) => void,
  ) {}

  push(chunk: Buffer | string): void {
    const text = this.partial + (typeof chunk === 'string' ? chunk : this.decoder.write(chunk));
    const parts = text.split(/\r?\n/);
    this.partial = parts.pop() ?? '';
    for (const line of parts) this.add(line);
  }

  /** The kept lines, including an unterminated last one. */
  snapshot(): string[] {
    const rest = this.partial;
    return rest === '' ? [...this.lines] : [...this.lines, rest].slice(-this.limit);
  }

  private add(line: string): void {
    this.onLine?.(line);
    this.lines.push(line);
    if (this.lines.length > this.limit) this.lines.shift();
  }
}
