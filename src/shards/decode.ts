// Full image decode: the expensive check that catches corrupt and truncated pixel data.
// The verdict is sharp's (failOn 'error'). JPEGs are first tried on the fast wasm decoder in
// worker threads (decodePool.ts, mozjpeg.ts), which can only accept an image it decoded
// cleanly, never reject one; everything else, and every JPEG it did not accept, goes to sharp.
import sharp from 'sharp';
import { sharedDecodePool } from './decodePool.js';
import { sharpGate } from '../images/sharpGate.js';

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


/** Decodes every pixel with sharp. failOn 'error' rejects truncated data and decoder errors but
 *  tolerates warnings (e.g. libjpeg's "extraneous bytes before marker"), which real-world JPEGs
 *  often carry. */
export async function decodeWithSharp(data: Uint8Array): Promise<DecodeResult> {
  const first = await sharpGate.together(() => sharpDecode(data));
  return first.ok ? first : sharpGate.exclusively(() => sharpDecode(data));
}

/** One sharp decode, outside the gate: only for callers already holding sharpGate.exclusively. */
export async function sharpDecode(data: Uint8Array): Promise<DecodeResult> {
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
