// Turns one group of tar members into a good sample or the reasons it is bad. Cheap checks
// only (names, text, json, image header); the optional full image decode happens in the reader.
import { dottedKeyDot, IMAGE_FIELDS, type BadReason, type BadSample, type Sample } from './types.js';
import type { Group, Member } from './grouping.js';
import { deriveUid, extensionProblem, isValidUid, keyProblem } from './keys.js';
import { readImageHeader } from './imageHeader.js';
import { MAX_IMAGE_PIXELS } from '../images/image.js';

const utf8 = new TextDecoder('utf-8', { fatal: true });

export interface GroupVerdict {
  bad: BadSample[];
  sample: Sample | null;
}

/**
 * `seen` holds the keys already met in this shard (a key counts as seen even when its sample was
 * bad, so a later repeat is still a duplicate).
 */
export function judgeGroup(group: Group, shard: string, seen: Set<string>): GroupVerdict {
  const bad: BadSample[] = [];
  const fail = (reason: BadReason, detail: string, key: string | null = group.key): GroupVerdict => {
    bad.push({ shard, key, reason, detail });
    return { bad, sample: null };
  };
  const plain: Member[] = [];
  const dotted = new Map<string, Member[]>();
  for (const m of group.members) {
    const dot = dottedKeyDot(m.ext);
    if (dot >= 0) {
      const intended = m.name.slice(0, m.name.length - (m.ext.length - dot));
      dotted.set(intended, [...(dotted.get(intended) ?? []), m]);
    } else plain.push(m);
  }
  for (const [intended, members] of dotted) {
    bad.push({
      shard,
      key: intended,
      reason: 'dotted_key',
      detail: `members ${names(members)}: key "${intended}" contains a dot (WebDataset keys end at the first dot)`,
    });
  }
  if (plain.length === 0) return { bad, sample: null };

  // Before anything else: a name the writer cannot store must not become a good sample that
  // aborts `loom reshard` later.
  const unsafe = keyProblem(group.key) ?? unsafeExtension(plain, group.key);
  if (unsafe) return fail('unsafe_key', `${unsafe}; members ${names(plain)} skipped`);
  if (seen.has(group.key)) return fail('duplicate_key', `key already seen earlier in this shard; members ${names(plain)} skipped`);
  seen.add(group.key);

  const images = plain.filter((m) => m.ext in IMAGE_FIELDS);
  const txt = plain.find((m) => m.ext === 'txt');
  const json = plain.find((m) => m.ext === 'json');
  if (images.length === 0) return fail('missing_image', `no .jpg/.png/.webp member (has ${names(plain)})`);
  if (images.length > 1) return fail('multiple_images', `more than one image member: ${names(images)}`);
  if (!txt) return fail('missing_caption', `no .txt member (has ${names(plain)})`);
  let caption: string;
  try {
    caption = utf8.decode(txt.data);
  } catch {
    return fail('invalid_caption', `${txt.name} is not valid UTF-8`);
  }
  if (caption.trim().length === 0) return fail('empty_caption', `${txt.name} is ${caption.length === 0 ? 'empty' : 'only whitespace'}`);
  // No .json is fine (many caption sets are image + .txt only): the metadata is {} and the uid is
  // derived, as for a json without uid.
  let meta: unknown = {};
  if (json) {
    try {
      meta = JSON.parse(utf8.decode(json.data));
    } catch (err) {
      return fail('invalid_json', `${json.name} does not parse: ${err instanceof Error ? err.message : String(err)}`);
    }
  }
  if (meta === null || typeof meta !== 'object' || Array.isArray(meta)) {
    return fail('invalid_json', `${json!.name} holds ${Array.isArray(meta) ? 'an array' : String(meta === null ? 'null' : typeof meta)}, not an object`);
  }
  const record = meta as Record<string, unknown>;
  let uid: string;
  if (record.uid === undefined) uid = deriveUid(shard, group.key);
  else if (isValidUid(record.uid)) uid = record.uid;
  else return fail('invalid_uid', `${json!.name}: uid ${JSON.stringify(record.uid)} is not 32 lowercase hex characters`);

  const image = images[0]!;
  const ext = IMAGE_FIELDS[image.ext]!;
  const header = readImageHeader(image.data);
  if (!header.ok) return fail('corrupt_image', `${image.name}: ${header.problem}`);
  if (header.format !== ext) return fail('corrupt_image', `${image.name}: the bytes are ${header.format.toUpperCase()}, not ${ext.toUpperCase()}`);
  if (header.width * header.height > MAX_IMAGE_PIXELS) {
    return fail('image_too_large', `${image.name}: ${header.width}x${header.height} is ${header.width * header.height} pixels, more than the limit of ${MAX_IMAGE_PIXELS}`);
  }
  return {
    bad,
    sample: {
      shard,
      key: group.key,
      uid,
      image: { ext, data: image.data },
      caption,
      json: record,
      imageInfo: { width: header.width, height: header.height },
    },
  };
}

/** The first member whose extension, as spelled after `{key}.`, the writer could not store. */
function unsafeExtension(members: Member[], key: string): string | null {
  for (const m of members) {
    const problem = extensionProblem(m.name.slice(key.length + 1));
    if (problem) return `member extension ${problem}`;
  }
  return null;
}

function names(members: Member[]): string {
  return members.map((m) => m.name.slice(m.name.lastIndexOf('/') + 1)).join(', ');
}

/**
 * True when the group has an image, a caption and a json member (used at an archive's cut). A
 * json-less sample is not kept there: its .json may be the member the cut took, and keeping it
 * would give it a derived uid instead of its own.
 */
export function hasAllParts(group: Group): boolean {
  const exts = new Set(group.members.map((m) => m.ext));
  return exts.has('txt') && exts.has('json') && Object.keys(IMAGE_FIELDS).some((e) => exts.has(e));
}
