// Where Loom's own files live, independent of the caller's working directory.
import { existsSync } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The repository root: compiled code runs from dist/src/util, sources from src/util. */
export function repoRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(dir, 'package.json'))) {
    const parent = dirname(dir);
    if (parent === dir) throw new Error('cannot find the Loom repository root (no package.json above the code)');
    dir = parent;
  }
  return dir;
}

/** Bundled assets (the tiny tokenizer, ...). */
export function assetsDir(): string {
  return join(repoRoot(), 'assets');
}

/** Shared test vectors read by both the TypeScript and the Python tests. */
export function vectorsDir(): string {
  return join(repoRoot(), 'vectors');
}

/** The Python interpreter for the compute plane: $LOOM_PYTHON, else the repo's .venv, else python3. */
export function pythonExecutable(): string {
  if (process.env.LOOM_PYTHON) return process.env.LOOM_PYTHON;
  const venv = resolve(repoRoot(), '.venv', 'bin', 'python');
  return existsSync(venv) ? venv : 'python3';
}

/**
 * Loom's cache of files it derives (e.g. tokenizers with an added image token): $LOOM_CACHE_DIR,
 * else $XDG_CACHE_HOME/loom, else ~/.cache/loom. Point it at shared storage for multi-node runs.
 */
export function loomCacheDir(env: NodeJS.ProcessEnv = process.env): string {
  if (env.LOOM_CACHE_DIR) return resolve(env.LOOM_CACHE_DIR);
  if (env.XDG_CACHE_HOME) return resolve(env.XDG_CACHE_HOME, 'loom');
  return join(homedir(), '.cache', 'loom');
}
