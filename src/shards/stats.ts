// The per-shard sidecar {:08d}_stats.json: img2dataset's field names first (so tools that read
// img2dataset output read ours), Loom's own fields under "loom".
import { readFile } from 'node:fs/promises';
import type { ImageExt } from './types.js';
import { statsPathFor } from './keys.js';

export interface ShardStats {
  /** Samples attempted for this shard: successes plus failures. */
  count: number;
  successes: number;
  failed_to_download: number;
  failed_to_resize: number;
  /** img2dataset's per-status tally: "success" plus one entry per failure reason. */
  status_dict: Record<string, number>;
  loom: {
    format: 'loom-shard-stats';
    version: 1;
    shard: string;
    samples: number;
    tar_bytes: number;
    image_formats: Partial<Record<ImageExt, number>>;
    caption_chars: { min: number; max: number; total: number };
    first_key: string | null;
    last_key: string | null;
    failures: Record<string, number>;
  };
}

/** Reads a sidecar; null when it is absent or unreadable (it is advisory, the tar is the truth). */
export async function readShardStats(path: string): Promise<ShardStats | null> {
  try {
    const value = JSON.parse(await readFile(path, 'utf8')) as Partial<ShardStats>;
    return typeof value.successes === 'number' && typeof value.count === 'number' ? (value as ShardStats) : null;
  } catch {
    return null;
  }
}

/** Good samples in these shards per their _stats.json sidecars (for progress totals), or undefined when any is missing. */
export async function samplesFromStats(shardPaths: string[]): Promise<number | undefined> {
  let total = 0;
  for (const path of shardPaths) {
    const stats = await readShardStats(statsPathFor(path));
    if (!stats) return undefined;
    total += stats.successes;
  }
  return total;
}
