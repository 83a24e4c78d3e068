// Score sidecars (written by the Python scorers): SCORES/{shard_stem}.{scorer}.parquet with
// columns uid, key and one float column per score, and a `loom` JSON entry in the key-value
// metadata counting the shard's bad samples. Read with hyparquet (pure JS).
import { open, readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { brotliDecompressSync, gunzipSync } from 'node:zlib';
import { parquetMetadata, parquetRead, type Compressors, type FileMetaData } from 'hyparquet';
import { LoomError } from '../util/errors.js';
import { isTempPath } from '../util/atomic.js';
import { isValidUid } from '../shards/keys.js';

const SIDECAR_RE = /^(.+)\.([a-z][a-z0-9_-]*)\.parquet$/;

export interface SidecarIndex {
  dir: string;
  /** shard stem -> scorer -> sidecar path. */
  shards: Map<string, Map<string, string>>;
  /** Every scorer name seen, sorted. */
  scorers: string[];
}

/** Lists SCORES/{stem}.{scorer}.parquet (temporary files skipped); shard stems sorted. */
export async function listSidecars(dir: string): Promise<SidecarIndex> {
  let names: string[];
  try {
    names = (await readdir(dir, { withFileTypes: true })).filter((d) => d.isFile() || d.isSymbolicLink()).map((d) => d.name);
  } catch (err) {
    throw new LoomError(`--scores ${dir}: cannot list the directory (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`);
  }
  const shards = new Map<string, Map<string, string>>();
  const scorers = new Set<string>();
  for (const name of names.sort()) {
    if (isTempPath(name)) continue;
    const m = SIDECAR_RE.exec(name);
    if (!m) continue;
    const [, stem, scorer] = m as unknown as [string, string, string];
    if (!shards.has(stem)) shards.set(stem, new Map());
    shards.get(stem)!.set(scorer, join(dir, name));
    scorers.add(scorer);
  }
  return { dir, shards: new Map([...shards].sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0))), scorers: [...scorers].sort() };
}

export interface SidecarMeta {
  scorer?: string;
  model?: string;
  shard?: string;
  samples?: number;
  bad?: number;
  bad_by_reason?: Record<string, number>;
  columns?: string[];
}

export interface SidecarData {
  path: string;
  /** Rows in the file. */
  rows: number;
  /** One uid per good row, in the shard's tar order (rows with an invalid uid are dropped). */
  uids: string[];
  /** Requested score columns; null scores become NaN. */
  columns: Map<string, Float64Array>;
  /** Requested columns stored as float32 (thresholds are compared at that precision). */
  float32Columns: Set<string>;
  meta: SidecarMeta | null;
  /** Rows whose uid is not 32 lowercase hex characters (skipped and counted). */
  invalidUidRows: number;
  /** Rows with the same uid as an earlier row (the later rows are skipped and counted). */
  duplicateUidRows: number;
}

function parseLoomMeta(path: string, metadata: FileMetaData): SidecarMeta | null {
  const entry = metadata.key_value_metadata?.find((kv) => kv.key === 'loom');
  if (!entry?.value) return null;
  try {
    const value = JSON.parse(entry.value) as SidecarMeta & { format?: string };
    if (value === null || typeof value !== 'object') throw new Error('not an object');
    return value;
  } catch (err) {
    throw new LoomError(`${path}: metadata key 'loom' is not valid JSON (${(err as Error).message})`);
  }
}

// hyparquet decodes uncompressed and SNAPPY (pyarrow's default) itself; node's zlib adds GZIP and
// BROTLI. ZSTD and LZ4 would need another package (hyparquet-compressors): refused by name.
const COMPRESSORS: Compressors = {
  GZIP: (input) => new Uint8Array(gunzipSync(input)),
  BROTLI: (input) => new Uint8Array(brotliDecompressSync(input)),
};
const SUPPORTED_CODECS = new Set(['UNCOMPRESSED', 'SNAPPY', 'GZIP', 'BROTLI']);

function checkCodecs(path: string, metadata: FileMetaData, columns: string[]): void {
  for (const group of metadata.row_groups) {
    for (const chunk of group.columns) {
      const name = chunk.meta_data?.path_in_schema.join('.');
      const codec = chunk.meta_data?.codec;
      if (name !== undefined && columns.includes(name) && codec !== undefined && !SUPPORTED_CODECS.has(codec)) {
        throw new LoomError(`${path}: column '${name}' is compressed with ${codec}, which Loom's reader does not decode; write sidecars with compression 'snappy' (pyarrow's default), 'gzip' or 'brotli'`);
      }
    }
  }
}

