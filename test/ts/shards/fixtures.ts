// Helpers for the shard tests: real images made with sharp, tars built member by member with
// tar-stream (so bad layouts can be made on purpose), and temporary directories.
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import sharp from 'sharp';
import tar from 'tar-stream';
import { readShards } from '../../../src/shards/reader.js';
import type { ImageExt, ReadOptions, ShardItem } from '../../../src/shards/types.js';

/** A noisy image (noise so JPEG data is long enough to cut meaningfully). */
export async function makeImage(ext: ImageExt, width: number, height: number, seed = 1, options: { lossless?: boolean; alpha?: boolean } = {}): Promise<Buffer> {
  const channels = options.alpha ? 4 : 3;
  const pixels = Buffer.alloc(width * height * channels);
  let s = seed >>> 0 || 1;
  for (let i = 0; i < pixels.length; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    pixels[i] = s >>> 24;
  }
  const img = sharp(pixels, { raw: { width, height, channels } });
  if (ext === 'jpg') return img.jpeg({ quality: 85 }).toBuffer();
  if (ext === 'png') return img.png().toBuffer();
  return img.webp({ lossless: options.lossless ?? false }).toBuffer();
}

export interface RawMember {
  name: string;
  data: Buffer | string;
}

/** A tar holding exactly these members in this order (with the end-of-archive marker). */
export async function buildTar(members: RawMember[]): Promise<Buffer> {
  const pack = tar.pack();
  const chunks: Buffer[] = [];
  const done = new Promise<void>((resolve, reject) => {
    pack.on('data', (c: unknown) => {
      chunks.push(c as Buffer);
    });
    pack.on('end', () => resolve());
    pack.on('error', reject);
  });
  for (const m of members) {
    const data = typeof m.data === 'string' ? Buffer.from(m.data, 'utf8') : m.data;
    await new Promise<void>((resolve, reject) => pack.entry({ name: m.name, size: data.length, mtime: new Date(0) }, data, (err) => (err ? reject(err) : resolve())));
  }
  pack.finalize();
  await done;
  return Buffer.concat(chunks);
}

/** The three members of a good sample, in img2dataset's order. */
export function sampleMembers(key: string, image: Buffer, ext: ImageExt = 'jpg', caption = `a caption for ${key}`, json: object = { note: key }): RawMember[] {
  return [
    { name: `${key}.${ext}`, data: image },
    { name: `${key}.json`, data: JSON.stringify(json) },
    { name: `${key}.txt`, data: caption },
  ].sort((a, b) => (a.name < b.name ? -1 : 1));
}

export async function withTempDir<T>(fn: (dir: string) => Promise<T>): Promise<T> {
  const dir = await mkdtemp(join(tmpdir(), 'loom-shards-'));
  try {
    return await fn(dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

export async function writeTar(dir: string, name: string, members: RawMember[]): Promise<string> {
  const path = join(dir, name);
  await writeFile(path, await buildTar(members));
  return path;
}

export async function readAll(paths: string[], options: ReadOptions = {}): Promise<ShardItem[]> {
  const items: ShardItem[] = [];
  for await (const item of readShards(paths, options)) items.push(item);
  return items;
}

export function goodKeys(items: ShardItem[]): string[] {
  return items.flatMap((i) => (i.kind === 'sample' ? [i.sample.key] : []));
}

export function badList(items: ShardItem[]): Array<[string, string | null]> {
  return items.flatMap((i) => (i.kind === 'bad' ? [[i.bad.reason, i.bad.key] as [string, string | null]] : []));
}

/** Byte offsets of every member header, walking the tar ourselves (an independent parser). */
export function headerOffsets(tarBytes: Buffer): number[] {
  const out: number[] = [];
  let at = 0;
  while (at + 512 <= tarBytes.length && tarBytes[at] !== 0) {
    out.push(at);
    const size = parseInt(tarBytes.subarray(at + 124, at + 136).toString('ascii').replace(/\0.*$/s, '').trim() || '0', 8);
    at += 512 + Math.ceil(size / 512) * 512;
  }
  return out;
}

/** Every member of a tar file, name and bytes, in order, as tar-stream reads it (not Loom's reader). */
export async function tarFileMembers(path: string): Promise<Array<{ name: string; data: Buffer }>> {
  const extract = tar.extract();
  const members: Array<{ name: string; data: Buffer }> = [];
  const done = (async () => {
    for await (const entry of extract) {
      const chunks: Buffer[] = [];
      for await (const chunk of entry) chunks.push(chunk as Buffer);
      members.push({ name: entry.header.name, data: Buffer.concat(chunks) });
    }
  })();
  extract.end(await readFile(path));
  await done;
  return members;
}

/** Extensions of members other than image, caption and json: any case, maybe with a dot inside ("a.npy"). */
export const extraExtArb = fc
  .tuple(fc.stringMatching(/^[A-Za-z0-9_-]{1,6}$/), fc.option(fc.stringMatching(/^[A-Za-z0-9_-]{1,5}$/), { nil: undefined }))
  .map(([a, b]) => (b === undefined ? a : `${b}.${a}`))
  .filter((e) => !['jpg', 'jpeg', 'png', 'webp', 'txt', 'json'].includes(e.slice(e.lastIndexOf('.') + 1).toLowerCase()));
