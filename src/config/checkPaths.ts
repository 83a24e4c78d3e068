// Local files a config names, checked when the config is made: a typo in a path should fail at
// `loom config init`, naming the key, not minutes later inside pack or the trainer.
import { statSync } from 'node:fs';
import { LoomError } from '../util/errors.js';
import type { RunConfig } from './schema.js';

/** Throws a LoomError when tokenizer.path names no readable file. */
export function checkConfigPaths(config: RunConfig): void {
  const path = config.tokenizer.path;
  if (path === null) return; // the LLM checkpoint's own tokenizer, fetched with the model
  let isFile = false;
  try {
    isFile = statSync(path).isFile();
  } catch {
    throw new LoomError(`tokenizer.path: ${path} does not exist (set --set tokenizer.path=PATH/tokenizer.json, or null to use the LLM checkpoint's)`);
  }
  if (!isFile) throw new LoomError(`tokenizer.path: ${path} is not a file (it should name a tokenizer.json)`);
}
