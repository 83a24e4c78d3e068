// Worker thread of the decoder pool: runs the fast wasm JPEG check (mozjpeg.ts) on each image
// of the batches it is sent and answers each batch with one message of verdicts, same order.
// sharp is deliberately not used here: libvips keeps one error buffer per process, so failing
// decodes running at once in several threads swap or lose their messages (decode.ts).
import { parentPort } from 'node:worker_threads';
import { createFastJpegDecoder, type FastJpegResult } from './mozjpeg.js';

/**
 * One message each way per batch, the images packed into one transferred buffer: every
 * message wakes a thread, and every transferred buffer costs, more than copying a few KB.
 */
export interface DecodeBatch {
  batch: number;
  bytes: Uint8Array;
  /** Image i is bytes[ends[i-1] ?? 0, ends[i]). */
  ends: number[];
}

export interface DecodeBatchReply {
  batch: number;
  results: FastJpegResult[];
}

if (!parentPort) throw new Error('decodeWorker.js must run as a worker thread');
const port = parentPort;
const fastJpeg = createFastJpegDecoder().catch((err: unknown) => new Error(err instanceof Error ? err.message : String(err)));

// Batches are handled one after another, so replies leave in the order requests came.
let chain: Promise<void> = Promise.resolve();
port.on('message', (job: DecodeBatch) => {
  chain = chain
    .then(async () => {
      const decode = await fastJpeg;
      const results: FastJpegResult[] = [];
      for (let i = 0; i < job.ends.length; i++) {
        if (decode instanceof Error) {
          results.push({ ok: false, why: `fast decoder unavailable: ${decode.message}` });
          continue;
        }
        const image = job.bytes.subarray(job.ends[i - 1] ?? 0, job.ends[i]);
        results.push(await decode(image).catch((err: unknown) => ({ ok: false as const, why: `worker error: ${String(err)}` })));
      }
      port.postMessage({ batch: job.batch, results } satisfies DecodeBatchReply);
    })
    // Whatever went wrong, the batch is answered (sharp then decides) and the chain goes on.
    .catch((err: unknown) => {
      const results = job.ends.map((): FastJpegResult => ({ ok: false, why: `worker error: ${String(err)}` }));
      port.postMessage({ batch: job.batch, results } satisfies DecodeBatchReply);
    });
});
