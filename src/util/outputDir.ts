// Output folders are owned: a marker names the command that writes a folder, so no command writes
// into (or deletes from) a folder holding someone else's files, and a lock file per process
// refuses a second run on the same folder while the first is alive. A lock whose process is gone
// (kill -9, a crash, a lost node) is stale and taken over; ranks of one launch each hold their own.
import { readFileSync } from 'node:fs';
import { mkdir, open, readdir, readFile, rm, stat } from 'node:fs/promises';
import { hostname } from 'node:os';
import { dirname, join } from 'node:path';
import { LoomError } from './errors.js';
import { writeJsonAtomic } from './atomic.js';

export const OWNER_FILE = '.loom-output.json';
const LOCK_PREFIX = '.loom-lock';
const OWNER_FORMAT = 'loom-output';

export interface ClaimOptions {
  /** The command that writes the folder, e.g. 'pack'; another command's folder is refused. */
  command: string;
  /**
   * A folder without a marker but holding files is taken when this says they are an earlier
   * run of the same command (outputs of Loom versions before markers); otherwise refused.
   */
  adopt?: (names: string[]) => boolean;
  /** This process's rank in a launch of several (each rank locks on its own); default 0 of 1. */
  rank?: number;
  worldSize?: number;
}

export interface LockRecord {
  format: 'loom-lock';
  command: string;
  pid: number;
  /** The process's start time (Linux /proc), so a reused pid is not mistaken for the owner. */
  pid_start: string | null;
  host: string;
  rank: number;
  world_size: number;
  started: string;
}

/** A claimed folder; release() removes this process's lock (a killed process leaves a stale one). */
export interface OutputClaim {
  dir: string;
  lockPath: string;
  release(): Promise<void>;
}

/** The marker, locks and their temporary files: present in every claimed folder, never foreign. */
export const isClaimFile = (name: string) => name === OWNER_FILE || name.startsWith(LOCK_PREFIX) || name.startsWith(`.${OWNER_FILE}.tmp-`) || name.startsWith(`.${LOCK_PREFIX}`);

/**
 * Makes `dir` this command's output folder and locks it for this process. Refuses (LoomError) a
 * path that is not a folder, a folder another command owns, a folder of foreign files, and a
 * folder a live process of another run is writing.
 */
export async function claimOutputDir(dir: string, o: ClaimOptions): Promise<OutputClaim> {
  const rank = o.rank ?? 0;
  const worldSize = o.worldSize ?? 1;
  const info = await stat(dir).catch(() => null);
  if (info && !info.isDirectory()) throw new LoomError(`--out ${dir} exists and is not a directory`);
  await mkdir(dir, { recursive: true });
  const names = await readdir(dir);
  const owner = await readOwner(dir, names);
  if (owner !== null && owner !== o.command) {
    throw new LoomError(`--out ${dir} is the output of 'loom ${owner}' (${OWNER_FILE}); 'loom ${o.command}' will not write into it: choose another directory`);
  }
  const foreign = names.filter((n) => !isClaimFile(n));
  if (owner === null && foreign.length > 0 && !(o.adopt?.(foreign) ?? false)) {
    const shown = foreign.slice(0, 3).map((n) => JSON.stringify(n)).join(', ');
    throw new LoomError(
      `--out ${dir} holds files Loom did not write (${shown}${foreign.length > 3 ? `, and ${foreign.length - 3} more` : ''}); ` +
        `'loom ${o.command}' writes only into an empty or new directory, or one it wrote before`,
    );
  }
  const lockPath = await takeLock(dir, o.command, rank, worldSize);
  if (owner === null) await writeJsonAtomic(join(dir, OWNER_FILE), { format: OWNER_FORMAT, version: 1, command: o.command });
  let released = false;
  return {
    dir,
    lockPath,
    release: async () => {
      if (released) return;
      released = true;
      await rm(lockPath, { force: true });
    },
  };
}

/** Runs `job` with `dir` claimed, releasing the lock however the job ends. */
export async function withOutputDir<T>(dir: string, o: ClaimOptions, job: (claim: OutputClaim) => Promise<T>): Promise<T> {
  const claim = await claimOutputDir(dir, o);
  try {
    return await job(claim);
  } finally {
    await claim.release();
  }
}

async function readOwner(dir: string, names: string[]): Promise<string | null> {
  if (!names.includes(OWNER_FILE)) return null;
  const path = join(dir, OWNER_FILE);
  let parsed: unknown;
  try {
    parsed = JSON.parse(await readFile(path, 'utf8'));
  } catch (err) {
    throw new LoomError(`${path}: unreadable ownership marker (${(err as Error).message}); delete it only if this folder holds nothing but Loom's output`);
  }
  const record = parsed as { format?: unknown; command?: unknown };
  if (record?.format !== OWNER_FORMAT || typeof record.command !== 'string') {
    throw new LoomError(`${path}: not a Loom ownership marker (expected format '${OWNER_FORMAT}' and a command)`);
  }
  return record.command;
}

