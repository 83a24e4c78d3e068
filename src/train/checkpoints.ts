// Which checkpoints a run directory holds, by the worker's rule (loom_compute.train.checkpoint):
// `loom train` refuses to start a fresh run over a run that has one.
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';

/** The `step_*` checkpoint directories under `dir`, sorted (none when `dir` does not exist). */
export function checkpointDirs(dir: string): string[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir, { withFileTypes: true })
    // The worker's rule: a complete checkpoint is step_NNNNNNNN/ with its trainer.json (a .tmp is a killed save).
    .filter((entry) => entry.isDirectory() && /^step_\d{8}$/.test(entry.name) && existsSync(join(dir, entry.name, 'trainer.json')))
    .map((entry) => entry.name)
    .sort();
}
