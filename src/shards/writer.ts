// Writes samples into WebDataset shards {:08d}.tar with a {:08d}_stats.json sidecar each.
// Each shard is written to a temporary file and renamed when complete; the bytes depend only on
// the samples (fixed mtime/uid/gid/mode), so the same samples give byte-identical shards.
import { join } from 'node:path';
import { LoomError } from '../util/errors.js';
import { writeJsonAtomic } from '../util/atomic.js';
import { SerialQueue } from '../util/serialQueue.js';
import { dottedKeyDot, IMAGE_EXTS, IMAGE_FIELDS, SAMPLE_FIELD_NAMES, type ImageExt, type SampleMember } from './types.js';
import { deriveUid, extensionProblem, isValidUid, keyProblem, shardFileName, statsFileName } from './keys.js';
import { readImageHeader } from './imageHeader.js';
import type { ShardStats } from './stats.js';
import { PendingTar } from './pendingTar.js';

export interface ShardWriterOptions {
  dir: string;
  /** Samples per shard (default 10,000, as img2dataset and DataComp). */
  samplesPerShard?: number;
  /** Index of the first shard file (default 0). */
  firstShard?: number;
}

export interface SampleToWrite {
  key: string;
  /** The sample's uid; defaults to json.uid, else one derived from the shard name and key. */
  uid?: string;
  image: { ext: ImageExt; data: Buffer };
  caption: string;
  json: Record<string, unknown>;
  /** Further members written unchanged beside the image, .txt and .json ({ext: 'npy', data},
   *  {ext: 'cls', data}), all sorted by extension together. Refused: an extension the writer
   *  writes itself (an image field, txt, json, in any case), one given twice, or one that would
   *  read back under another key ("b.jpg" is key "{key}.b"'s image). */
  extra?: readonly SampleMember[];
  /** The image, .txt and .json members as stored in the shard the sample is copied from. */
  stored?: StoredMembers;
}

/** Lets a copy keep the exact bytes and names of its source (see `loom reshard`). */
export interface StoredMembers {
  /** The image member's extension as spelled there ("jpeg", "JPG"); must name image.ext's format. */
  imageExt?: string;
  /** The .txt bytes: written when they decode (UTF-8) to exactly `caption`, else ignored. */
  txt?: Buffer;
  /** The .json bytes: written unchanged when they parse to exactly `json`, carry the sample's
   *  uid, and a `key` equal to the sample key or none; otherwise json is serialised as usual
   *  (e.g. a renamed or upsampled copy gets its new key). */
  json?: Buffer;
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

interface OpenShard {
  index: number;
  tar: PendingTar;
  keys: Set<string>;
  formats: Partial<Record<ImageExt, number>>;
  captionChars: { min: number; max: number; total: number };
  firstKey: string | null;
  lastKey: string | null;
  failures: Record<string, number>;
}

export class ShardWriter {
  private readonly dir: string;
  private readonly perShard: number;
  private nextIndex: number;
  private shard: OpenShard | null = null;
  private readonly written: string[] = [];
  private total = 0;
  private readonly queue = new SerialQueue('ShardWriter', (err) => err instanceof SampleError);
  private pendingFailures: Record<string, number> = {};

  constructor(options: ShardWriterOptions) {
    const per = options.samplesPerShard ?? 10_000;
    const first = options.firstShard ?? 0;
    if (!Number.isInteger(per) || per < 1) throw new LoomError(`samplesPerShard must be a positive integer, got ${per}`);
    if (!Number.isInteger(first) || first < 0) throw new LoomError(`firstShard must be a non-negative integer, got ${first}`);
    this.dir = options.dir;
    this.perShard = per;
    this.nextIndex = first;
  }

  /** Appends one sample. Calls are applied in order; await each to respect back-pressure. */
  write(sample: SampleToWrite): Promise<void> {
    return this.queue.run(() => this.writeOne(sample));
  }

  /** Counts samples that failed upstream (e.g. by reason) in the stats of the shard being written. */
  noteFailure(reason: string, count = 1): void {
    const tally = this.shard ? this.shard.failures : this.pendingFailures;
    tally[reason] = (tally[reason] ?? 0) + count;
  }

