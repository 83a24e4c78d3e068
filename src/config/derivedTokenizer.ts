// A run whose tokenizer lacks tokenizer.image_token (a real Qwen2.5 checkpoint's) gets a derived
// tokenizer.json with the token added (src/tokenize/imageToken.ts), and the resolved config points
// at it. The derived file is stored under its own sha256 in Loom's cache
// (<cache>/tokenizers/<sha256>/tokenizer.json, see loomCacheDir), so:
// - pack and train, resolving the same preset and --set on their own, name the same file and hash;
// - two runs sharing a config, and reruns, write nothing new (the same source gives the same bytes);
// - a concurrent writer can only rename identical bytes over identical bytes (temp + rename).
// The export copies tokenizer.path, so every export carries the token.
import { createHash } from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { LoomError } from '../util/errors.js';
import { writeFileAtomicSync } from '../util/atomic.js';
import { addImageToken, NotJsonError, type ImageTokenRoles } from '../tokenize/imageToken.js';
import type { RunConfig } from './schema.js';

/** What resolution did when it derived a tokenizer (for a note to the user). */
export interface DerivedTokenizerNote {
  source: string;
  path: string;
  image_token: string;
  id: number;
}

/** Where a derived tokenizer with these bytes lives in the cache. */
export function derivedTokenizerPath(cacheDir: string, text: string): string {
  return join(cacheDir, 'tokenizers', createHash('sha256').update(text, 'utf8').digest('hex'), 'tokenizer.json');
}

/** Writes `text` to its content-addressed path unless an identical file is there already; returns the path. */
export function storeDerivedTokenizer(cacheDir: string, text: string): string {
  const path = derivedTokenizerPath(cacheDir, text);
  let same = false;
  try {
    same = readFileSync(path, 'utf8') === text;
  } catch {
    // absent (or unreadable): write it
  }
  if (!same) {
    try {
      writeFileAtomicSync(path, text);
    } catch (error) {
      throw new LoomError(`cannot write the derived tokenizer ${path}: ${(error as Error).message} (set LOOM_CACHE_DIR to a writable folder)`);
    }
  }
  return path;
}

/**
 * The config with tokenizer.path pointing at a tokenizer that has tokenizer.image_token: unchanged
 * when the file already has it (or there is no readable file: the consumers report that), else the
 * derived tokenizer in `cacheDir`. Throws a LoomError when the token cannot be added (see addImageToken).
 */
export function withImageToken(config: RunConfig, cacheDir: string, onDerived?: (note: DerivedTokenizerNote) => void): RunConfig {
  const source = config.tokenizer.path;
  if (source === null) return config;
  let text: string;
  try {
    if (!statSync(source).isFile()) return config;
    text = readFileSync(source, 'utf8');
  } catch {
    return config;
  }
  let derived: ReturnType<typeof addImageToken>;
  try {
    derived = addImageToken(text, config.tokenizer, `tokenizer.path ${source}`);
  } catch (error) {
    // Not a tokenizer.json at all: leave the verdict to the tokenizer loader, as before.
    if (error instanceof NotJsonError) return config;
    throw new LoomError((error as Error).message);
  }
  if (!derived.added) return config;
  const path = storeDerivedTokenizer(cacheDir, derived.text);
  onDerived?.({ source, path, image_token: config.tokenizer.image_token, id: derived.id });
  return { ...config, tokenizer: { ...config.tokenizer, path } };
}

export interface WrittenTokenizer {
  source: string;
  out: string;
  image_token: string;
  id: number;
  added: boolean;
  sha256: string;
}

/** `loom tokenizer add-image-token`: the source tokenizer.json with the image token, written atomically to `out`. */
export function writeTokenizerWithImageToken(source: string, out: string, roles: ImageTokenRoles): WrittenTokenizer {
  let text: string;
  try {
    text = readFileSync(source, 'utf8');
  } catch (error) {
    throw new LoomError(`cannot read tokenizer ${source}: ${(error as Error).message}`);
  }
  let derived: ReturnType<typeof addImageToken>;
  try {
    derived = addImageToken(text, roles, source);
  } catch (error) {
    throw new LoomError((error as Error).message);
  }
  writeFileAtomicSync(out, derived.text);
  const sha256 = createHash('sha256').update(derived.text, 'utf8').digest('hex');
  return { source, out, image_token: roles.image_token, id: derived.id, added: derived.added, sha256 };
}
