// A small pool of worker threads that draw and encode scenes. With `threads: 0` everything runs
// on the calling thread (same bytes either way: drawing and encoding are deterministic).
import { Worker } from 'node:worker_threads';
import { encodeRgb, type EncodeSpec } from './encode.js';
import type { EncodeReply, EncodeRequest } from './encodeWorker.js';
import { renderScene } from './render.js';
import type { Scene } from './scene.js';

interface Pending {
  resolve: (data: Buffer) => void;
  reject: (err: Error) => void;
}

export class EncoderPool {
  private readonly workers: Worker[] = [];
  private readonly load: number[] = [];
  private readonly pending = new Map<number, { worker: number } & Pending>();
  private nextId = 0;
  private failure: Error | null = null;

  constructor(threads: number) {
    for (let w = 0; w < threads; w++) {
      const worker = new Worker(new URL('./encodeWorker.js', import.meta.url));
      worker.on('message', (reply: EncodeReply) => this.settle(reply));
      worker.on('error', (err) => this.failAll(err));
      worker.on('exit', (code) => {
        if (code !== 0) this.failAll(new Error(`image encoder thread exited with code ${code}`));
      });
      this.workers.push(worker);
      this.load.push(0);
    }
  }

  /** The scene drawn and encoded as `spec` says. */
  encode(scene: Scene, spec: EncodeSpec): Promise<Buffer> {
    if (this.workers.length === 0) return encodeRgb(renderScene(scene), scene.width, scene.height, spec);
    if (this.failure) return Promise.reject(this.failure);
    // Least-loaded worker, so one slow image does not hold up a queue behind it.
    let w = 0;
    for (let i = 1; i < this.load.length; i++) if ((this.load[i] as number) < (this.load[w] as number)) w = i;
    const id = this.nextId++;
    this.load[w] = (this.load[w] as number) + 1;
    return new Promise<Buffer>((resolve, reject) => {
      this.pending.set(id, { worker: w, resolve, reject });
      (this.workers[w] as Worker).postMessage({ id, scene, spec } satisfies EncodeRequest);
    });
  }

  async close(): Promise<void> {
    await Promise.all(this.workers.map((w) => w.terminate()));
    this.workers.length = 0;
  }

  private settle(reply: EncodeReply): void {
    const p = this.pending.get(reply.id);
    if (!p) return;
    this.pending.delete(reply.id);
    this.load[p.worker] = (this.load[p.worker] as number) - 1;
    if ('error' in reply) p.reject(new Error(`encoding image failed: ${reply.error}`));
    else p.resolve(Buffer.from(reply.data.buffer, reply.data.byteOffset, reply.data.byteLength));
  }

  private failAll(err: Error): void {
    this.failure = err;
    for (const p of this.pending.values()) p.reject(err);
    this.pending.clear();
  }
}
