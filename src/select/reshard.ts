// `loom reshard`: copy the selected samples of input shards into new shards, in input order.
// A uid in an --upsample array (and in the selection) is written K times in all: the first copy
// keeps its key, copy j (j >= 2) gets the key `{key}_u{j}`; every copy keeps the same uid in its
// json, so uid-based tools still see one sample. Every member of a sample is copied byte for byte
// under its own extension (.npy, .cls, a second caption, the image as .jpeg or .webp...); only
// a json that lacks the uid, or whose `key` no longer matches (a renamed or upsampled copy), is
// rewritten as {...json, key, uid}. Output shards are written atomically by
// ShardWriter; OUT/_reshard.json records the job, so a rerun with the same inputs resumes after
// the last finished shard, and a directory holding anything else is refused.
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { readdir, readFile, rm } from 'node:fs/promises';
import { basename, join, resolve } from 'node:path';
import { LoomError } from '../util/errors.js';
import { isTempPath, writeJsonAtomic } from '../util/atomic.js';
import { isClaimFile, withOutputDir } from '../util/outputDir.js';
import { readShards } from '../shards/reader.js';
import { ShardWriter, type StoredMembers } from '../shards/writer.js';
import { SAMPLE_FIELD_NAMES, type Sample, type SampleMember } from '../shards/types.js';
import { keyProblem, shardFileName, statsFileName } from '../shards/keys.js';
import { readUidNpy } from './uidNpy.js';
import type { SortedUids } from './uidWords.js';

export interface UpsampleSpec {
  path: string;
  /** Copies in total of each listed uid (>= 1). */
  k: number;
}

export interface ReshardOptions {
  shards: string[];
  selection: string;
  out: string;
  samplesPerShard?: number;
  upsample?: UpsampleSpec[];
  /** Called after each input sample (good or bad) is handled. */
  onProgress?: () => void;
  onWarning?: (message: string) => void;
}

export interface ReshardSummary {
  format: 'loom-reshard';
  version: 1;
  out: string;
  input_shards: number;
  input_samples: number;
  input_bad: number;
  input_bad_by_reason: Record<string, number>;
  selection_size: number;
  /** Distinct selected uids found in the input. */
  selected_found: number;
  /** Selected uids that no input sample carries. */
  selected_not_found: number;
  /** Input samples repeating a uid already written (skipped and counted). */
  duplicate_uid_skipped: number;
  /** Samples written, copies included. */
  written: number;
  upsampled_uids: number;
  upsample_not_selected: number;
  /** Keys renamed because the key was already used in the output shard. */
  renamed_keys: number;
  shards: string[];
  resumed_from_shard: number;
  seconds: number;
}

const MANIFEST = '_reshard.json';

interface Manifest {
  format: 'loom-reshard-job';
  version: 1;
  inputs: string[];
  selection_sha256: string;
  upsample: Array<{ sha256: string; k: number }>;
  samples_per_shard: number;
  complete?: boolean;
  summary?: ReshardSummary;
}

async function sha256File(path: string): Promise<string> {
  const hash = createHash('sha256');
  try {
    for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
  } catch (err) {
    throw new LoomError(`${path}: cannot read (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`);
  }
  return hash.digest('hex');
}

export async function runReshard(options: ReshardOptions): Promise<ReshardSummary> {
  const started = Date.now();
  const perShard = options.samplesPerShard ?? 10_000;
  const selection = await readUidNpy(options.selection);
  const upsample: Array<{ uids: SortedUids; k: number; path: string }> = [];
  for (const u of options.upsample ?? []) {
    if (!Number.isInteger(u.k) || u.k < 1) throw new LoomError(`--upsample ${u.path}:${u.k}: K must be an integer >= 1`);
    upsample.push({ uids: await readUidNpy(u.path), k: u.k, path: u.path });
  }
  const manifest: Manifest = {
    format: 'loom-reshard-job',
    version: 1,
    inputs: options.shards.map((p) => resolve(p)),
    selection_sha256: await sha256File(options.selection),
    upsample: await Promise.all((options.upsample ?? []).map(async (u) => ({ sha256: await sha256File(u.path), k: u.k }))),
    samples_per_shard: perShard,
  };
  const adopt = (names: string[]) => names.includes(MANIFEST);
  return withOutputDir(options.out, { command: 'reshard', adopt }, () => reshardInto(options, manifest, selection, upsample, started));
}

