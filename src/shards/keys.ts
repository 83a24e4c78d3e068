// Keys, member names, uids and shard file names: the naming rules of the shard format.
import { createHash } from 'node:crypto';
import { basename } from 'node:path';

/**
 * Splits a tar member path into WebDataset (key, extension): the key is the path up to the
 * first dot of the basename, the extension is the rest, lower-cased (webdataset's
 * base_plus_ext). Returns null for a basename without a dot (it has no field name).
 */
export function splitMemberName(path: string): { key: string; ext: string } | null {
  const match = MEMBER_NAME_RE.exec(path);
  if (!match || match[2] === '') return null;
  return { key: match[1]!, ext: match[2]!.toLowerCase() };
}

// webdataset's own pattern (base_plus_ext), so both sides split every name the same way.
const MEMBER_NAME_RE = /^((?:.*\/|)[^.]+)[.]([^/]*)$/;

const UID_RE = /^[0-9a-f]{32}$/;

/** True for a DataComp-style uid: exactly 32 lowercase hex characters. */
export function isValidUid(value: unknown): value is string {
  return typeof value === 'string' && UID_RE.test(value);
}

/**
 * The uid of a sample whose json has none: md5 of "<shard file basename>/<key>" in lowercase hex,
 * e.g. md5("00000003.tar/000030017"). Keys are unique within a shard and shard names within a
 * dataset, so derived uids do not collide even when every shard numbers its keys from 0.
 * Loom's writer stores the uid in the json, so a uid survives resharding and renaming.
 */
export function deriveUid(shardPath: string, key: string): string {
  return createHash('md5').update(`${basename(shardPath)}/${key}`, 'utf8').digest('hex');
}

/**
 * Longest key the format allows, in UTF-8 bytes, and longest path part: `{part}.{ext}` must stay
 * a legal file name (255 bytes on common file systems) when a shard is unpacked with `tar -x`,
 * and a copy's key may still grow by a suffix (`loom reshard`'s `_u{j}`, `{shard}_` prefix).
 */
export const MAX_KEY_BYTES = 512;
export const MAX_KEY_PART_BYTES = 200;

/**
 * Why `key` cannot be written as a sample key, or null when it can. The one rule of what a key
 * may be: the writer refuses such keys, and the readers report them as `unsafe_key`, so a hostile
 * name is a skipped sample at read time instead of an abort at write time.
 */
export function keyProblem(key: string): string | null {
  if (typeof key !== 'string' || key.length === 0) return 'the key is empty';
  const shown = JSON.stringify(key);
  // eslint-disable-next-line no-control-regex
  if (/[\u0000-\u001f\u007f\\]/.test(key)) return `key ${shown} contains a control character or backslash`;
  // U+FFFD is what a name that is not UTF-8 decodes to; the bytes it stood for are lost.
  if (/[\ufffd\ud800-\udfff]/.test(key)) return `key ${shown} is not valid UTF-8`;
  if (key.startsWith('/')) return `key ${shown} is an absolute path`;
  if (key.split('/').some((part) => part === '' || part === '.' || part === '..')) return `key ${shown} has an empty, "." or ".." path part`;
  // A dot in a folder part reads back fine ("v1.2/k"); in the last part it would end the key early.
  if (key.slice(key.lastIndexOf('/') + 1).includes('.')) return `key ${shown} contains a dot in its last part (the first dot there separates key and extension)`;
  const bytes = Buffer.byteLength(key, 'utf8');
  if (bytes > MAX_KEY_BYTES) return `key of ${bytes} bytes is longer than ${MAX_KEY_BYTES} bytes (starts ${JSON.stringify(key.slice(0, 40))})`;
  const long = key.split('/').find((part) => Buffer.byteLength(part, 'utf8') > MAX_KEY_PART_BYTES);
  if (long !== undefined) return `key ${shown} has a path part longer than ${MAX_KEY_PART_BYTES} bytes`;
  return null;
}

/**
 * Why a member extension (the name after `{key}.`) cannot be written, or null. Shared by the
 * writer (extra members) and the readers (`unsafe_key`) for the same reason as keyProblem.
 */
export function extensionProblem(ext: string): string | null {
  if (ext.length === 0) return 'has an empty extension';
  // eslint-disable-next-line no-control-regex
  if (/[/\\\u0000-\u001f\u007f]/.test(ext)) return `${JSON.stringify(ext)}: an extension cannot hold "/", a backslash or a control character`;
  if (/[\ufffd\ud800-\udfff]/.test(ext)) return `${JSON.stringify(ext)}: the extension is not valid UTF-8`;
  return null;
}

/** "00000042.tar" for shard 42 (img2dataset / DataComp naming). */
export function shardFileName(index: number): string {
  return `${String(index).padStart(8, '0')}.tar`;
}

/** "00000042_stats.json", the sidecar of shard 42. */
export function statsFileName(index: number): string {
  return `${String(index).padStart(8, '0')}_stats.json`;
}

/** The sidecar path for a shard path ending in ".tar". */
export function statsPathFor(shardPath: string): string {
  return shardPath.replace(/\.tar$/, '') + '_stats.json';
}
