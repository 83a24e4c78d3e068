// Writes packed sequences into WebDataset shards {:08d}.tar (layout in docs/formats.md, "Packed
// shards"): first the member __loom_pack__.json (what the trainer checks before reading on), then
// per sequence {key}.doclens.npy, {key}.img000.jpg..., {key}.json, {key}.loss.npy,
// {key}.tokens.npy. Each shard is written to a temporary file and renamed when complete, with
// fixed tar header fields, so the same sequences give byte-identical shards. The header member
// is reserved at a fixed size and filled in with the shard's final counts before the rename, so
// shards stream out without holding their sequences in memory.
import type { FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { LoomError } from '../util/errors.js';
import type { RunConfig, Stage } from '../config/schema.js';
import { imageTokensPerImage } from '../config/schema.js';
import { readImageHeader } from '../shards/imageHeader.js';
import { isValidUid, shardFileName } from '../shards/keys.js';
import type { TextTokenizer } from '../tokenize/tokenizer.js';
import { writeJsonAtomic } from '../util/atomic.js';
import { SerialQueue } from '../util/serialQueue.js';
import { encodeNpy } from './npy.js';
import { PendingTar } from '../shards/pendingTar.js';

export const PACK_META_MEMBER = '__loom_pack__.json';
/** Bytes reserved for the header member's JSON (space-padded, ends in a newline). */
export const PACK_META_BYTES = 1024;
const PACK_FORMAT = 'loom-packed';
const PACK_VERSION = 1;

/** One document of a packed sequence: its tokens, loss mask and images in order of appearance. */
export interface PackedDoc {
  /** Source sample uid (32 lowercase hex). */
  uid: string;
  ids: Int32Array;
  /** 1 where the token is a training target, else 0; same length as ids. */
  loss: Uint8Array;
  /** JPEG bytes at image_size x image_size, one per run of image tokens in ids, in order. */
  images: Buffer[];
}

export interface PackedSequence {
  docs: PackedDoc[];
}

/** What a packed shard promises; the trainer refuses a shard whose fields differ from its run. */
export interface PackedShardSpec {
  tokenizer_sha256: string;
  image_token_id: number;
  image_tokens_per_image: number;
  image_size: number;
  seq_len: number;
  stage: Stage;
  pad_id: number;
  eos_id: number;
}

/** The JSON of the first member: the spec plus the shard's contents. */
export interface PackedShardMeta extends PackedShardSpec {
  format: typeof PACK_FORMAT;
  version: typeof PACK_VERSION;
  shard: string;
  sequences: number;
  documents: number;
  images: number;
  /** Tokens in all sequences (image tokens included, padding excluded: shards hold no padding). */
  real_tokens: number;
  first_key: string | null;
  last_key: string | null;
}

/** The sidecar {:08d}_pack.json: the header plus file facts. */
export interface PackedShardSidecar extends PackedShardMeta {
  tar_bytes: number;
  /** real_tokens / (sequences * seq_len). */
  fill: number;
}

export interface PackedShardWriterOptions {
  dir: string;
  spec: PackedShardSpec;
  /** Sequences per shard (default 1,000). */
  sequencesPerShard?: number;
  /** Index of the first shard file (default 0). */
  firstShard?: number;
  /** Global index of the first sequence, which names its key (default firstShard * sequencesPerShard). */
  firstSequence?: number;
}

export interface PackedWriteSummary {
  shards: string[];
  sequences: number;
  documents: number;
  images: number;
  real_tokens: number;
  /** real_tokens / (sequences * seq_len), 0 when nothing was written. */
  fill: number;
}

/** The spec of shards packed for a run with this tokenizer. */
export function packedSpecFor(config: RunConfig, tokenizer: TextTokenizer): PackedShardSpec {
  return {
    tokenizer_sha256: tokenizer.sha256,
    image_token_id: tokenizer.tokenId(config.tokenizer.image_token),
    image_tokens_per_image: imageTokensPerImage(config),
    image_size: config.model.vision.image_size,
    seq_len: config.data.seq_len,
    stage: config.stage,
    pad_id: tokenizer.tokenId(config.tokenizer.pad_token),
    eos_id: tokenizer.tokenId(config.tokenizer.eos_token),
  };
}

/** Sequence keys: the global sequence index, zero-padded to 9 digits (img2dataset style). */
export function sequenceKey(index: number): string {
  return String(index).padStart(9, '0');
}

/** Member extension of the i-th image of a sequence: img000, img001, ... (wider past 999). */
export function imageExt(i: number): string {
  return `img${String(i).padStart(3, '0')}.jpg`;
}

/** The header member's bytes: JSON padded with spaces to PACK_META_BYTES, ending in a newline. */
function encodePackMeta(meta: PackedShardMeta): Buffer {
  const json = JSON.stringify(meta);
  if (json.length + 1 > PACK_META_BYTES) throw new Error(`packed shard header needs ${json.length + 1} bytes, only ${PACK_META_BYTES} are reserved`);
  return Buffer.from(json + ' '.repeat(PACK_META_BYTES - json.length - 1) + '\n', 'utf8');
}

/** A tar header is one 512-byte block; the header member is the first, so its data starts here. */
const META_OFFSET = 512;

interface OpenShard {
  index: number;
  tar: PendingTar;
  meta: PackedShardMeta;
}

/** A sequence that breaks the format: the writer stays usable, the sequence is not written. */
class SequenceError extends LoomError {}

export class PackedShardWriter {
  private readonly dir: string;
  private readonly spec: PackedShardSpec;
  private readonly perShard: number;
  private nextShard: number;
  private nextSequence: number;
  private shard: OpenShard | null = null;
  private readonly written: string[] = [];
  private readonly totals = { sequences: 0, documents: 0, images: 0, real_tokens: 0 };
  private readonly queue = new SerialQueue('PackedShardWriter', (err) => err instanceof SequenceError);

  constructor(options: PackedShardWriterOptions) {
    const per = options.sequencesPerShard ?? 1000;
    const first = options.firstShard ?? 0;
    if (!Number.isInteger(per) || per < 1) throw new LoomError(`sequencesPerShard must be a positive integer, got ${per}`);
    if (!Number.isInteger(first) || first < 0) throw new LoomError(`firstShard must be a non-negative integer, got ${first}`);
    const firstSequence = options.firstSequence ?? first * per;
    if (!Number.isInteger(firstSequence) || firstSequence < 0) throw new LoomError(`firstSequence must be a non-negative integer, got ${firstSequence}`);
    checkSpec(options.spec);
    this.dir = options.dir;
    this.spec = { ...options.spec };
    this.perShard = per;
    this.nextShard = first;
    this.nextSequence = firstSequence;
  }

  /** Appends one sequence. Calls apply in order; await each for back-pressure. */
  write(sequence: PackedSequence): Promise<void> {
    return this.queue.run(() => this.writeOne(sequence));
  }

  /** Finishes the open shard; returns the shards written, in order, and the totals. */
  async close(): Promise<PackedWriteSummary> {
    await this.queue.close(async () => {
      if (this.shard) await this.finishShard();
    });
    const t = this.totals;
    return { shards: [...this.written], ...t, fill: t.sequences === 0 ? 0 : t.real_tokens / (t.sequences * this.spec.seq_len) };
  }

  /** Stops writing and removes the unfinished shard's temporary file (finished shards stay). */
  async abort(): Promise<void> {
    await this.queue.stop();
    const open = this.shard;
    this.shard = null;
    if (open) await open.tar.discard();
  }

  private async writeOne(sequence: PackedSequence): Promise<void> {
    const key = sequenceKey(this.nextSequence);
    const members = this.encode(sequence, key);
    if (!this.shard) this.shard = await this.openShard();
    const shard = this.shard;
    for (const [ext, data] of members) await shard.tar.add(`${key}.${ext}`, data);
    this.nextSequence++;
    const images = sequence.docs.reduce((n, d) => n + d.images.length, 0);
    const tokens = sequence.docs.reduce((n, d) => n + d.ids.length, 0);
    const m = shard.meta;
    m.sequences++;
    m.documents += sequence.docs.length;
    m.images += images;
    m.real_tokens += tokens;
    m.first_key ??= key;
    m.last_key = key;
    this.totals.sequences++;
    this.totals.documents += sequence.docs.length;
    this.totals.images += images;
    this.totals.real_tokens += tokens;
    if (m.sequences >= this.perShard) await this.finishShard();
  }

  /** Validates a sequence and returns its members, sorted by extension. */
  private encode(sequence: PackedSequence, key: string): Array<[string, Buffer]> {
    const where = `packed sequence ${key}`;
    const docs = sequence?.docs;
    if (!Array.isArray(docs) || docs.length === 0) throw new SequenceError(`${where}: has no documents`);
    const total = docs.reduce((n, d) => n + (d.ids?.length ?? 0), 0);
    if (total > this.spec.seq_len) throw new SequenceError(`${where}: ${total} tokens exceed seq_len ${this.spec.seq_len}`);
    const tokens = new Int32Array(total);
    const loss = new Uint8Array(total);
    const doclens = new Int32Array(docs.length);
    const images: Buffer[] = [];
    let at = 0;
    docs.forEach((doc, d) => {
      this.checkDoc(doc, `${where}, document ${d} (uid ${String(doc.uid)})`);
      tokens.set(doc.ids, at);
      loss.set(doc.loss, at);
      doclens[d] = doc.ids.length;
      at += doc.ids.length;
      images.push(...doc.images);
    });
    const json = Buffer.from(JSON.stringify({ uids: docs.map((d) => d.uid), docs: docs.length }), 'utf8');
    const members: Array<[string, Buffer]> = [
      ['doclens.npy', encodeNpy(doclens)],
      ...images.map((img, i): [string, Buffer] => [imageExt(i), img]),
      ['json', json],
      ['loss.npy', encodeNpy(loss)],
      ['tokens.npy', encodeNpy(tokens)],
    ];
    return members.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
  }

  private checkDoc(doc: PackedDoc, where: string): void {
    if (!isValidUid(doc.uid)) throw new SequenceError(`${where}: uid is not 32 lowercase hex characters`);
    if (!(doc.ids instanceof Int32Array) || doc.ids.length === 0) throw new SequenceError(`${where}: ids must be a non-empty Int32Array`);
    if (!(doc.loss instanceof Uint8Array) || doc.loss.length !== doc.ids.length) {
      throw new SequenceError(`${where}: loss must be a Uint8Array as long as ids (${doc.ids.length})`);
    }
    if (!Array.isArray(doc.images)) throw new SequenceError(`${where}: images must be an array of JPEG buffers`);
    const { image_token_id: imageId, image_tokens_per_image: perImage, image_size: size } = this.spec;
    let runs = 0;
    for (let i = 0; i < doc.ids.length; ) {
      const id = doc.ids[i]!;
      if (id < 0) throw new SequenceError(`${where}: token ${i} has negative id ${id}`);
      if (doc.loss[i]! > 1) throw new SequenceError(`${where}: loss mask value ${doc.loss[i]} at ${i} is not 0 or 1`);
      if (id !== imageId) {
        i++;
        continue;
      }
      let end = i;
      while (end < doc.ids.length && doc.ids[end] === imageId) {
        if (doc.loss[end] !== 0) throw new SequenceError(`${where}: image token at ${end} has loss mask 1`);
        end++;
      }
      if ((end - i) % perImage !== 0) {
        throw new SequenceError(`${where}: a run of ${end - i} image tokens at ${i} is not a whole number of images (${perImage} tokens each)`);
      }
      runs += (end - i) / perImage;
      i = end;
    }
    if (runs !== doc.images.length) throw new SequenceError(`${where}: ids hold ${runs} image(s) of ${perImage} tokens but ${doc.images.length} image(s) are given`);
    doc.images.forEach((img, i) => {
      const header = Buffer.isBuffer(img) ? readImageHeader(img) : { ok: false as const, problem: 'not a Buffer' };
      if (!header.ok || header.format !== 'jpg') throw new SequenceError(`${where}: image ${i} is not a JPEG (${header.ok ? header.format : header.problem})`);
      if (header.width !== size || header.height !== size) {
        throw new SequenceError(`${where}: image ${i} is ${header.width}x${header.height}, expected ${size}x${size} (image_size)`);
      }
    });
  }

  private async openShard(): Promise<OpenShard> {
    const index = this.nextShard++;
    const tar = await PendingTar.create(join(this.dir, shardFileName(index)));
    const meta: PackedShardMeta = {
      format: PACK_FORMAT,
      version: PACK_VERSION,
      ...this.spec,
      shard: shardFileName(index),
      sequences: 0,
      documents: 0,
      images: 0,
      real_tokens: 0,
      first_key: null,
      last_key: null,
    };
    try {
      await tar.add(PACK_META_MEMBER, encodePackMeta(meta));
    } catch (err) {
      await tar.discard();
      throw err;
    }
    return { index, tar, meta };
  }

  private async finishShard(): Promise<void> {
    const shard = this.shard!;
    this.shard = null;
    const tarBytes = await shard.tar.commit((file) => rewriteMeta(file, shard.meta));
    const m = shard.meta;
    const sidecar: PackedShardSidecar = { ...m, tar_bytes: tarBytes, fill: m.real_tokens / (m.sequences * m.seq_len) };
    await writeJsonAtomic(join(this.dir, packSidecarName(shard.index)), sidecar);
    this.written.push(shard.tar.path);
  }
}

/** "00000042_pack.json", the sidecar of packed shard 42. */
function packSidecarName(index: number): string {
  return `${String(index).padStart(8, '0')}_pack.json`;
}

async function rewriteMeta(handle: FileHandle, meta: PackedShardMeta): Promise<void> {
  // Make sure the bytes being replaced are the reserved header, not anything else.
  const head = Buffer.alloc(META_OFFSET + PACK_META_BYTES);
  await handle.read(head, 0, head.length, 0);
  const name = head.toString('latin1', 0, PACK_META_MEMBER.length);
  if (name !== PACK_META_MEMBER || head[META_OFFSET] !== 0x7b /* { */ || head[META_OFFSET + PACK_META_BYTES - 1] !== 0x0a) {
    throw new Error(`packed shard header member is not where it was reserved (${handle.fd})`);
  }
  const bytes = encodePackMeta(meta);
  await handle.write(bytes, 0, bytes.length, META_OFFSET);
}

function checkSpec(spec: PackedShardSpec): void {
  const problems: string[] = [];
  if (!/^[0-9a-f]{64}$/.test(spec.tokenizer_sha256)) problems.push('tokenizer_sha256 must be 64 lowercase hex characters');
  for (const k of ['image_token_id', 'pad_id', 'eos_id'] as const) {
    if (!Number.isInteger(spec[k]) || spec[k] < 0) problems.push(`${k} must be a non-negative integer`);
  }
  for (const k of ['image_tokens_per_image', 'image_size', 'seq_len'] as const) {
    if (!Number.isInteger(spec[k]) || spec[k] < 1) problems.push(`${k} must be a positive integer`);
  }
  if (spec.stage !== 'pretrain' && spec.stage !== 'sft') problems.push(`stage must be 'pretrain' or 'sft'`);
  if (problems.length > 0) throw new LoomError(`invalid packed shard spec: ${problems.join('; ')}`);
}