async function reshardInto(
  options: ReshardOptions,
  manifest: Manifest,
  selection: SortedUids,
  upsample: Array<{ uids: SortedUids; k: number; path: string }>,
  started: number,
): Promise<ReshardSummary> {
  const perShard = options.samplesPerShard ?? 10_000;
  const warn = (m: string) => options.onWarning?.(m);
  const resumeFrom = await prepareOut(options.out, manifest);
  await writeJsonAtomic(join(options.out, MANIFEST), manifest);

  // Copies per selected uid: the largest K of the upsample arrays that list it, else 1.
  const copiesOf = (uid: string): number => {
    let k = 1;
    for (const u of upsample) if (u.k > k && u.uids.indexOf(uid) >= 0) k = u.k;
    return k;
  };
  let upsampleNotSelected = 0;
  let upsampled = 0;
  for (const u of upsample) {
    for (let i = 0; i < u.uids.size; i++) if (selection.indexOf(u.uids.uidAt(i)) < 0) upsampleNotSelected++;
  }
  if (upsampleNotSelected > 0) warn(`${upsampleNotSelected} uid(s) in --upsample arrays are not in the selection and are not written`);

  const found = new Uint8Array(selection.size);
  const skip = resumeFrom * perShard;
  const writer = new ShardWriter({ dir: options.out, samplesPerShard: perShard, firstShard: resumeFrom });
  let position = 0; // index of the next output sample, counting those already written by an earlier run
  let outKeys = new Set<string>();
  let inputSamples = 0;
  let inputBad = 0;
  const badByReason: Record<string, number> = {};
  let duplicates = 0;
  let renamed = 0;
  try {
    for await (const item of readShards(options.shards, { members: true })) {
      options.onProgress?.();
      if (item.kind === 'bad') {
        inputBad++;
        badByReason[item.bad.reason] = (badByReason[item.bad.reason] ?? 0) + 1;
        continue;
      }
      inputSamples++;
      const sample = item.sample;
      const at = selection.indexOf(sample.uid);
      if (at < 0) continue;
      if (found[at]) {
        duplicates++;
        continue;
      }
      found[at] = 1;
      const copies = copiesOf(sample.uid);
      if (copies > 1) upsampled++;
      const { stored, extra } = splitMembers(sample);
      for (let j = 1; j <= copies; j++) {
        if (position % perShard === 0) outKeys = new Set();
        let key = j === 1 ? sample.key : `${sample.key}_u${j}`;
        if (outKeys.has(key)) {
          // Keys from different input shards can collide (each numbers from 0): prefix the input shard.
          const stem = basename(sample.shard).replace(/\.tar$/, '');
          let n = 0;
          const base = `${stem}_${key}`;
          key = base;
          while (outKeys.has(key)) key = `${base}_${++n}`;
          renamed++;
        }
        // A key at the length limit has no room for "_u{j}" or a shard prefix: such a copy gets a
        // short key of its own (the json keeps the uid), rather than the writer aborting the job.
        if (keyProblem(key) !== null) {
          let n = 0;
          do key = `r${String(position).padStart(9, '0')}${n++ === 0 ? '' : `_${n}`}`;
          while (outKeys.has(key));
          renamed++;
        }
        outKeys.add(key);
        if (position >= skip) {
          await writer.write({ key, uid: sample.uid, image: sample.image, caption: sample.caption, json: { ...sample.json, uid: sample.uid }, stored, extra });
        }
        position++;
      }
    }
  } catch (err) {
    await writer.abort();
    throw err;
  }
  const closed = await writer.close();
  let selectedFound = 0;
  for (const f of found) selectedFound += f;
  if (selectedFound < selection.size) warn(`${selection.size - selectedFound} selected uid(s) were not found in the input shards`);
  if (duplicates > 0) warn(`${duplicates} input sample(s) repeat a selected uid already written; skipped`);
  const shards: string[] = [];
  for (let i = 0; i < Math.ceil(position / perShard); i++) shards.push(join(options.out, shardFileName(i)));
  const summary: ReshardSummary = {
    format: 'loom-reshard',
    version: 1,
    out: options.out,
    input_shards: options.shards.length,
    input_samples: inputSamples,
    input_bad: inputBad,
    input_bad_by_reason: badByReason,
    selection_size: selection.size,
    selected_found: selectedFound,
    selected_not_found: selection.size - selectedFound,
    duplicate_uid_skipped: duplicates,
    written: position,
    upsampled_uids: upsampled,
    upsample_not_selected: upsampleNotSelected,
    renamed_keys: renamed,
    shards,
    resumed_from_shard: resumeFrom,
    seconds: (Date.now() - started) / 1000,
  };
  if (closed.samples + skip < position) throw new LoomError(`reshard: wrote ${closed.samples} samples after skipping ${skip}, expected ${position}`);
  await writeJsonAtomic(join(options.out, MANIFEST), { ...manifest, complete: true, summary });
  return summary;
}