/** Number of rows, read from the parquet footer only. */
export async function sidecarRowCount(path: string): Promise<number> {
  let handle;
  try {
    handle = await open(path, 'r');
  } catch (err) {
    throw new LoomError(`${path}: cannot read the score sidecar (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`);
  }
  try {
    const { size } = await handle.stat();
    const tail = Buffer.alloc(8);
    if (size >= 12) await handle.read(tail, 0, 8, size - 8);
    const footer = tail.readUInt32LE(0);
    if (size < 12 || tail.toString('latin1', 4) !== 'PAR1' || footer + 8 > size) {
      throw new LoomError(`${path}: not a parquet file (no PAR1 footer)`);
    }
    const bytes = Buffer.alloc(footer + 8);
    await handle.read(bytes, 0, bytes.length, size - bytes.length);
    return Number(parseMetadata(path, bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.length) as ArrayBuffer).num_rows);
  } finally {
    await handle.close();
  }
}

async function readSidecarBytes(path: string): Promise<ArrayBuffer> {
  let buf: Buffer;
  try {
    buf = await readFile(path);
  } catch (err) {
    throw new LoomError(`${path}: cannot read the score sidecar (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`);
  }
  return buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength) as ArrayBuffer;
}

function parseMetadata(path: string, bytes: ArrayBuffer): FileMetaData {
  try {
    return parquetMetadata(bytes);
  } catch (err) {
    throw new LoomError(`${path}: not a readable parquet file (${(err as Error).message})`);
  }
}

/** Reads uid and the given score columns of one sidecar; names the file and column on any problem. */
export async function readSidecar(path: string, columns: Iterable<string>, options: { uids?: boolean } = {}): Promise<SidecarData> {
  // Without uids (the quantile pass), rows are not deduplicated and uids comes back empty.
  const withUids = options.uids ?? true;
  const bytes = await readSidecarBytes(path);
  const metadata = parseMetadata(path, bytes);
  const meta = parseLoomMeta(path, metadata);
  const available = metadata.schema.slice(1).map((s) => s.name);
  const wanted = [...columns];
  for (const c of [...(withUids ? ['uid'] : []), ...wanted]) {
    if (!available.includes(c)) {
      throw new LoomError(`${path}: no column '${c}' (columns: ${available.join(', ')})`);
    }
  }
  checkCodecs(path, metadata, withUids ? ['uid', ...wanted] : wanted);
  const rows = Number(metadata.num_rows);
  const rawUids: unknown[] = new Array(rows);
  const values = new Map<string, Float64Array>(wanted.map((c) => [c, new Float64Array(rows).fill(NaN)]));
  try {
    await parquetRead({
      file: bytes,
      metadata,
      compressors: COMPRESSORS,
      columns: withUids ? ['uid', ...wanted] : wanted,
      onChunk(chunk) {
        const end = Math.min(chunk.rowEnd, rows);
        if (chunk.columnName === 'uid') {
          for (let r = chunk.rowStart; r < end; r++) rawUids[r] = chunk.columnData[r - chunk.rowStart];
          return;
        }
        const out = values.get(chunk.columnName);
        if (!out) return;
        for (let r = chunk.rowStart; r < end; r++) {
          const v = chunk.columnData[r - chunk.rowStart] as unknown;
          out[r] = typeof v === 'number' ? v : typeof v === 'bigint' ? Number(v) : NaN;
        }
      },
    });
  } catch (err) {
    throw new LoomError(`${path}: cannot decode the parquet data (${(err as Error).message})`);
  }
  for (const c of wanted) {
    const kind = metadata.schema.find((s) => s.name === c)?.type;
    if (kind !== 'FLOAT' && kind !== 'DOUBLE' && kind !== 'INT32' && kind !== 'INT64') {
      throw new LoomError(`${path}: column '${c}' holds ${kind ?? 'nested'} values, not numbers`);
    }
  }
  const float32Columns = new Set(wanted.filter((c) => metadata.schema.find((s) => s.name === c)?.type === 'FLOAT'));
  if (!withUids) return { path, uids: [], columns: values, float32Columns, meta, invalidUidRows: 0, duplicateUidRows: 0, rows };
  // Drop bad uids and repeated uids, keeping rows aligned with the score columns.
  const seen = new Set<string>();
  const keep: number[] = [];
  let invalid = 0;
  let duplicate = 0;
  for (let r = 0; r < rows; r++) {
    const u = rawUids[r];
    if (!isValidUid(u)) invalid++;
    else if (seen.has(u)) duplicate++;
    else {
      seen.add(u);
      keep.push(r);
    }
  }
  const uids = keep.map((r) => rawUids[r] as string);
  if (keep.length !== rows) {
    for (const [c, arr] of values) values.set(c, Float64Array.from(keep, (r) => arr[r]!));
  }
  return { path, rows, uids, columns: values, float32Columns, meta, invalidUidRows: invalid, duplicateUidRows: duplicate };
}
