import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { decodeNpy, encodeNpy } from '../../../../src/pack/npy.js';

function headerOf(bytes: Buffer): { length: number; text: string } {
  const length = bytes.readUInt16LE(8);
  return { length, text: bytes.toString('latin1', 10, 10 + length) };
}

describe('npy (format 1.0)', () => {
  it('int32 arrays round trip, data aligned to 64 bytes', () => {
    fc.assert(
      fc.property(fc.array(fc.integer({ min: -(2 ** 31), max: 2 ** 31 - 1 }), { maxLength: 300 }), (values) => {
        const array = Int32Array.from(values);
        const bytes = encodeNpy(array);
        const { length, text } = headerOf(bytes);
        assert.equal((10 + length) % 64, 0);
        assert.ok(text.endsWith('\n'));
        assert.equal(bytes.length, 10 + length + 4 * values.length);
        const back = decodeNpy(bytes);
        assert.ok(back instanceof Int32Array);
        assert.deepEqual(Array.from(back), values);
      }),
      { numRuns: 200, seed: 3 },
    );
  });

  it('uint8 arrays round trip', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 500 }), (values) => {
        const bytes = encodeNpy(values);
        assert.match(headerOf(bytes).text, /'descr': '\|u1'/);
        const back = decodeNpy(bytes);
        assert.ok(back instanceof Uint8Array && !(back instanceof Int32Array));
        assert.deepEqual(Array.from(back), Array.from(values));
      }),
      { numRuns: 200, seed: 4 },
    );
  });

  it('writes little-endian values after the header', () => {
    const bytes = encodeNpy(Int32Array.from([1, -2, 0x01020304]));
    const data = bytes.subarray(bytes.length - 12);
    assert.deepEqual([...data], [1, 0, 0, 0, 0xfe, 0xff, 0xff, 0xff, 4, 3, 2, 1]);
  });

  it('refuses what it does not support, naming the input', () => {
    const good = encodeNpy(Int32Array.from([1, 2]));
    assert.throws(() => decodeNpy(Buffer.from('not numpy at all'), 'x.tokens.npy'), /x\.tokens\.npy: not a \.npy file/);
    const short = good.subarray(0, good.length - 1);
    assert.throws(() => decodeNpy(short, 'a.npy'), /a\.npy: header declares 2 int32 values but 7 data bytes follow/);
    const f8 = Buffer.from(good);
    f8.write("{'descr': '<f8'", 10, 'latin1');
    assert.throws(() => decodeNpy(f8), /dtype <f8 is not supported/);
    const v2 = Buffer.from(good);
    v2[6] = 2;
    assert.throws(() => decodeNpy(v2), /format version 2\.0/);
  });
});
