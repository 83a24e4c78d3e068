// Reads what `loom pack` wrote (every window's packed shards), for the pack tests.
import assert from 'node:assert/strict';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { decodeNpy } from '../../../src/pack/npy.js';
import { PACK_META_MEMBER } from '../../../src/pack/packedShard.js';
import { readTarMembers } from '../../../src/shards/tarMembers.js';

export interface ReadSequence {
  shard: string;
  key: string;
  tokens: Int32Array;
  loss: Uint8Array;
  doclens: Int32Array;
  uids: string[];
  images: Buffer[];
}

export async function readPacked(out: string): Promise<{ sequences: ReadSequence[]; meta: Array<Record<string, unknown>> }> {
  const sequences: ReadSequence[] = [];
  const meta: Array<Record<string, unknown>> = [];
  const windows = (await readdir(out)).filter((n) => /^w\d{6}$/.test(n)).sort();
  for (const w of windows) {
    for (const name of (await readdir(join(out, w))).filter((n) => n.endsWith('.tar')).sort()) {
      const path = join(out, w, name);
      const byKey = new Map<string, Map<string, Buffer>>();
      for await (const m of readTarMembers(path)) {
        if (m.type === 'end') {
          assert.equal(m.status, 'ok', `${path}: ${m.detail}`);
          continue;
        }
        if (m.name === PACK_META_MEMBER) {
          meta.push(JSON.parse(m.data.toString('utf8')));
          continue;
        }
        const dot = m.name.indexOf('.');
        const key = m.name.slice(0, dot);
        if (!byKey.has(key)) byKey.set(key, new Map());
        byKey.get(key)!.set(m.name.slice(dot + 1), m.data);
      }
      for (const [key, parts] of byKey) {
        const json = JSON.parse(parts.get('json')!.toString('utf8')) as { uids: string[]; docs: number };
        const images = [...parts.keys()].filter((e) => /^img\d+\.jpg$/.test(e)).sort().map((e) => parts.get(e)!);
        sequences.push({
          shard: path,
          key,
          tokens: decodeNpy(parts.get('tokens.npy')!) as Int32Array,
          loss: decodeNpy(parts.get('loss.npy')!) as Uint8Array,
          doclens: decodeNpy(parts.get('doclens.npy')!) as Int32Array,
          uids: json.uids,
          images,
        });
      }
    }
  }
  return { sequences, meta };
}

/** Every output file (tars and their sidecars) by relative path, for byte comparisons. */
export async function packedFiles(out: string): Promise<Map<string, Buffer>> {
  const files = new Map<string, Buffer>();
  for (const w of (await readdir(out)).filter((n) => /^w\d{6}$/.test(n))) {
    for (const name of await readdir(join(out, w))) files.set(`${w}/${name}`, await readFile(join(out, w, name)));
  }
  return files;
}

export function assertSameFiles(a: Map<string, Buffer>, b: Map<string, Buffer>): void {
  assert.deepEqual([...a.keys()].sort(), [...b.keys()].sort());
  for (const [name, bytes] of a) assert.ok(bytes.equals(b.get(name)!), `${name} differs`);
}
