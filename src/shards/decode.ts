// Full image decode with sharp: the expensive check that catches corrupt and truncated pixel data.
import sharp from 'sharp';

export type DecodeResult =
  | { ok: true; width: number; height: number }
  | { ok: false; reason: 'corrupt_image' | 'truncated_image'; detail: string };

// libjpeg/libpng/libwebp phrase an early end of data in these ways.
const TRUNCATION_RE = /premature end|truncat|unexpected end|end of (file|data|stream)|not enough data|incomplete/i;

/** Decodes every pixel. failOn 'error' rejects truncated data and decoder errors but tolerates
 *  warnings (e.g. libjpeg's "extraneous bytes before marker"), which real-world JPEGs often carry. */
export async function decodeImage(data: Buffer): Promise<DecodeResult> {
  try {
    const { info } = await sharp(data, { failOn: 'error', sequentialRead: true }).raw().toBuffer({ resolveWithObject: true });
    return { ok: true, width: info.width, height: info.height };
  } catch (err) {
    const message = (err instanceof Error ? err.message : String(err)).split('\n')[0]!.trim();
    return { ok: false, reason: TRUNCATION_RE.test(message) ? 'truncated_image' : 'corrupt_image', detail: message };
  }
}
