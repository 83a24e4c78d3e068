// The paths the inference commands take, checked before a worker starts so that a typo costs no
// model load: the model (a Loom export, or a run directory holding one), an image, an output folder.
// Only the presence of loom.json is checked here; what is inside it is Python's to read
// (loom_compute/model/export_dir.py is the one reader of that layout).
import { existsSync, readdirSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { LoomError, EXIT_USAGE } from '../util/errors.js';

export const EXPORT_INFO = 'loom.json';

function isDir(path: string): boolean {
  return existsSync(path) && statSync(path).isDirectory();
}

/**
 * The absolute export folder `path` names: the folder itself when it holds loom.json, or
 * `path/export` when `path` is a run directory (runs/<name>) whose export holds one.
 */
export function resolveExportDir(path: string, flag: string, cwd = process.cwd()): string {
  const dir = resolve(cwd, path);
  if (!existsSync(dir)) throw new LoomError(`${flag} ${path}: no such directory`, EXIT_USAGE);
  if (!isDir(dir)) throw new LoomError(`${flag} ${path}: not a directory; give a Loom export (runs/<name>/export) or a run directory`, EXIT_USAGE);
  if (existsSync(join(dir, EXPORT_INFO))) return dir;
  const inner = join(dir, 'export');
  if (existsSync(join(inner, EXPORT_INFO))) return inner;
  const hint = existsSync(join(dir, 'config.json')) && !existsSync(inner)
    ? ' (it looks like a run directory whose training has not written export/ yet)'
    : existsSync(join(dir, 'config.json'))
      ? ' (a llava-hf or other Hugging Face folder? bring it in with `loom import --format llava-hf`)'
      : '';
  throw new LoomError(
    `${flag} ${path}: not a Loom export: neither ${join(path, EXPORT_INFO)} nor ${join(path, 'export', EXPORT_INFO)} exists${hint}; ` +
      'give runs/<name>/export, the run directory, or a folder written by `loom import`',
    EXIT_USAGE,
  );
}

/** The absolute path of an existing file (an image, a prompts file), or a LoomError naming it. */
export function requireFile(path: string, what: string, cwd = process.cwd()): string {
  const file = resolve(cwd, path);
  if (!existsSync(file)) throw new LoomError(`${what} ${path}: no such file`, EXIT_USAGE);
  if (!statSync(file).isFile()) throw new LoomError(`${what} ${path}: not a file`, EXIT_USAGE);
  return file;
}

/** An image is checked for existence only: decoding it is the worker's (it reports what it cannot read). */
export const requireImage = requireFile;

/**
 * An output folder a converter may replace as a whole (the Python writers build `<out>.tmp` and
 * swap it in): it must not exist yet, be empty, or hold an earlier output of the same kind, so a
 * mistyped --out never replaces someone's files.
 */
export function requireReplaceableOutput(path: string, flag: string, isEarlierOutput: (names: string[]) => boolean, kind: string, cwd = process.cwd()): string {
  const dir = resolve(cwd, path);
  if (!existsSync(dir)) return dir;
  if (!isDir(dir)) throw new LoomError(`${flag} ${path} exists and is not a directory`, EXIT_USAGE);
  const names = readdirSync(dir);
  if (names.length === 0 || isEarlierOutput(names)) return dir;
  const shown = names.slice(0, 3).map((n) => JSON.stringify(n)).join(', ');
  throw new LoomError(
    `${flag} ${path} holds files that are not ${kind} (${shown}${names.length > 3 ? `, and ${names.length - 3} more` : ''}); ` +
      'the output folder is replaced as a whole, so choose a new or empty one (nothing was written)',
    EXIT_USAGE,
  );
}

/** True when `inner` is `outer` or lies inside it. */
export function isInside(inner: string, outer: string): boolean {
  const a = resolve(inner);
  const b = resolve(outer);
  return a === b || a.startsWith(b.endsWith('/') ? b : `${b}/`);
}