  /** Finishes the open shard; returns every shard path written, in order, and the sample count. */
  async close(): Promise<{ shards: string[]; samples: number }> {
    await this.queue.close(async () => {
      if (this.shard) await this.finishShard();
    });
    return { shards: [...this.written], samples: this.total };
  }

  /** Stops writing and removes the unfinished shard's temporary file (finished shards stay). */
  async abort(): Promise<void> {
    await this.queue.stop();
    const open = this.shard;
    this.shard = null;
    if (open) await open.tar.discard();
  }

  private async writeOne(sample: SampleToWrite): Promise<void> {
    const { members } = this.encode(sample);
    if (!this.shard) this.shard = await this.openShard();
    const shard = this.shard;
    if (shard.keys.has(sample.key)) throw new SampleError(`sample key "${sample.key}" is already in shard ${shard.tar.path}`);
    shard.keys.add(sample.key);
    for (const [ext, data] of members) await shard.tar.add(`${sample.key}.${ext}`, data);
    shard.formats[sample.image.ext] = (shard.formats[sample.image.ext] ?? 0) + 1;
    const chars = [...sample.caption].length;
    const c = shard.captionChars;
    if (shard.firstKey === null) {
      shard.firstKey = sample.key;
      c.min = chars;
      c.max = chars;
    }
    c.min = Math.min(c.min, chars);
    c.max = Math.max(c.max, chars);
    c.total += chars;
    shard.lastKey = sample.key;
    this.total++;
    if (shard.keys.size >= this.perShard) await this.finishShard();
  }

  /** Validates a sample and returns its members in img2dataset's order (sorted by extension). */
  private encode(sample: SampleToWrite): { members: Array<[string, Buffer]>; uid: string } {
    const problem = keyProblem(sample.key);
    if (problem) throw new SampleError(`cannot write sample: ${problem}`);
    const where = `sample "${sample.key}"`;
    if (!sample.image || !IMAGE_EXTS.includes(sample.image.ext)) throw new SampleError(`${where}: image.ext must be one of ${IMAGE_EXTS.join(', ')}`);
    if (!Buffer.isBuffer(sample.image.data) || sample.image.data.length === 0) throw new SampleError(`${where}: image.data must be a non-empty Buffer`);
    const header = readImageHeader(sample.image.data);
    if (!header.ok || header.format !== sample.image.ext) {
      throw new SampleError(`${where}: image bytes are not ${sample.image.ext.toUpperCase()} (${header.ok ? header.format : header.problem})`);
    }
    if (typeof sample.caption !== 'string' || sample.caption.trim().length === 0) throw new SampleError(`${where}: caption is empty`);
    if (sample.json === null || typeof sample.json !== 'object' || Array.isArray(sample.json)) throw new SampleError(`${where}: json must be an object`);
    const given = sample.uid ?? sample.json.uid;
    if (sample.uid !== undefined && sample.json.uid !== undefined && sample.uid !== sample.json.uid) {
      throw new SampleError(`${where}: uid ${sample.uid} differs from json.uid ${String(sample.json.uid)}`);
    }
    if (given !== undefined && !isValidUid(given)) throw new SampleError(`${where}: uid ${JSON.stringify(given)} is not 32 lowercase hex characters`);
    const shardName = shardFileName(this.shard ? this.shard.index : this.nextIndex);
    const uid = (given as string | undefined) ?? deriveUid(shardName, sample.key);
    const stored = sample.stored ?? {};
    const imageExt = stored.imageExt ?? sample.image.ext;
    if (typeof imageExt !== 'string' || IMAGE_FIELDS[imageExt.toLowerCase()] !== sample.image.ext) {
      throw new SampleError(`${where}: stored image extension ${JSON.stringify(imageExt)} does not name a ${sample.image.ext.toUpperCase()} image`);
    }
    const members: Array<[string, Buffer]> = [
      [imageExt, sample.image.data],
      ['json', storedJsonFits(stored.json, sample, uid) ? stored.json! : Buffer.from(JSON.stringify({ ...sample.json, key: sample.key, uid }), 'utf8')],
      ['txt', storedTxtFits(stored.txt, sample) ? stored.txt! : Buffer.from(sample.caption, 'utf8')],
    ];
    if (sample.extra !== undefined) {
      if (!Array.isArray(sample.extra)) throw new SampleError(`${where}: extra must be an array of {ext, data} members`);
      const taken = new Set<string>();
      for (const member of sample.extra as readonly SampleMember[]) {
        const problem = extraProblem(member, taken);
        if (problem) throw new SampleError(`${where}: extra member ${problem}`);
        taken.add(member.ext.toLowerCase());
        members.push([member.ext, member.data]);
      }
    }
    members.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
    return { members, uid };
  }

