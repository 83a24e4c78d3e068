// SFT image files, confined: a LLaVA JSON names image files by path, so a hostile or careless
// JSON could point at /etc/shadow, ../../secrets, a symlink out of the data folder, /dev/zero (a
// read that never ends) or a FIFO (an open that never returns). Every image path must resolve,
// symlinks followed, to a regular file of at most maxImageBytes under the image root; anything
// else is a bad record with a reason, and its bytes are never read. See docs/formats.md,
// "SFT documents: image paths".
import { constants } from 'node:fs';
import { open, realpath, stat, type FileHandle } from 'node:fs/promises';
import { isAbsolute, relative, resolve, sep } from 'node:path';
import { imageHeaderVerdict, type ImageBadReason } from './documentImage.js';

/** Default --max-image-bytes: far above any real photo (a 24 MP JPEG is ~10 MB), far below RAM. */
export const DEFAULT_MAX_IMAGE_BYTES = 64 * 1024 * 1024;
/** Enough for the header of nearly every image (a JPEG's EXIF segment is at most 64 KiB; ICC profiles can push the frame header further, and then the whole file is read). */
const HEADER_PREFIX_BYTES = 64 * 1024;

export type SftImageReason =
  | 'image_outside_root'
  | 'image_missing'
  | 'image_not_a_file'
  | 'image_too_big'
  | 'image_unreadable'
  | ImageBadReason;

export type SftImageCheck = { ok: true; path: string } | { ok: false; reason: SftImageReason; detail: string };
export type SftImageBytes = { ok: true; data: Buffer } | { ok: false; reason: SftImageReason; detail: string };

/**
 * The lexical part of the rules, without touching the disk: the path is relative and stays
 * under the root after normalisation. Returns the absolute path or the problem.
 */
export function confineImagePath(root: string, image: string): { ok: true; path: string } | { ok: false; reason: 'image_outside_root'; detail: string } {
  if (isAbsolute(image)) return { ok: false, reason: 'image_outside_root', detail: `${image} is an absolute path; image paths are relative to the image root` };
  const path = resolve(root, image);
  if (!isInside(resolve(root), path)) return { ok: false, reason: 'image_outside_root', detail: `${image} resolves to ${path}, outside the image root ${root}` };
  return { ok: true, path };
}

function isInside(root: string, path: string): boolean {
  const rel = relative(root, path);
  return rel !== '..' && !rel.startsWith(`..${sep}`) && !isAbsolute(rel);
}

const describeKind = (s: { isDirectory(): boolean; isFIFO(): boolean; isCharacterDevice(): boolean; isBlockDevice(): boolean; isSocket(): boolean }): string =>
  s.isDirectory() ? 'a directory' : s.isFIFO() ? 'a FIFO' : s.isCharacterDevice() ? 'a character device' : s.isBlockDevice() ? 'a block device' : s.isSocket() ? 'a socket' : 'not a regular file';

/** Details quote paths from the JSON, which can be any length; reports keep up to 1000 of them. */
const MAX_DETAIL_CHARS = 400;
export function clipDetail(detail: string): string {
  return detail.length <= MAX_DETAIL_CHARS ? detail : `${detail.slice(0, MAX_DETAIL_CHARS - 20)}... (${detail.length} chars)`;
}

const errorText = (err: unknown): string => (err instanceof Error ? err.message : String(err));
const errorCode = (err: unknown): string | undefined => (err as NodeJS.ErrnoException | null)?.code;

/**
 * Pass 1: the file behind an already confined path (confineImagePath) exists, is still under the
 * real image root once symlinks are resolved, is a regular file within the size cap, and its
 * header is a JPEG, PNG or WebP within the pixel limit. Reads only the header (the whole file
 * only when the header is not in its first 64 KiB). Returns the real path pass 2 reads.
 */
export async function checkSftImage(realRoot: string, path: string, maxBytes: number): Promise<SftImageCheck> {
  let real: string;
  try {
    real = await realpath(path);
  } catch (err) {
    const code = errorCode(err);
    if (code === 'ENOENT' || code === 'ENOTDIR') return { ok: false, reason: 'image_missing', detail: `${path}: no such file` };
    return { ok: false, reason: 'image_unreadable', detail: `${path}: ${errorText(err)}` };
  }
  if (!isInside(realRoot, real)) return { ok: false, reason: 'image_outside_root', detail: `${path} leads (through a symlink) to ${real}, outside the image root ${realRoot}` };
  const read = await readCapped(real, maxBytes, HEADER_PREFIX_BYTES);
  if (!read.ok) return read;
  let verdict = imageHeaderVerdict(read.data);
  if (!verdict.ok && read.data.length === HEADER_PREFIX_BYTES) {
    const whole = await readCapped(real, maxBytes);
    if (!whole.ok) return whole;
    verdict = imageHeaderVerdict(whole.data);
  }
  if (!verdict.ok) return { ok: false, reason: verdict.reason, detail: `${path}: ${verdict.detail}` };
  return { ok: true, path: real };
}

/** Pass 2: the whole file, under the same rules (the file may have changed since pass 1). */
export function readSftImage(path: string, maxBytes: number): Promise<SftImageBytes> {
  return readCapped(path, maxBytes);
}

/**
 * Reads at most `limit` bytes (default: the whole file) of a regular file of at most maxBytes.
 * stat before open, so a device or FIFO is never opened (opening some devices has effects, and a
 * FIFO's open waits for a writer); the open is non-blocking and does not follow a final symlink,
 * and fstat checks the file opened is the one stat saw, in case it was swapped in between.
 */
async function readCapped(path: string, maxBytes: number, limit = Infinity): Promise<SftImageBytes> {
  const fail = (reason: SftImageReason, detail: string): SftImageBytes => ({ ok: false, reason, detail: `${path}: ${detail}` });
  let handle: FileHandle | undefined;
  try {
    const seen = await stat(path);
    if (!seen.isFile()) return fail('image_not_a_file', `is ${describeKind(seen)}`);
    if (seen.size > maxBytes) return fail('image_too_big', `${seen.size} bytes, over the cap of ${maxBytes} (--max-image-bytes)`);
    handle = await open(path, constants.O_RDONLY | constants.O_NONBLOCK | constants.O_NOFOLLOW);
    const opened = await handle.stat();
    if (!opened.isFile() || opened.ino !== seen.ino || opened.dev !== seen.dev) return fail('image_not_a_file', 'changed while being opened');
    // One byte past the cap tells a file that grew after stat from one that fits.
    const want = Math.min(limit, maxBytes + 1);
    const data = Buffer.alloc(Math.min(want, opened.size + 1));
    let got = 0;
    while (got < data.length) {
      const { bytesRead } = await handle.read(data, got, data.length - got, got);
      if (bytesRead === 0) break;
      got += bytesRead;
    }
    if (got > maxBytes) return fail('image_too_big', `grew past the cap of ${maxBytes} bytes (--max-image-bytes) while being read`);
    if (limit === Infinity && got > opened.size) return fail('image_unreadable', 'grew while being read');
    return { ok: true, data: data.subarray(0, got) };
  } catch (err) {
    const code = errorCode(err);
    if (code === 'ENOENT' || code === 'ENOTDIR') return fail('image_missing', 'no such file');
    if (code === 'ELOOP') return fail('image_not_a_file', 'became a symlink');
    return fail('image_unreadable', errorText(err));
  } finally {
    await handle?.close().catch(() => undefined);
  }
}
