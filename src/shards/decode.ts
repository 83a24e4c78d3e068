// Full image decode: the expensive check that catches corrupt and truncated pixel data.
// The verdict is sharp's (failOn 'error'). JPEGs are first tried on the fast wasm decoder in
// worker threads (decodePool.ts, mozjpeg.ts), which can only accept an image it decoded
// cleanly, never reject one; everything else, and every JPEG it did not accept, goes to sharp.
import sharp from 'sharp';
import { sharedDecodePool } from './decodePool.js';

export type DecodeResult =
  | { ok: true; width: number; height: number }
  | { ok: false; reason: 'corrupt_image' | 'truncated_image'; detail: string };

// libjpeg/libpng/libwebp phrase an early end of data in these ways.
const TRUNCATION_RE = /premature end|truncat|unexpected end|end of (file|data|stream)|not enough data|incomplete/i;

const isJpeg = (d: Uint8Array): boolean => d.length >= 3 && d[0] === 0xff && d[1] === 0xd8 && d[2] === 0xff;

/** Decodes every pixel (see the file comment). Never throws. */
export async function decodeImage(data: Uint8Array): Promise<DecodeResult> {
  const pool = isJpeg(data) ? sharedDecodePool() : null;
  if (pool) {
    const fast = await pool.decode(data);
    if (fast.ok) return { ok: true, width: fast.width, height: fast.height };
  }
  return decodeWithSharp(data);
}

/**
 * Lets sharp decodes run together, but runs a failed one again alone. libvips keeps a single
 * error buffer per process: when two decodes fail at once, one takes both messages and the
 * other reports "Unknown error" (so truncated_image could read corrupt_image). Success does
 * not depend on that buffer; failures are rare, so pausing for them costs little.
 */
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

const gate = new FailureRetryGate();

/** Decodes every pixel with sharp. failOn 'error' rejects truncated data and decoder errors but
 *  tolerates warnings (e.g. libjpeg's "extraneous bytes before marker"), which real-world JPEGs
 *  often carry. */
export async function decodeWithSharp(data: Uint8Array): Promise<DecodeResult> {
  const first = await gate.together(() => sharpDecode(data));
  return first.ok ? first : gate.exclusively(() => sharpDecode(data));
}

async function sharpDecode(data: Uint8Array): Promise<DecodeResult> {
  // A Buffer view, not a copy: sharp words some errors by input type ("Input Buffer is empty").
  const bytes = Buffer.isBuffer(data) ? data : Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  try {
    const { info } = await sharp(bytes, { failOn: 'error', sequentialRead: true }).raw().toBuffer({ resolveWithObject: true });
    return { ok: true, width: info.width, height: info.height };
  } catch (err) {
    const message = (err instanceof Error ? err.message : String(err)).split('\n')[0]!.trim();
    return { ok: false, reason: TRUNCATION_RE.test(message) ? 'truncated_image' : 'corrupt_image', detail: message };
  }
}