  private async openShard(): Promise<OpenShard> {
    const index = this.nextIndex++;
    const tar = await PendingTar.create(join(this.dir, shardFileName(index)));
    const failures = this.pendingFailures;
    this.pendingFailures = {};
    return {
      index, tar,
      keys: new Set(), formats: {}, captionChars: { min: 0, max: 0, total: 0 },
      firstKey: null, lastKey: null, failures,
    };
  }

  private async finishShard(): Promise<void> {
    const shard = this.shard!;
    this.shard = null;
    const tarBytes = await shard.tar.commit();
    const samples = shard.keys.size;
    const failed = Object.values(shard.failures).reduce((a, b) => a + b, 0);
    const stats: ShardStats = {
      count: samples + failed,
      successes: samples,
      failed_to_download: shard.failures.failed_to_download ?? 0,
      failed_to_resize: shard.failures.failed_to_resize ?? 0,
      status_dict: { success: samples, ...shard.failures },
      loom: {
        format: 'loom-shard-stats',
        version: 1,
        shard: shardFileName(shard.index),
        samples,
        tar_bytes: tarBytes,
        image_formats: shard.formats,
        caption_chars: shard.captionChars,
        first_key: shard.firstKey,
        last_key: shard.lastKey,
        failures: shard.failures,
      },
    };
    await writeJsonAtomic(join(this.dir, statsFileName(shard.index)), stats);
    this.written.push(shard.tar.path);
  }
}

/** Why an extra member cannot be written beside the others (null when it can). */
function extraProblem(member: SampleMember, taken: ReadonlySet<string>): string | null {
  if (member === null || typeof member !== 'object' || typeof member.ext !== 'string') return 'must be {ext: string, data: Buffer}';
  const ext = member.ext;
  const shown = JSON.stringify(ext);
  if (!Buffer.isBuffer(member.data)) return `${shown}: data must be a Buffer`;
  const unsafe = extensionProblem(ext);
  if (unsafe) return unsafe;
  const field = ext.toLowerCase();
  if (SAMPLE_FIELD_NAMES.has(field)) return `${shown} collides with the ${field in IMAGE_FIELDS ? 'image' : field} member the writer writes itself`;
  const dot = dottedKeyDot(field);
  if (dot >= 0) return `${shown} would be read back as the .${field.slice(dot + 1)} of another key (the key would end at its first dot)`;
  if (taken.has(field)) return `${shown} is given twice (extensions are compared lower-cased, as WebDataset reads them)`;
  return null;
}

/** True when the stored json bytes are exactly the sample's json, with its uid and key (or no key). */
function storedJsonFits(bytes: Buffer | undefined, sample: SampleToWrite, uid: string): boolean {
  if (bytes === undefined) return false;
  if (!Buffer.isBuffer(bytes)) throw new SampleError(`sample "${sample.key}": stored.json must be a Buffer`);
  let parsed: unknown;
  try {
    parsed = JSON.parse(utf8.decode(bytes));
  } catch {
    return false;
  }
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) return false;
  const record = parsed as Record<string, unknown>;
  if (record.uid !== uid || (record.key !== undefined && record.key !== sample.key)) return false;
  return JSON.stringify(record) === JSON.stringify(sample.json);
}

/** True when the stored .txt bytes are the caption (they may differ by a byte order mark). */
function storedTxtFits(bytes: Buffer | undefined, sample: SampleToWrite): boolean {
  if (bytes === undefined) return false;
  if (!Buffer.isBuffer(bytes)) throw new SampleError(`sample "${sample.key}": stored.txt must be a Buffer`);
  try {
    return utf8.decode(bytes) === sample.caption;
  } catch {
    return false;
  }
}

/** A problem with one sample's content: the writer stays usable. */
class SampleError extends LoomError {}

