// Where Loom's own files live, independent of the caller's working directory.
import { existsSync } from 'node:fs';
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
