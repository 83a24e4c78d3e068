// Is a folder the output of `loom pack`? Checked before the trainer starts, so that pointing
// --packed at raw shards or an empty folder is one clear line, not a Python traceback after
// the worker (and maybe torchrun) has started.
import { closeSync, existsSync, openSync, readdirSync, readSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { LoomError, EXIT_USAGE } from '../util/errors.js';
import type { RunConfig } from '../config/schema.js';
import { PACK_META_MEMBER } from '../pack/packedShard.js';
import { PACK_REPORT_FILE } from '../pack/run.js';

/**
 * The packed shards as the writer names them (windowDirName, shardFileName) and the trainer lists
 * them (loom_compute.data.packed.packed_shard_paths): w??????/????????.tar.
 */
const WINDOW_DIR_RE = /^w\d{6}$/;
const SHARD_NAME_RE = /^\d{8}\.tar$/;

/** Throws a LoomError unless the config's data.packed is set and is a finished pack. */
export function requirePackedDir(config: RunConfig): void {
  const packed = config.data.packed;
  if (packed === null) {
    throw new LoomError('data.packed is not set: give --packed DIR (the output of `loom pack`) or set data.packed in the config', EXIT_USAGE);
  }
  if (!existsSync(packed) || !statSync(packed).isDirectory()) {
    throw new LoomError(`data.packed ${packed} is not a directory (it should be the output of \`loom pack\`)`, EXIT_USAGE);
  }
  checkPackedDir(packed);
}

/** Throws a LoomError naming `dir` unless it is a finished pack whose shards start with the pack header. */
export function checkPackedDir(dir: string): void {
  const windows = readdirSync(dir, { withFileTypes: true }).filter((e) => e.isDirectory() && WINDOW_DIR_RE.test(e.name));
  const shards = windows.flatMap((w) => readdirSync(join(dir, w.name)).filter((n) => SHARD_NAME_RE.test(n)).map((n) => join(w.name, n))).sort();
  if (shards.length === 0) {
    throw new LoomError(`--packed ${dir}: no packed shards (w*/{:08d}.tar) in this folder; it should be the output of \`loom pack\``, EXIT_USAGE);
  }
  for (const name of shards) {
    const first = firstMemberName(join(dir, name));
    if (first === PACK_META_MEMBER) continue;
    const seen = first === null ? 'no tar header' : `its first member is ${JSON.stringify(first)}`;
    throw new LoomError(
      `--packed ${dir}: ${name} is not a packed shard (${seen}, not ${PACK_META_MEMBER}); ` +
        'raw image-caption shards must go through `loom pack` first',
      EXIT_USAGE,
    );
  }
  if (!existsSync(join(dir, PACK_REPORT_FILE))) {
    throw new LoomError(`--packed ${dir}: the pack is not finished (no ${PACK_REPORT_FILE}); rerun the same \`loom pack\` command to complete it`, EXIT_USAGE);
  }
}

/** The name in a tar's first header (ustar name field), or null when the file has no header. */
function firstMemberName(path: string): string | null {
  const header = Buffer.alloc(512);
  const fd = openSync(path, 'r');
  let got: number;
  try {
    got = readSync(fd, header, 0, 512, 0);
  } finally {
    closeSync(fd);
  }
  if (got < 512 || header.readUInt8(0) === 0 || !checksumOk(header)) return null;
  const end = header.indexOf(0);
  return header.subarray(0, end < 0 || end > 100 ? 100 : end).toString('utf8');
}

/** The ustar header checksum: the byte sum with the checksum field itself read as spaces. */
function checksumOk(header: Buffer): boolean {
  const stored = parseInt(header.subarray(148, 156).toString('ascii').replace(/[\0 ]+$/g, '').trim(), 8);
  let sum = 0;
  for (let i = 0; i < 512; i++) sum += i >= 148 && i < 156 ? 0x20 : header[i]!;
  return stored === sum;
}
