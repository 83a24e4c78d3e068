// Lets sharp calls run together, but runs a failed one again alone. libvips keeps one error
// buffer per process: when two calls fail at once, one takes both messages and the other reports
// "Unknown error" (so truncated_image could read corrupt_image, and a rerun of a pack could count
// a sample differently). Success does not depend on that buffer; failures are rare, so pausing
// costs little. The buffer is per process, so there is one gate per process: `sharpGate`.
class FailureRetryGate {
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

/** The process's one gate: the shard reader's decodes and pack's image preparation share it. */
export const sharpGate = new FailureRetryGate();
