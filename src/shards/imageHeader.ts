// Reads an image's format and pixel size from its first bytes, without decoding pixels.
// This is the cheap check of the reader (thousands of samples per second): it proves the bytes
// are the declared format and gives the size for statistics; a full decode is separate (decode.ts).
import type { ImageExt } from './types.js';

export type ImageHeader = { ok: true; format: ImageExt; width: number; height: number } | { ok: false; problem: string };

export function readImageHeader(data: Uint8Array): ImageHeader {
  if (data.length >= 3 && data[0] === 0xff && data[1] === 0xd8 && data[2] === 0xff) return jpegHeader(data);
  if (data.length >= 8 && PNG_SIGNATURE.every((b, i) => data[i] === b)) return pngHeader(data);
  if (data.length >= 12 && ascii(data, 0, 4) === 'RIFF' && ascii(data, 8, 4) === 'WEBP') return webpHeader(data);
  return { ok: false, problem: 'not a JPEG, PNG or WebP image (unknown signature)' };
}

const PNG_SIGNATURE = [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a];

function ascii(data: Uint8Array, start: number, length: number): string {
  return String.fromCharCode(...data.subarray(start, start + length));
}

function u16be(d: Uint8Array, i: number): number {
  return (d[i]! << 8) | d[i + 1]!;
}

function u32be(d: Uint8Array, i: number): number {
  return ((d[i]! << 24) >>> 0) + (d[i + 1]! << 16) + (d[i + 2]! << 8) + d[i + 3]!;
}

function u24le(d: Uint8Array, i: number): number {
  return d[i]! | (d[i + 1]! << 8) | (d[i + 2]! << 16);
}

function sized(format: ImageExt, width: number, height: number): ImageHeader {
  if (width <= 0 || height <= 0) return { ok: false, problem: `${format} header declares a ${width}x${height} image` };
  return { ok: true, format, width, height };
}

// JPEG: walk the marker segments until a start-of-frame marker, which holds the size.
function jpegHeader(d: Uint8Array): ImageHeader {
  let i = 2;
  while (i < d.length) {
    if (d[i] !== 0xff) return { ok: false, problem: `jpeg: expected a marker at byte ${i}` };
    while (i < d.length && d[i] === 0xff) i++; // fill bytes
    if (i >= d.length) break;
    const marker = d[i]!;
    i++;
    if (marker === 0xd8 || marker === 0x01 || (marker >= 0xd0 && marker <= 0xd7)) continue; // no length
    if (marker === 0xd9 || marker === 0xda) return { ok: false, problem: 'jpeg: no frame header before the image data' };
    if (i + 2 > d.length) break;
    const length = u16be(d, i);
    if (length < 2) return { ok: false, problem: `jpeg: bad segment length at byte ${i}` };
    const isFrame = marker >= 0xc0 && marker <= 0xcf && marker !== 0xc4 && marker !== 0xc8 && marker !== 0xcc;
    if (isFrame) {
      if (i + 7 > d.length) break;
      return sized('jpg', u16be(d, i + 5), u16be(d, i + 3));
    }
    i += length;
  }
  return { ok: false, problem: 'jpeg: data ends before the frame header' };
}

function pngHeader(d: Uint8Array): ImageHeader {
  if (d.length < 24 || ascii(d, 12, 4) !== 'IHDR') return { ok: false, problem: 'png: missing IHDR chunk' };
  return sized('png', u32be(d, 16), u32be(d, 20));
}

function webpHeader(d: Uint8Array): ImageHeader {
  const chunk = d.length >= 16 ? ascii(d, 12, 4) : '';
  if (chunk === 'VP8X' && d.length >= 30) return sized('webp', u24le(d, 24) + 1, u24le(d, 27) + 1);
  if (chunk === 'VP8 ' && d.length >= 30) {
    if (d[23] !== 0x9d || d[24] !== 0x01 || d[25] !== 0x2a) return { ok: false, problem: 'webp: bad VP8 start code' };
    return sized('webp', (d[26]! | (d[27]! << 8)) & 0x3fff, (d[28]! | (d[29]! << 8)) & 0x3fff);
  }
  if (chunk === 'VP8L' && d.length >= 25) {
    if (d[20] !== 0x2f) return { ok: false, problem: 'webp: bad VP8L signature' };
    const bits = d[21]! | (d[22]! << 8) | (d[23]! << 16) | ((d[24]! << 24) >>> 0);
    return sized('webp', (bits & 0x3fff) + 1, ((bits >>> 14) & 0x3fff) + 1);
  }
  return { ok: false, problem: `webp: unknown or short first chunk "${chunk}"` };
}
