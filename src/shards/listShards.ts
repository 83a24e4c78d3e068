// Resolves shard specs (a directory, a file, or a brace range) to a list of shard paths.
import { readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { LoomError } from '../util/errors.js';
import { isTempPath } from '../util/atomic.js';

const MAX_EXPANSION = 1_000_000;

/**
 * Each spec is one of: a directory (its *.tar files, sorted by name, not recursive); a file;
 * a brace range like data/{00000000..00000009}.tar (zero padding follows the first number's
 * width; several ranges multiply). Paths are returned in spec order, each once.
 * Throws a LoomError naming the spec when something does not exist or a directory has no shards.
 */
export async function listShards(spec: string | string[]): Promise<string[]> {
  const specs = typeof spec === 'string' ? [spec] : spec;
  if (specs.length === 0) throw new LoomError('no shard paths given');
  const out: string[] = [];
  const seen = new Set<string>();
  const add = (p: string) => {
    if (!seen.has(p)) {
      seen.add(p);
      out.push(p);
    }
  };
  for (const s of specs) {
    const expanded = expandBraces(s);
    if (expanded.length > 1 || expanded[0] !== s) {
      const missing: string[] = [];
      for (const p of expanded) {
        const kind = await kindOf(p);
        if (kind === 'file') add(p);
        else missing.push(p);
      }
      if (missing.length > 0) {
        const shown = missing.slice(0, 3).join(', ') + (missing.length > 3 ? `, ... (${missing.length} in all)` : '');
        throw new LoomError(`shard range ${s}: no such file: ${shown}`);
      }
      continue;
    }
    const kind = await kindOf(s);
    if (kind === 'missing') throw new LoomError(`no such shard file or directory: ${s}`);
    if (kind === 'file') {
      add(s);
      continue;
    }
    const names = (await readdir(s, { withFileTypes: true }))
      .filter((d) => (d.isFile() || d.isSymbolicLink()) && d.name.endsWith('.tar') && !isTempPath(d.name))
      .map((d) => d.name)
      .sort();
    if (names.length === 0) throw new LoomError(`directory ${s} holds no .tar shards`);
    for (const n of names) add(join(s, n));
  }
  return out;
}

/** Expands numeric brace ranges {a..b}; text without a range comes back unchanged. */
export function expandBraces(spec: string): string[] {
  const match = /\{(\d+)\.\.(\d+)\}/.exec(spec);
  if (!match) return [spec];
  const [whole, a, b] = match as unknown as [string, string, string];
  const from = Number(a);
  const to = Number(b);
  if (to < from) throw new LoomError(`shard range ${spec}: ${a} is greater than ${b}`);
  if (to - from + 1 > MAX_EXPANSION) throw new LoomError(`shard range ${spec} names more than ${MAX_EXPANSION} files`);
  const head = spec.slice(0, match.index);
  const tails = expandBraces(spec.slice(match.index + whole.length));
  const out: string[] = [];
  for (let i = from; i <= to; i++) {
    const n = String(i).padStart(a.length, '0');
    for (const tail of tails) out.push(head + n + tail);
  }
  return out;
}

async function kindOf(path: string): Promise<'file' | 'dir' | 'missing'> {
  try {
    const s = await stat(path);
    return s.isDirectory() ? 'dir' : 'file';
  } catch {
    return 'missing';
  }
}
