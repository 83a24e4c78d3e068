// Byte offsets of the members of one tar file, so the packer can read a sample's image again by
// random access (pass 2) without holding images in memory. tar-stream handles pax/GNU long
// names; `header.byteOffset` is where a member's data starts. A damaged archive yields the
// members indexed before the damage (the reader reports the damage itself).
import { createReadStream } from 'node:fs';
import tar from 'tar-stream';

export interface MemberSpan {
  offset: number;
  size: number;
}

export async function indexTarMembers(path: string): Promise<Map<string, MemberSpan>> {
  const index = new Map<string, MemberSpan>();
  const extract = tar.extract();
  const file = createReadStream(path, { highWaterMark: 1 << 20 });
  file.on('error', (err) => extract.destroy(err));
  file.pipe(extract);
  try {
    for await (const entry of extract) {
      const h = entry.header as tar.Header & { byteOffset?: number };
      if ((h.type === 'file' || h.type === 'contiguous-file') && typeof h.byteOffset === 'number') {
        index.set(h.name, { offset: h.byteOffset, size: h.size ?? 0 });
      }
      entry.resume();
    }
  } catch {
    // Damaged archive: keep what was indexed; the shard reader reports the problem.
  } finally {
    file.destroy();
  }
  return index;
}
