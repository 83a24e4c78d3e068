// A tar file being written: members go to a temporary sibling; commit() fsyncs it and renames it
// into place, discard() removes it. Nobody ever sees a partial tar under the final name.
import { createWriteStream } from 'node:fs';
import { mkdir, open, rename, rm, stat, type FileHandle } from 'node:fs/promises';
import { dirname } from 'node:path';
import tar from 'tar-stream';
import { tempPathFor } from '../util/atomic.js';
import { addTarEntry } from './tarEntry.js';

export class PendingTar {
  private constructor(
    readonly path: string,
    private readonly tmp: string,
    private readonly pack: tar.Pack,
    private readonly written: Promise<void>,
  ) {}

  static async create(path: string): Promise<PendingTar> {
    await mkdir(dirname(path), { recursive: true });
    const tmp = tempPathFor(path);
    const pack = tar.pack();
    const written = new Promise<void>((resolve, reject) => {
      pack.pipe(createWriteStream(tmp), (err?: Error | null) => (err ? reject(err) : resolve()));
    });
    written.catch(() => undefined); // observed in commit/discard
    return new PendingTar(path, tmp, pack, written);
  }

  /** Adds a member with fixed header fields; await it for back-pressure. */
  add(name: string, data: Buffer): Promise<void> {
    return addTarEntry(this.pack, name, data);
  }

  /**
   * Ends the archive, lets `patch` edit the finished bytes in place (e.g. fill in a reserved
   * header), fsyncs and renames it to its final name. Returns its size in bytes.
   */
  async commit(patch?: (file: FileHandle) => Promise<void>): Promise<number> {
    this.pack.finalize();
    try {
      await this.written;
      const file = await open(this.tmp, patch ? 'r+' : 'r');
      try {
        if (patch) await patch(file);
        await file.sync();
      } finally {
        await file.close();
      }
      await rename(this.tmp, this.path);
    } catch (err) {
      await rm(this.tmp, { force: true });
      throw err;
    }
    return (await stat(this.path)).size;
  }

  /** Abandons the archive and removes its temporary file. */
  async discard(): Promise<void> {
    this.pack.destroy();
    await this.written.catch(() => undefined);
    await rm(this.tmp, { force: true });
  }
}
