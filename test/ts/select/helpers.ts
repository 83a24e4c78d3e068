// Test helpers for selection: score sidecars written by the real pyarrow (as the Python scorers
// write them), and temporary directories.
import { spawnSync } from 'node:child_process';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createHash } from 'node:crypto';
import { pythonExecutable } from '../../../src/util/paths.js';

export interface SidecarSpec {
  path: string;
  uids: string[];
  keys?: string[];
  columns: Record<string, Array<number | null>>;
  /** The `loom` key-value metadata; omitted when null. */
  meta?: Record<string, unknown> | null;
  /** Rows per parquet row group (to exercise several chunks). */
  rowGroupSize?: number;
  /** Parquet compression codec (pyarrow's default: snappy). */
  compression?: string;
}

const WRITER = `
import json, sys
import pyarrow as pa, pyarrow.parquet as pq
for spec in json.load(sys.stdin):
    keys = spec.get('keys') or [str(i) for i in range(len(spec['uids']))]
    arrays = {'uid': pa.array(spec['uids'], pa.string()), 'key': pa.array(keys, pa.string())}
    for name, values in spec['columns'].items():
        arrays[name] = pa.array(values, pa.float32())
    table = pa.table(arrays)
    if spec.get('meta') is not None:
        table = table.replace_schema_metadata({'loom': json.dumps(spec['meta'])})
    pq.write_table(table, spec['path'], row_group_size=spec.get('rowGroupSize') or None, compression=spec.get('compression') or 'snappy')
`;

/** Writes the sidecars with pyarrow (float32 score columns, snappy, like the Python scorers). */
export function writeSidecars(specs: SidecarSpec[]): void {
  const run = spawnSync(pythonExecutable(), ['-c', WRITER], { input: JSON.stringify(specs), encoding: 'utf8', maxBuffer: 1 << 26 });
  if (run.status !== 0) throw new Error(`pyarrow writer failed: ${run.stderr}`);
}

export function tempDir(prefix: string): Promise<string> {
  return mkdtemp(join(tmpdir(), `loom-select-${prefix}-`));
}

/** A deterministic uid for test row i of some namespace. */
export function testUid(ns: string, i: number): string {
  return createHash('md5').update(`${ns}/${i}`).digest('hex');
}

/** Rounds like float32 storage does, so expected values match what the sidecar holds. */
export function f32(x: number): number {
  return Math.fround(x);
}

/** Runs Python code with stdin, returns stdout; throws with stderr on failure. */
export function python(code: string, input = ''): string {
  const run = spawnSync(pythonExecutable(), ['-c', code], { input, encoding: 'utf8', maxBuffer: 1 << 26 });
  if (run.status !== 0) throw new Error(`python failed: ${run.stderr}`);
  return run.stdout;
}
