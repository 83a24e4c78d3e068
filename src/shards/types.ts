// The shapes shared by everything that reads or writes raw/curated WebDataset shards
// (img2dataset / DataComp layout: {key}.jpg|png|webp, {key}.txt, {key}.json, and any other
// members such as {key}.npy or {key}.cls).

export type ImageExt = 'jpg' | 'png' | 'webp';

export const IMAGE_EXTS: readonly ImageExt[] = ['jpg', 'png', 'webp'];

/** Image field name (lower-cased extension) -> the format it names. */
export const IMAGE_FIELDS: Readonly<Record<string, ImageExt>> = { jpg: 'jpg', jpeg: 'jpg', png: 'png', webp: 'webp' };

/** The field names (lower-cased extensions) that make up a sample's image, caption and json;
 *  any other member ("npy", "cls", "b.npy") is carried along as it is. */
export const SAMPLE_FIELD_NAMES: ReadonlySet<string> = new Set([...Object.keys(IMAGE_FIELDS), 'txt', 'json']);

/**
 * Where a member's extension splits off a dotted key: for "b.jpg" (member "a.b.jpg") the index of
 * its last dot, since the writer meant key "a.b" while WebDataset reads key "a", field "b.jpg";
 * -1 when the part after the last dot is no sample field ("npy", "emb.npy").
 */
export function dottedKeyDot(ext: string): number {
  const dot = ext.lastIndexOf('.');
  return dot >= 0 && SAMPLE_FIELD_NAMES.has(ext.slice(dot + 1)) ? dot : -1;
}

/** One member of a sample as stored: its extension as spelled after the key's dot, and its bytes. */
export interface SampleMember {
  /** "jpg", "JPEG", "npy", "b.npy": the member name after `{key}.`, case kept (WebDataset
   *  lower-cases it to get the field name). */
  ext: string;
  data: Buffer;
}

/** One good image-caption pair. */
export interface Sample {
  /** Path of the shard file it came from. */
  shard: string;
  /** WebDataset key: the member path up to the first dot of its basename. */
  key: string;
  /** 32 lowercase hex chars: json.uid, or derived from the shard name and key (see deriveUid). */
  uid: string;
  image: { ext: ImageExt; data: Buffer };
  caption: string;
  /** The sample's metadata exactly as stored (a derived uid is not added here); {} when the
   *  sample has no .json member. */
  json: Record<string, unknown>;
  /** Pixel size: from a full decode when decodeImages is on, else from the image header. */
  imageInfo?: { width: number; height: number };
  /** Every member of the sample in tar order, bytes untouched: image, .txt, .json and the others
   *  (`.npy` embeddings, `.cls`, ...), not those of a dotted key ("a.b.jpg"). Set only when read
   *  with `members: true`. */
  members?: SampleMember[];
}

/** Why a sample (or a whole file) was skipped. */
export const BAD_REASONS = [
  'not_a_tar', // the file (or an empty file) has no readable tar header at its start
  'truncated_tar', // the archive ends mid-member or without its end-of-archive marker
  'corrupt_tar', // an unreadable tar header after some good members; the rest of the file is skipped
  'unreadable_file', // the operating system refused to read the file
  'dotted_key', // members like a.b.jpg: the intended key "a.b" contains a dot
  'unsafe_key', // a key or extension the writer cannot store safely (keys.ts keyProblem / extensionProblem)
  'duplicate_key', // a key seen earlier in the same shard
  'missing_extension', // a member whose basename has no dot, so it has no field name
  'missing_image', // no .jpg/.jpeg/.png/.webp member
  'multiple_images', // more than one image member
  'missing_caption',
  'empty_caption', // empty or whitespace-only .txt
  'invalid_caption', // .txt that is not valid UTF-8
  'invalid_json', // .json that does not parse, or is not an object
  'invalid_uid', // json.uid present but not 32 lowercase hex chars
  'corrupt_image', // bytes are not the declared format, or fail to decode
  'image_too_large', // the header declares more than MAX_IMAGE_PIXELS pixels (checked before any decode)
  'truncated_image', // the image ends early (detected by a full decode)
] as const;

export type BadReason = (typeof BAD_REASONS)[number];

export interface BadSample {
  shard: string;
  /** The sample's key; null when the problem concerns the whole file or no key is known. */
  key: string | null;
  reason: BadReason;
  /** A human-readable explanation naming the member(s) involved. */
  detail: string;
}

export type ShardItem = { kind: 'sample'; sample: Sample } | { kind: 'bad'; bad: BadSample };

export interface ReadOptions {
  /** Fully decode every image (catches truncated/corrupt pixels; see decode.ts). Default false:
   *  only the header is checked (format signature and size), the pixel data is trusted. */
  decodeImages?: boolean;
  /** How many decodes may be in flight at once (decodeImages only). Default 64. */
  decodeConcurrency?: number;
  /** Also give each sample's members as stored (Sample.members), for faithful copies. Default false. */
  members?: boolean;
}
