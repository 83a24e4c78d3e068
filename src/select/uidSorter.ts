// Bounded-memory sort of kept uids: uids are buffered in runs of at most `runSize`; a full run is
// sorted and written to a temporary .bin file (raw words); the runs are then k-way merged (a
// binary heap over the run heads, duplicates dropped) straight into the .npy. Memory is about
// 16 bytes * runSize plus a small read buffer per run, whatever the number of uids. More than
// MAX_FAN_IN runs are first merged in groups into longer runs, so open files stay bounded.
import { mkdir, open, rm, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { tempPathFor } from '../util/atomic.js';
import { compareWords, uidToWords, WORDS_PER_UID } from './uidWords.js';
import { UidNpyWriter } from './uidNpy.js';

export const DEFAULT_RUN_SIZE = 1_000_000;
/** The spill folder is tempPathFor(target + RUNS_SUFFIX); a killed run's is removed by the next. */
export const RUNS_SUFFIX = '.runs';
const MAX_FAN_IN = 64;
const READ_UIDS = 16_384;

interface UidSink {
  append(words: Uint32Array, from: number, count: number): Promise<void>;
}

export class UidSorter {
  private readonly runSize: number;
  private buffer: Uint32Array;
  private buffered = 0;
  private runs: string[] = [];
  private runDir: string | null = null;
  private added = 0;
  private spilled = 0;

  /** `target` is the final .npy path; temporary runs live in a hidden directory beside it. */
  constructor(
    private readonly target: string,
    runSize = DEFAULT_RUN_SIZE,
  ) {
    if (!Number.isInteger(runSize) || runSize < 1) throw new Error(`UidSorter: runSize must be a positive integer, got ${runSize}`);
    this.runSize = runSize;
    this.buffer = new Uint32Array(Math.min(runSize, 65_536) * WORDS_PER_UID);
  }

  /** Uids added so far (duplicates included). */
  get count(): number {
    return this.added;
  }

  /** Number of sorted runs spilled to disk so far. */
  get spilledRuns(): number {
    return this.spilled;
  }

  async add(uid: string): Promise<void> {
    if (this.buffered * WORDS_PER_UID === this.buffer.length) {
      if (this.buffered === this.runSize) await this.spill();
      else this.grow();
    }
    uidToWords(uid, this.buffer, this.buffered * WORDS_PER_UID);
    this.buffered++;
    this.added++;
  }

  /** Writes the sorted unique uids to the target .npy (atomically); returns how many. */
  async finish(): Promise<number> {
    const out = new UidNpyWriter(this.target);
    await out.open();
    try {
      if (this.runs.length === 0) {
        const sorted = sortRun(this.buffer, this.buffered);
        await out.append(sorted.words, 0, sorted.count);
      } else {
        if (this.buffered > 0) await this.spill();
        while (this.runs.length > MAX_FAN_IN) await this.mergeGroups();
        await mergeRuns(this.runs, dedupingSink(out));
      }
      return await out.close();
    } catch (err) {
      await out.abort();
      throw err;
    } finally {
      await this.cleanup();
    }
  }

  /** Removes temporary run files (also call this when abandoning the sort). */
  async cleanup(): Promise<void> {
    if (this.runDir) await rm(this.runDir, { recursive: true, force: true });
    this.runDir = null;
    this.runs = [];
  }

  private grow(): void {
    const bigger = new Uint32Array(Math.min(this.runSize, this.buffered * 2) * WORDS_PER_UID);
    bigger.set(this.buffer);
    this.buffer = bigger;
  }

  private async spill(): Promise<void> {
    const sorted = sortRun(this.buffer, this.buffered);
    const path = await this.newRunPath();
    await writeRun(path, sorted.words, sorted.count);
    this.runs.push(path);
    this.spilled++;
    this.buffered = 0;
  }

  private async newRunPath(): Promise<string> {
    if (!this.runDir) {
      this.runDir = tempPathFor(this.target + RUNS_SUFFIX);
      await mkdir(this.runDir, { recursive: true });
    }
    return join(this.runDir, `run-${String(this.runs.length).padStart(6, '0')}-${Math.random().toString(16).slice(2, 8)}.bin`);
  }

  private async mergeGroups(): Promise<void> {
    const merged: string[] = [];
    for (let i = 0; i < this.runs.length; i += MAX_FAN_IN) {
      const group = this.runs.slice(i, i + MAX_FAN_IN);
      const path = await this.newRunPath();
      const handle = await open(path, 'w');
      try {
        await mergeRuns(group, dedupingSink(fileSink(handle)));
      } finally {
        await handle.close();
      }
      for (const p of group) await rm(p, { force: true });
      merged.push(path);
    }
    this.runs = merged;
  }
}

/** Sorts the first `count` uids of `words` (index sort, then gather) and drops duplicates. */
function sortRun(words: Uint32Array, count: number): { words: Uint32Array; count: number } {
  const order = new Uint32Array(count);
  for (let i = 0; i < count; i++) order[i] = i;
  order.sort((a, b) => compareWords(words, a * WORDS_PER_UID, words, b * WORDS_PER_UID));
  const out = new Uint32Array(count * WORDS_PER_UID);
  let n = 0;
  for (let i = 0; i < count; i++) {
    const src = order[i]! * WORDS_PER_UID;
    if (n > 0 && compareWords(out, (n - 1) * WORDS_PER_UID, words, src) === 0) continue;
    out.set(words.subarray(src, src + WORDS_PER_UID), n * WORDS_PER_UID);
    n++;
  }
  return { words: out, count: n };
}

async function writeRun(path: string, words: Uint32Array, count: number): Promise<void> {
  const handle = await open(path, 'w');
  try {
    await handle.write(new Uint8Array(words.buffer, words.byteOffset, count * WORDS_PER_UID * 4));
  } finally {
    await handle.close();
  }
}

function fileSink(handle: FileHandle): UidSink {
  return {
    async append(words, from, count) {
      await handle.write(new Uint8Array(words.buffer, words.byteOffset + from * WORDS_PER_UID * 4, count * WORDS_PER_UID * 4));
    },
  };
}

/** Buffers merged uids and drops a uid equal to the one before it. */
function dedupingSink(sink: UidSink): UidSink & { flush(): Promise<void> } {
  const buf = new Uint32Array(READ_UIDS * WORDS_PER_UID);
  let n = 0;
  let last: Uint32Array | null = null;
  const self = {
    async append(words: Uint32Array, from: number, count: number) {
      for (let i = 0; i < count; i++) {
        const at = (from + i) * WORDS_PER_UID;
        if (last && compareWords(last, 0, words, at) === 0) continue;
        buf.set(words.subarray(at, at + WORDS_PER_UID), n * WORDS_PER_UID);
        last ??= new Uint32Array(WORDS_PER_UID);
        last.set(words.subarray(at, at + WORDS_PER_UID));
        n++;
        if (n === READ_UIDS) await self.flush();
      }
    },
    async flush() {
      if (n > 0) await sink.append(buf, 0, n);
      n = 0;
    },
  };
  return self;
}

class RunReader {
  words = new Uint32Array(READ_UIDS * WORDS_PER_UID);
  pos = 0;
  len = 0;
  private offset = 0;
  private constructor(private readonly handle: FileHandle) {}

  static async open(path: string): Promise<RunReader> {
    const r = new RunReader(await open(path, 'r'));
    await r.refill();
    return r;
  }

  /** Loads the next block; false at the end of the run. */
  async refill(): Promise<boolean> {
    const bytes = new Uint8Array(this.words.buffer);
    const { bytesRead } = await this.handle.read(bytes, 0, bytes.length, this.offset);
    this.offset += bytesRead;
    this.len = Math.floor(bytesRead / (WORDS_PER_UID * 4));
    this.pos = 0;
    return this.len > 0;
  }

  close(): Promise<void> {
    return this.handle.close();
  }
}

async function mergeRuns(paths: string[], sink: UidSink & { flush(): Promise<void> }): Promise<void> {
  const readers: RunReader[] = [];
  try {
    for (const p of paths) readers.push(await RunReader.open(p));
    const heap = readers.filter((r) => r.len > 0);
    const less = (a: RunReader, b: RunReader) => compareWords(a.words, a.pos * WORDS_PER_UID, b.words, b.pos * WORDS_PER_UID) < 0;
    const siftDown = (i: number) => {
      for (;;) {
        const l = 2 * i + 1;
        const r = l + 1;
        let m = i;
        if (l < heap.length && less(heap[l]!, heap[m]!)) m = l;
        if (r < heap.length && less(heap[r]!, heap[m]!)) m = r;
        if (m === i) return;
        [heap[i], heap[m]] = [heap[m]!, heap[i]!];
        i = m;
      }
    };
    for (let i = (heap.length >> 1) - 1; i >= 0; i--) siftDown(i);
    while (heap.length > 0) {
      const top = heap[0]!;
      await sink.append(top.words, top.pos, 1);
      top.pos++;
      if (top.pos === top.len && !(await top.refill())) {
        heap[0] = heap[heap.length - 1]!;
        heap.pop();
      }
      if (heap.length > 0) siftDown(0);
    }
    await sink.flush();
  } finally {
    for (const r of readers) await r.close();
  }
}
