// Streams the regular-file members of one tar file, then says how the archive ended.
// Only one member is in memory at a time; the file is read in 1 MiB chunks.
import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import tar from 'tar-stream';

export interface TarMember {
  type: 'member';
  name: string;
  data: Buffer;
}

export type TarEndStatus =
  | 'ok' // a complete archive with its end-of-archive marker
  | 'empty' // zero-byte file
  | 'not_a_tar' // no valid header at the start
  | 'truncated' // ends inside a member, a header, or before the end-of-archive marker
  | 'corrupt' // an invalid header after valid ones
  | 'io_error';

export interface TarEnd {
  type: 'end';
  status: TarEndStatus;
  detail: string;
  /** Name of a member whose data was cut off, when the archive ended inside it. */
  partialName: string | null;
  /** Size of the file in bytes (-1 when it could not be read). */
  size: number;
}

const BLOCK = 512;
const END_MARKER = 2 * BLOCK;

export async function* readTarMembers(path: string): AsyncGenerator<TarMember | TarEnd> {
  let size: number;
  try {
    size = (await stat(path)).size;
  } catch (err) {
    yield end('io_error', messageOf(err), null, -1);
    return;
  }
  if (size === 0) {
    yield end('empty', 'empty file (0 bytes)', null, 0);
    return;
  }
  const extract = tar.extract();
  const file = createReadStream(path, { highWaterMark: 1 << 20 });
  let ioError: unknown = null;
  file.on('error', (err) => {
    ioError = err;
    extract.destroy(err);
  });
  file.pipe(extract);

  let headers = 0;
  let lastEnd = 0; // byte offset just past the last member's padded data
  let current: string | null = null;
  try {
    for await (const entry of extract) {
      headers++;
      const header = entry.header;
      current = header.name;
      const chunks = await collect(entry);
      current = null;
      lastEnd = entry.offset + BLOCK + Math.ceil(header.size / BLOCK) * BLOCK;
      if (header.type !== 'file' && header.type !== 'contiguous-file') continue; // dirs, links: no data
      yield { type: 'member', name: header.name, data: chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks) };
    }
  } catch (err) {
    if (ioError) yield end('io_error', messageOf(ioError), current, size);
    else if (headers === 0) yield end('not_a_tar', `${messageOf(err)} (file is ${size} bytes)`, null, size);
    else if (/unexpected end/i.test(messageOf(err))) {
      const where = current ? `inside member "${current}"` : `after ${headers} members`;
      yield end('truncated', `archive ends ${where} (file is ${size} bytes)`, current, size);
    } else yield end('corrupt', `${messageOf(err)} after ${headers} members`, current, size);
    return;
  } finally {
    file.destroy();
  }
  // A clean parse only proves the bytes after the last member are zero blocks; a complete
  // archive has at least two of them (the end-of-archive marker).
  if (headers === 0 && size < END_MARKER) yield end('not_a_tar', `no tar header (file is ${size} bytes)`, null, size);
  else if (size - lastEnd < END_MARKER)
    yield end('truncated', `archive ends without its end-of-archive marker (file is ${size} bytes)`, null, size);
  else yield end('ok', '', null, size);
}

interface EntryStream {
  on(event: string, listener: (arg: unknown) => void): unknown;
}

/** An entry's bytes; event-based because async iteration per chunk costs more than the parsing. */
function collect(entry: EntryStream): Promise<Buffer[]> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    entry.on('data', (chunk: unknown) => {
      chunks.push(chunk as Buffer);
    });
    entry.on('end', () => resolve(chunks));
    entry.on('error', (err) => reject(err));
    entry.on('close', () => reject(new Error('Unexpected end of data')));
  });
}

function end(status: TarEndStatus, detail: string, partialName: string | null, size: number): TarEnd {
  return { type: 'end', status, detail, partialName, size };
}

function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
