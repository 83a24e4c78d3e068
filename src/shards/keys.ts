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

/** Why `key` cannot be written as a sample key, or null when it can. */
export function keyProblem(key: string): string | null {
  if (typeof key !== 'string' || key.length === 0) return 'the key is empty';
  if (key.includes('.')) return `key "${key}" contains a dot (the first dot separates key and extension)`;
  if (key.startsWith('/') || key.endsWith('/') || key.includes('//')) return `key "${key}" is not a relative path`;
  if (key.split('/').some((part) => part === '' || part === '..')) return `key "${key}" has an empty or ".." path part`;
  // eslint-disable-next-line no-control-regex
  if (/[\u0000-\u001f\u007f\\]/.test(key)) return `key "${key}" contains a control character or backslash`;
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