/** The sample's members as stored: its image, .txt and .json ones, and all the others. */
function splitMembers(sample: Sample): { stored: StoredMembers; extra: SampleMember[] } {
  if (!sample.members) throw new Error(`reshard: the reader gave no members for ${sample.shard} key ${sample.key}`);
  const stored: StoredMembers = {};
  const extra: SampleMember[] = [];
  for (const member of sample.members) {
    const field = member.ext.toLowerCase();
    if (field === 'txt') stored.txt = member.data;
    else if (field === 'json') stored.json = member.data;
    else if (SAMPLE_FIELD_NAMES.has(field)) stored.imageExt = member.ext; // a good sample has exactly one image
    else extra.push(member);
  }
  return { stored, extra };
}

/**
 * Makes OUT ready: creates it, or checks that it holds an earlier run of this same job (then
 * returns the number of leading output shards that are complete, tar and stats both present,
 * and deletes temporary files). Anything else in OUT is refused.
 */
async function prepareOut(out: string, manifest: Manifest): Promise<number> {
  // claimOutputDir made OUT and refused foreign files; the marker and locks are not outputs.
  const names = (await readdir(out)).filter((n) => !isClaimFile(n));
  if (names.length === 0) return 0;
  let previous: Manifest | null = null;
  try {
    previous = JSON.parse(await readFile(join(out, MANIFEST), 'utf8')) as Manifest;
  } catch {
    previous = null;
  }
  if (!previous || previous.format !== 'loom-reshard-job') {
    throw new LoomError(`--out ${out} is not empty and holds no earlier reshard (${MANIFEST}); choose an empty or new directory`);
  }
  const same =
    JSON.stringify(previous.inputs) === JSON.stringify(manifest.inputs) &&
    previous.selection_sha256 === manifest.selection_sha256 &&
    JSON.stringify(previous.upsample) === JSON.stringify(manifest.upsample) &&
    previous.samples_per_shard === manifest.samples_per_shard;
  if (!same) {
    throw new LoomError(`--out ${out} holds a reshard of other inputs, selection or options (${MANIFEST}); choose an empty or new directory`);
  }
  for (const n of names) if (isTempPath(n)) await rm(join(out, n), { force: true });
  const present = new Set(names);
  let complete = 0;
  while (present.has(shardFileName(complete)) && present.has(statsFileName(complete))) complete++;
  return complete;
}
