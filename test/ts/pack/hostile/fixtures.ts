// Hostile inputs for the pack tests: images whose header passes the reader's cheap check but
// whose pixels do not (a cut JPEG), a PNG header announcing 30000x30000 pixels (no pixels behind
// it, so it costs nothing to make), and the small runs of `loom pack` they go through.
import { deflateSync } from 'node:zlib';
import { resolveRunConfig } from '../../../../src/config/resolve.js';
import type { RunConfig } from '../../../../src/config/schema.js';
import { readPacked } from '../packedOutput.js';
import { makeImage } from '../../shards/fixtures.js';

export function tinyConfig(stage: 'pretrain' | 'sft', sets: string[] = []): RunConfig {
  return resolveRunConfig({ preset: 'tiny', stage, name: 'run', overrides: [], assignments: sets });
}

const CRC_TABLE = Int32Array.from({ length: 256 }, (_, n) => {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  return c;
});

function crc32(data: Buffer): number {
  let c = -1;
  for (const byte of data) c = CRC_TABLE[(c ^ byte) & 0xff]! ^ (c >>> 8);
  return (c ^ -1) >>> 0;
}

function pngChunk(type: string, data: Buffer): Buffer {
  const head = Buffer.alloc(8);
  head.writeUInt32BE(data.length, 0);
  head.write(type, 4, 'ascii');
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(Buffer.concat([head.subarray(4), data])));
  return Buffer.concat([head, data, crc]);
}

/** A well-formed PNG start whose IHDR says width x height (RGB, 8 bit): one row of pixels, then the end. */
export function pngBomb(width = 30000, height = 30000): Buffer {
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr.set([8, 2, 0, 0, 0], 8);
  const row = deflateSync(Buffer.alloc(1 + width * 3));
  return Buffer.concat([Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]), pngChunk('IHDR', ihdr), pngChunk('IDAT', row), pngChunk('IEND', Buffer.alloc(0))]);
}

/** Image bytes by kind, made once: good ones differ by seed; the bad ones are what the names say. */
export interface ImageKit {
  good: Buffer[];
  /** A JPEG cut at 60%: its header is whole, so only a decode finds it. */
  cut: Buffer;
  bomb: Buffer;
  text: Buffer;
}

export async function makeImageKit(): Promise<ImageKit> {
  const good = await Promise.all([1, 2, 3].map((seed) => makeImage('jpg', 80, 60, seed)));
  const whole = await makeImage('jpg', 120, 90, 9);
  return { good, cut: whole.subarray(0, Math.floor(whole.length * 0.6)), bomb: pngBomb(), text: Buffer.from('this is not an image, whatever its name says\n') };
}

/** Every packed uid, and how often it appears, with the totals the report must equal. */
export async function packedUids(out: string): Promise<{ counts: Map<string, number>; sequences: number; images: number; tokens: number }> {
  const { sequences } = await readPacked(out);
  const counts = new Map<string, number>();
  for (const s of sequences) for (const uid of s.uids) counts.set(uid, (counts.get(uid) ?? 0) + 1);
  return {
    counts,
    sequences: sequences.length,
    images: sequences.reduce((n, s) => n + s.images.length, 0),
    tokens: sequences.reduce((n, s) => n + s.tokens.length, 0),
  };
}

export const uidOf = (n: number): string => n.toString(16).padStart(32, '0');
