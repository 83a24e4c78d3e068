// Raw RGB to compressed image bytes with sharp (libvips runs off the main thread, so several
// encodes can be in flight while the main thread draws the next scenes).
import sharp from 'sharp';
import type { Rng } from '../util/rng.js';
import { renderScene } from './render.js';
import type { Scene } from './scene.js';

export type ImageFormat = 'jpg' | 'png' | 'webp';

export interface EncodeSpec {
  format: ImageFormat;
  /** JPEG/WebP quality 1..100 (ignored for PNG). */
  quality: number;
}

/** Mostly JPEG at web-like qualities, a small share of PNG and WebP so readers meet every format. */
export function pickEncoding(rng: Rng): EncodeSpec {
  const u = rng.next();
  const format: ImageFormat = u < 0.9 ? 'jpg' : u < 0.95 ? 'png' : 'webp';
  return { format, quality: rng.int(72, 95) };
}

/** Draws and encodes a scene; EncoderPool.encode has the same shape and runs it on worker threads. */
export type SceneEncoder = (scene: Scene, spec: EncodeSpec) => Promise<Buffer>;

export const encodeScene: SceneEncoder = (scene, spec) => encodeRgb(renderScene(scene), scene.width, scene.height, spec);

export async function encodeRgb(raw: Uint8Array, width: number, height: number, spec: EncodeSpec): Promise<Buffer> {
  const image = sharp(Buffer.from(raw.buffer, raw.byteOffset, raw.byteLength), { raw: { width, height, channels: 3 } });
  switch (spec.format) {
    case 'jpg':
      // Plain Huffman tables: about 40% faster to encode than optimised ones, files ~20% larger.
      return image.jpeg({ quality: spec.quality, optimiseCoding: false }).toBuffer();
    case 'png':
      return image.png({ compressionLevel: 6 }).toBuffer();
    case 'webp':
      // effort 0 halves libwebp's CPU time for ~10% more bytes.
      return image.webp({ quality: spec.quality, effort: 0 }).toBuffer();
  }
}