/** An unreadable lock younger than this may be one being written; older ones are debris of a kill. */
const FRESH_LOCK_MS = 10_000;

async function youngerThan(path: string, ms: number): Promise<boolean> {
  const info = await stat(path).catch(() => null);
  return info !== null && Date.now() - info.mtimeMs < ms;
}

const lockName = (rank: number) => `${LOCK_PREFIX}-${String(rank).padStart(5, '0')}.json`;

/** The process start time from /proc (clock ticks since boot), or null where there is no /proc. */
export function processStartTime(pid: number): string | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Field 22 (starttime); fields after the command name, which may hold spaces and parentheses.
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19] ?? null;
  } catch {
    return null;
  }
}

/** Alive means: on this host, the pid exists and (where /proc tells) started when the lock says. */
function lockIsLive(lock: LockRecord): boolean | 'unknown' {
  if (lock.host !== hostname()) return 'unknown';
  try {
    process.kill(lock.pid, 0);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ESRCH') return false;
  }
  const start = processStartTime(lock.pid);
  return lock.pid_start === null || start === null || start === lock.pid_start;
}

async function readLock(path: string): Promise<LockRecord | null> {
  try {
    const lock = JSON.parse(await readFile(path, 'utf8')) as LockRecord;
    return lock?.format === 'loom-lock' && Number.isInteger(lock.pid) ? lock : null;
  } catch {
    return null; // gone meanwhile, or cut by a kill mid-write: not a live lock either way
  }
}

function describe(lock: LockRecord): string {
  const where = lock.host === hostname() ? `process ${lock.pid}` : `process ${lock.pid} on host ${lock.host}`;
  const rank = lock.world_size > 1 ? ` (rank ${lock.rank} of ${lock.world_size})` : '';
  return `'loom ${lock.command}' ${where}${rank}, started ${lock.started}`;
}

async function takeLock(dir: string, command: string, rank: number, worldSize: number): Promise<string> {
  // Other ranks' locks: a live one of another launch shape would split the work differently.
  for (const name of await readdir(dir)) {
    if (!name.startsWith(LOCK_PREFIX) || name === lockName(rank)) continue;
    const other = await readLock(join(dir, name));
    if (other && other.world_size !== worldSize && lockIsLive(other) !== false) {
      throw new LoomError(`--out ${dir} is being written by ${describe(other)}; wait for it to finish (a run with ${worldSize} rank(s) cannot join it)`);
    }
  }
  return lockFile(join(dir, lockName(rank)), dir, command, rank, worldSize);
}

/** Creates the lock file `path` for this process (O_EXCL), taking over a stale one. */
async function lockFile(path: string, dir: string, command: string, rank: number, worldSize: number): Promise<string> {
  const record: LockRecord = {
    format: 'loom-lock', command, pid: process.pid, pid_start: processStartTime(process.pid), host: hostname(), rank, world_size: worldSize, started: new Date().toISOString(),
  };
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      const handle = await open(path, 'wx');
      try {
        await handle.writeFile(JSON.stringify(record) + '\n');
        await handle.sync();
      } finally {
        await handle.close();
      }
      return path;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
    const held = await readLock(path);
    if (!held && (await youngerThan(path, FRESH_LOCK_MS))) {
      // Created by O_EXCL but not yet written: another run is taking it this very moment.
      throw new LoomError(`--out ${dir} is being locked by another run right now (${path}); wait for it to finish or write elsewhere`);
    }
    const live = held ? lockIsLive(held) : false;
    if (held && live === true) throw new LoomError(`--out ${dir} is being written by ${describe(held)}; wait for it to finish or write elsewhere`);
    if (held && live === 'unknown') {
      throw new LoomError(`--out ${dir} is locked by ${describe(held)} (${path}); if no run is active there, delete that file and run again`);
    }
    // Stale (its process is gone) or unreadable: take it over.
    await rm(path, { force: true });
  }
  throw new LoomError(`--out ${dir}: cannot take the lock ${path} (another run keeps taking it)`);
}

/**
 * For commands whose --out is a prefix of files (`loom select` writes PREFIX.npy and PREFIX.json):
 * refuses when one of them exists and `isOurs` does not recognise it, and locks PREFIX for this
 * process (PREFIX.loom-lock.json) so two runs never write the same files at once.
 */
export async function withOutputFiles<T>(prefix: string, command: string, isOurs: () => Promise<string | null>, job: () => Promise<T>): Promise<T> {
  await mkdir(dirname(prefix), { recursive: true });
  const lockPath = await lockFile(`${prefix}.loom-lock.json`, prefix, command, 0, 1);
  try {
    const foreign = await isOurs();
    if (foreign !== null) throw new LoomError(`--out ${prefix}: ${foreign}; 'loom ${command}' will not overwrite it: choose another --out or delete it`);
    return await job();
  } finally {
    await rm(lockPath, { force: true });
  }
}
