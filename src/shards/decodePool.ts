// A small pool of worker threads running the fast JPEG check (decodeWorker.ts), so every core
// decodes. Each job is a promise of its own; callers keep their own order. Jobs travel in batches: each message wakes a thread, and on a busy machine a
// wake-up per image cost more main-thread time than the decode saved. Idle workers are
// unref'd, so the pool never keeps the process alive.
import { Worker } from 'node:worker_threads';
import { availableParallelism } from 'node:os';
import type { FastJpegResult } from './mozjpeg.js';
import type { DecodeBatch, DecodeBatchReply } from './decodeWorker.js';

type Resolve = (verdict: FastJpegResult) => void;

interface Slot {
  worker: Worker;
  /** Batches sent and not yet answered, by batch id. */
  waiting: Map<number, Resolve[]>;
  jobsInFlight: number;
}

export interface DecodePoolOptions {
  /** Worker threads (default: one per core). */
  workers?: number;
  /** Images per message (default 16). A partial batch is sent as soon as the caller yields. */
  batchSize?: number;
}

export class DecodePool {
  readonly workers: number;
  readonly batchSize: number;
  private readonly slots: Slot[] = [];
  private pending: { images: Uint8Array[]; resolves: Resolve[] } = { images: [], resolves: [] };
  private flushScheduled = false;
  private nextBatch = 0;

  constructor(options: DecodePoolOptions = {}) {
    this.workers = options.workers ?? availableParallelism();
    this.batchSize = options.batchSize ?? 16;
    for (const [name, v] of [['workers', this.workers], ['batchSize', this.batchSize]] as const) {
      if (!Number.isInteger(v) || v < 1) throw new Error(`DecodePool: ${name} must be a positive integer, got ${v}`);
    }
  }

  /** The fast JPEG verdict. Never rejects: a worker that dies answers ok: false (ask sharp).
   *  The caller's bytes are copied, never detached. */
  decode(data: Uint8Array): Promise<FastJpegResult> {
    return new Promise((resolve) => {
      this.pending.images.push(data);
      this.pending.resolves.push(resolve);
      if (this.pending.images.length >= this.batchSize) this.flush();
      else if (!this.flushScheduled) {
        this.flushScheduled = true;
        setImmediate(() => this.flush());
      }
    });
  }

  async close(): Promise<void> {
    this.flush();
    const slots = this.slots.splice(0);
    await Promise.all(slots.map((s) => s.worker.terminate()));
  }

  private flush(): void {
    this.flushScheduled = false;
    const { images, resolves } = this.pending;
    if (images.length === 0) return;
    this.pending = { images: [], resolves: [] };
    const ends: number[] = [];
    let total = 0;
    for (const image of images) ends.push((total += image.length));
    const bytes = new Uint8Array(total);
    images.forEach((image, i) => bytes.set(image, ends[i]! - image.length));
    const slot = this.leastBusy();
    const batch = this.nextBatch++;
    if (slot.jobsInFlight === 0) slot.worker.ref();
    slot.waiting.set(batch, resolves);
    slot.jobsInFlight += images.length;
    slot.worker.postMessage({ batch, bytes, ends } satisfies DecodeBatch, [bytes.buffer]);
  }

  private leastBusy(): Slot {
    let best: Slot | null = null;
    for (const s of this.slots) if (!best || s.jobsInFlight < best.jobsInFlight) best = s;
    if (best && (best.jobsInFlight === 0 || this.slots.length >= this.workers)) return best;
    return this.start();
  }

  private start(): Slot {
    const worker = new Worker(new URL('./decodeWorker.js', import.meta.url));
    const slot: Slot = { worker, waiting: new Map(), jobsInFlight: 0 };
    worker.unref();
    worker.on('message', (reply: DecodeBatchReply) => {
      const resolves = slot.waiting.get(reply.batch);
      if (!resolves) return;
      slot.waiting.delete(reply.batch);
      slot.jobsInFlight -= resolves.length;
      if (slot.jobsInFlight === 0) worker.unref();
      resolves.forEach((resolve, i) => resolve(reply.results[i] ?? { ok: false, why: 'decode worker sent no verdict' }));
    });
    const fail = (why: string) => {
      const i = this.slots.indexOf(slot);
      if (i >= 0) this.slots.splice(i, 1);
      for (const resolves of slot.waiting.values()) for (const resolve of resolves) resolve({ ok: false, why });
      slot.waiting.clear();
      slot.jobsInFlight = 0;
    };
    worker.on('error', (err) => fail(`decode worker failed: ${err.message}`));
    worker.on('exit', (code) => fail(`decode worker exited with code ${code}`));
    this.slots.push(slot);
    return slot;
  }
}

let shared: DecodePool | null | undefined;

/**
 * The process-wide pool: one worker per core, or $LOOM_DECODE_WORKERS; 0 turns the pool off
 * (every image is decoded by sharp alone, the behaviour before the pool). Null when off.
 */
export function sharedDecodePool(): DecodePool | null {
  if (shared === undefined) {
    const env = process.env.LOOM_DECODE_WORKERS;
    const workers = env === undefined || env === '' ? availableParallelism() : Number(env);
    if (!Number.isInteger(workers) || workers < 0) throw new Error(`LOOM_DECODE_WORKERS must be a whole number >= 0, got "${env}"`);
    shared = workers === 0 ? null : new DecodePool({ workers });
  }
  return shared;
}
