// Runs async steps one at a time, in call order: what a writer needs when callers may fire
// several writes without awaiting each.
import { LoomError } from './errors.js';

export class SerialQueue {
  private chain: Promise<void> = Promise.resolve();
  private failed: unknown = null;
  private closed = false;

  /**
   * @param name shown in "<name> is closed"
   * @param isRecoverable errors that fail only their own step (bad input); any other error
   *        fails every later step too, since the output may be inconsistent after it
   */
  constructor(
    private readonly name: string,
    private readonly isRecoverable: (err: unknown) => boolean,
  ) {}

  run<T>(step: () => Promise<T>): Promise<T> {
    const result = this.chain.then(async () => {
      if (this.failed) throw this.failed;
      if (this.closed) throw new LoomError(`${this.name} is closed`);
      try {
        return await step();
      } catch (err) {
        if (!this.isRecoverable(err)) this.failed = err;
        throw err;
      }
    });
    this.chain = result.then(
      () => undefined,
      () => undefined,
    );
    return result;
  }

  /** Runs a last step, after which every step is refused. */
  async close(last: () => Promise<void>): Promise<void> {
    await this.run(last);
    this.closed = true;
  }

  /** Refuses further steps and waits for the running ones to settle. */
  async stop(): Promise<void> {
    this.closed = true;
    await this.chain;
  }
}
