// Leftovers of killed runs: temporary siblings made by tempPathFor (files, or a sorter's spill
// folder) that no live process owns. A run killed by SIGKILL or a power cut cannot clean up
// after itself, so the next run writing the same target does it.
import { readdir, rm } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';

/**
 * Removes `.{name}.tmp-<pid>-<hex>` and `.{name}{suffix}.tmp-<pid>-<hex>` beside `target` whose
 * pid is no running process. Only that exact naming is touched (nothing a user made by hand
 * matches it), and a live pid, such as a concurrent run's, is left alone. Returns what was removed.
 */
export async function removeStaleTemps(target: string, suffixes: readonly string[] = []): Promise<string[]> {
  const dir = dirname(target);
  const stems = ['', ...suffixes].map((s) => escapeRe(`.${basename(target)}${s}`));
  const pattern = new RegExp(`^(?:${stems.join('|')})\\.tmp-(\\d+)-[0-9a-f]{8}$`);
  let names: string[];
  try {
    names = await readdir(dir);
  } catch {
    return []; // no folder yet: nothing left over
  }
  const removed: string[] = [];
  for (const name of names) {
    const match = pattern.exec(name);
    if (!match || isAlive(Number(match[1]))) continue;
    await rm(join(dir, name), { recursive: true, force: true });
    removed.push(join(dir, name));
  }
  return removed;
}

function isAlive(pid: number): boolean {
  if (pid === process.pid) return true;
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    // EPERM: the process exists but belongs to someone else.
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function escapeRe(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}
