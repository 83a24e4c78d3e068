// One tar member with fixed header fields (mtime 0, uid/gid 0, no names, mode 0644), so the same
// content always gives byte-identical archives. Shared by every tar Loom writes.
import type tar from 'tar-stream';

const FIXED_HEADER = { mode: 0o644, uid: 0, gid: 0, uname: '', gname: '', type: 'file' as const, mtime: new Date(0) };

/** Adds a member; the promise resolves once the data is in the pack's bounded buffer (back-pressure). */
export function addTarEntry(pack: tar.Pack, name: string, data: Buffer): Promise<void> {
  return new Promise((resolve, reject) => {
    pack.entry({ name, size: data.length, ...FIXED_HEADER }, data, (err) => (err ? reject(err) : resolve()));
  });
}
