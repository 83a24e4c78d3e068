// DataComp's uid array on disk: a .npy (format 1.0) of numpy dtype `u8,u8`, i.e. the structured
// dtype [('f0','<u8'),('f1','<u8')], f0 = int(uid[:16], 16), f1 = int(uid[16:], 16), sorted
// ascending and unique. The header is exactly what np.save writes (padded to 128 bytes), and its
// length does not depend on the row count, so a streaming writer can fill the count in last.
import { open, readFile, rename, rm, type FileHandle } from 'node:fs/promises';
import { LoomError } from '../util/errors.js';
import { tempPathFor } from '../util/atomic.js';
import { compareWords, SortedUids, WORDS_PER_UID } from './uidWords.js';

const MAGIC = Buffer.from([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59]);
const UID_NPY_HEADER_BYTES = 128;
const RECORD_BYTES = 16;

function uidNpyHeader(count: number): Buffer {
  const dict = `{'descr': [('f0', '<u8'), ('f1', '<u8')], 'fortran_order': False, 'shape': (${count},), }`;
  const padded = dict + ' '.repeat(UID_NPY_HEADER_BYTES - 10 - dict.length - 1) + '\n';
  const out = Buffer.alloc(UID_NPY_HEADER_BYTES);
  MAGIC.copy(out, 0);
  out[6] = 1;
  out[7] = 0;
  out.writeUInt16LE(padded.length, 8);
  out.write(padded, 10, 'latin1');
  return out;
}

/** Encodes uids given as words (most significant first) into npy records (two little-endian u64). */
function encodeRecords(words: Uint32Array, from: number, count: number, out: Buffer): void {
  for (let i = 0; i < count; i++) {
    const w = (from + i) * WORDS_PER_UID;
    const o = i * RECORD_BYTES;
    out.writeUInt32LE(words[w + 1]!, o);
    out.writeUInt32LE(words[w]!, o + 4);
    out.writeUInt32LE(words[w + 3]!, o + 8);
    out.writeUInt32LE(words[w + 2]!, o + 12);
  }
}

/** Streams sorted unique uids into a .npy written atomically (temp file, then rename). */
export class UidNpyWriter {
  private handle: FileHandle | null = null;
  private readonly tmp: string;
  private count = 0;
  private position = UID_NPY_HEADER_BYTES;
  private readonly chunk = Buffer.alloc(RECORD_BYTES * 65536);
  private chunkUids = 0;

  constructor(readonly target: string) {
    this.tmp = tempPathFor(target);
  }

  async open(): Promise<void> {
    this.handle = await open(this.tmp, 'w');
    await this.handle.write(uidNpyHeader(0), 0, UID_NPY_HEADER_BYTES, 0);
  }

  /** Appends `count` uids from `words` starting at uid index `from`. */
  async append(words: Uint32Array, from: number, count: number): Promise<void> {
    for (let done = 0; done < count; ) {
      const n = Math.min(count - done, this.chunk.length / RECORD_BYTES - this.chunkUids);
      encodeRecords(words, from + done, n, this.chunk.subarray(this.chunkUids * RECORD_BYTES));
      this.chunkUids += n;
      done += n;
      if (this.chunkUids * RECORD_BYTES === this.chunk.length) await this.flush();
    }
    this.count += count;
  }

  /** Writes the header with the final count, syncs and renames into place; returns the count. */
  async close(): Promise<number> {
    await this.flush();
    const handle = this.handle!;
    await handle.write(uidNpyHeader(this.count), 0, UID_NPY_HEADER_BYTES, 0);
    await handle.sync();
    await handle.close();
    this.handle = null;
    await rename(this.tmp, this.target);
    return this.count;
  }

  async abort(): Promise<void> {
    await this.handle?.close().catch(() => {});
    this.handle = null;
    await rm(this.tmp, { force: true });
  }

  private async flush(): Promise<void> {
    if (this.chunkUids === 0) return;
    const bytes = this.chunkUids * RECORD_BYTES;
    await this.handle!.write(this.chunk, 0, bytes, this.position);
    this.position += bytes;
    this.chunkUids = 0;
  }
}

/**
 * Reads a uid array written by Loom, DataComp or np.save (dtype u8,u8, any field names, C order)
 * into memory; checks that it is sorted and unique, because membership uses binary search.
 */
export async function readUidNpy(path: string): Promise<SortedUids> {
  let data: Buffer;
  try {
    data = await readFile(path);
  } catch (err) {
    throw new LoomError(`${path}: cannot read the uid array (${(err as Error).message})`);
  }
  if (data.length < 10 || !data.subarray(0, 6).equals(MAGIC)) throw new LoomError(`${path}: not a .npy file (missing the \\x93NUMPY magic)`);
  const major = data[6]!;
  const headerLength = major === 1 ? data.readUInt16LE(8) : major === 2 || major === 3 ? data.readUInt32LE(8) : -1;
  if (headerLength < 0) throw new LoomError(`${path}: unsupported .npy format version ${major}.${data[7]}`);
  const dataStart = (major === 1 ? 10 : 12) + headerLength;
  const header = data.toString('latin1', major === 1 ? 10 : 12, dataStart);
  const m = /^\{'descr': \[\('(\w+)', '<u8'\), \('(\w+)', '<u8'\)\], 'fortran_order': False, 'shape': \((\d+),\), \}\s*$/.exec(header);
  if (!m) {
    throw new LoomError(`${path}: expected a 1-D numpy array of dtype u8,u8 ([('f0','<u8'),('f1','<u8')]), found header ${JSON.stringify(header.trim())}`);
  }
  const count = Number(m[3]);
  const body = data.subarray(dataStart);
  if (body.length !== count * RECORD_BYTES) throw new LoomError(`${path}: header declares ${count} uids but ${body.length} data bytes follow (expected ${count * RECORD_BYTES})`);
  const words = new Uint32Array(count * WORDS_PER_UID);
  for (let i = 0; i < count; i++) {
    const o = i * RECORD_BYTES;
    const w = i * WORDS_PER_UID;
    words[w] = body.readUInt32LE(o + 4);
    words[w + 1] = body.readUInt32LE(o);
    words[w + 2] = body.readUInt32LE(o + 12);
    words[w + 3] = body.readUInt32LE(o + 8);
    if (i > 0 && compareWords(words, w - WORDS_PER_UID, words, w) >= 0) {
      throw new LoomError(`${path}: uids are not sorted ascending and unique (row ${i - 1} >= row ${i}); sort it with np.unique`);
    }
  }
  return new SortedUids(words);
}
