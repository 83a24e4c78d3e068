// Lets sharp calls run together, but runs a failed one again alone. libvips keeps one error
// buffer per process: when two calls fail at once, one takes both messages and the other reports
// "Unknown error", so a failure's reason would depend on timing and a rerun of a pack could count
// it differently. Success does not depend on that buffer; failures are rare, so pausing costs
// little. (src/shards/decode.ts has the same gate for the reader's decodes.)
export class FailureRetryGate {
  private running = 0;
  private alone: Promise<void> | null = null;
  private idle: Array<() => void> = [];

  async together<T>(fn: () => Promise<T>): Promise<T> {
    while (this.alone) await this.alone;
    this.running++;
    try {
      return await fn();
    } finally {
      if (--this.running === 0) for (const wake of this.idle.splice(0)) wake();
    }
  }

  async exclusively<T>(fn: () => Promise<T>): Promise<T> {
    while (this.alone) await this.alone;
    let release!: () => void;
    this.alone = new Promise((resolve) => (release = resolve));
    try {
      if (this.running > 0) await new Promise<void>((resolve) => this.idle.push(resolve));
      return await fn();
    } finally {
      this.alone = null;
      release();
    }
  }
}
