// What the producer of the shards (img2dataset, or Loom's writer) lost before the tar was
// written: its _stats.json sidecars count failed downloads and resizes, which no reader can see
// in the tar. `loom inspect` shows them beside its own bad-sample counts.
import { readFile } from 'node:fs/promises';
import { statsPathFor } from './keys.js';

export interface UpstreamStats {
  /** Shards with a readable _stats.json, and those without one. */
  shardsWithStats: number;
  shardsWithoutStats: number;
  /** Samples the producer attempted, and those it wrote. */
  count: number;
  successes: number;
  failed_to_download: number;
  failed_to_resize: number;
  /** img2dataset's status_dict summed: "success" and one entry per error text. */
  status: Record<string, number>;
}

/** Sums the sidecars of these shards; fields that are absent or not counts are skipped. */
export async function readUpstreamStats(shardPaths: string[]): Promise<UpstreamStats> {
  const out: UpstreamStats = { shardsWithStats: 0, shardsWithoutStats: 0, count: 0, successes: 0, failed_to_download: 0, failed_to_resize: 0, status: {} };
  for (const path of shardPaths) {
    const stats = await readSidecar(statsPathFor(path));
    if (!stats) {
      out.shardsWithoutStats++;
      continue;
    }
    out.shardsWithStats++;
    for (const field of ['count', 'successes', 'failed_to_download', 'failed_to_resize'] as const) out[field] += countOf(stats[field]);
    const status = stats.status_dict;
    if (status !== null && typeof status === 'object' && !Array.isArray(status)) {
      for (const [name, n] of Object.entries(status as Record<string, unknown>)) {
        if (isCount(n)) out.status[name] = (out.status[name] ?? 0) + n;
      }
    }
  }
  return out;
}

async function readSidecar(path: string): Promise<Record<string, unknown> | null> {
  try {
    const value: unknown = JSON.parse(await readFile(path, 'utf8'));
    return value !== null && typeof value === 'object' && !Array.isArray(value) ? (value as Record<string, unknown>) : null;
  } catch {
    return null; // absent or unreadable: sidecars are advisory
  }
}

function isCount(n: unknown): n is number {
  return typeof n === 'number' && Number.isSafeInteger(n) && n >= 0;
}

function countOf(n: unknown): number {
  return isCount(n) ? n : 0;
}
