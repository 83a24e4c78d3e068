// A document's image made ready for a packed shard, or the reason it cannot be: the one place
// pass 2 turns image bytes into a JPEG. Never throws on data: a bad image becomes a skipped,
// counted sample (docs/formats.md, "Packing: bad samples"), not a dead job.
import type { RunConfig } from '../config/schema.js';
import { MAX_IMAGE_PIXELS } from '../images/image.js';
import { sharpDecode } from '../shards/decode.js';
import { readImageHeader } from '../shards/imageHeader.js';
import { sharpGate } from '../images/sharpGate.js';
import { prepareDocumentImage } from './sample.js';

/** Why a sample's image was skipped; the names the shard reader uses where it has one. */
export type ImageBadReason = 'corrupt_image' | 'truncated_image' | 'image_too_large' | 'image_prepare_failed';

export type ImageVerdict = { ok: true; width: number; height: number } | { ok: false; reason: ImageBadReason; detail: string };
export type PreparedImage = { ok: true; jpeg: Buffer } | { ok: false; reason: ImageBadReason; detail: string };

/**
 * What the header alone says, before any pixel is decoded: JPEG, PNG or WebP (the formats of the
 * shard reader; nothing else reaches libvips, so no SVG or PDF loader ever sees pack input), with
 * at most MAX_IMAGE_PIXELS pixels. Pass 1 and pass 2 both ask this, so they agree.
 */
export function imageHeaderVerdict(data: Uint8Array): ImageVerdict {
  if (data.length === 0) return { ok: false, reason: 'corrupt_image', detail: 'empty (0 bytes)' };
  const header = readImageHeader(data);
  if (!header.ok) return { ok: false, reason: 'corrupt_image', detail: header.problem };
  const pixels = header.width * header.height;
  if (pixels > MAX_IMAGE_PIXELS) {
    return { ok: false, reason: 'image_too_large', detail: `${header.width}x${header.height} = ${pixels} pixels, over the limit of ${MAX_IMAGE_PIXELS} (MAX_IMAGE_PIXELS)` };
  }
  return { ok: true, width: header.width, height: header.height };
}

/** The JPEG for the packed shard, or why not (header, then a full prepare; see imageHeaderVerdict). */
export async function prepareImageOrSkip(config: RunConfig, data: Buffer): Promise<PreparedImage> {
  const header = imageHeaderVerdict(data);
  if (!header.ok) return header;
  try {
    return { ok: true, jpeg: await sharpGate.together(() => prepareDocumentImage(config, data)) };
  } catch {
    return sharpGate.exclusively(async () => {
      let message: string;
      try {
        return { ok: true, jpeg: await prepareDocumentImage(config, data) };
      } catch (err) {
        message = err instanceof Error ? err.message : String(err);
      }
      // The reader's full decode names the reason exactly as `loom inspect` would; when the
      // pixels decode but resizing or encoding failed, the prepare error is the detail.
      const decoded = await sharpDecode(data); // already alone: the gate is held
      if (!decoded.ok) return decoded;
      if (/pixel limit/i.test(message)) return { ok: false, reason: 'image_too_large', detail: message };
      return { ok: false, reason: 'image_prepare_failed', detail: message };
    });
  }
}
