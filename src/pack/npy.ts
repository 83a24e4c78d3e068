// NumPy .npy (format version 1.0) for 1-D little-endian int32 and uint8 arrays, byte for byte
// what `np.save` writes: magic, version, a Python-literal header dict padded with spaces and a
// newline so the data starts at a multiple of 64 bytes. Readers load it with
// np.load(..., allow_pickle=False); nothing here ever needs pickle.

export type NpyArray = Int32Array | Uint8Array;

const MAGIC = Buffer.from([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59]); // "\x93NUMPY"
/** numpy aligns the data to 64 bytes (numpy.lib.format.ARRAY_ALIGN). */
const ALIGN = 64;
const PREFIX_BYTES = MAGIC.length + 2 + 2; // magic, major/minor version, uint16 header length
const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

function descrOf(array: NpyArray): '<i4' | '|u1' {
  if (array instanceof Int32Array) return '<i4';
  if (array instanceof Uint8Array) return '|u1';
  throw new Error('npy: only Int32Array and Uint8Array are supported');
}

/** The .npy bytes of a 1-D C-order array (int32 as '<i4', uint8 as '|u1'). */
export function encodeNpy(array: NpyArray): Buffer {
  const dict = `{'descr': '${descrOf(array)}', 'fortran_order': False, 'shape': (${array.length},), }`;
  // numpy pads with spaces so that prefix + header + '\n' is a multiple of ALIGN.
  const unpadded = PREFIX_BYTES + dict.length + 1;
  const header = dict + ' '.repeat((ALIGN - (unpadded % ALIGN)) % ALIGN) + '\n';
  if (header.length > 0xffff) throw new Error('npy: header too long for format version 1.0');
  const out = Buffer.alloc(PREFIX_BYTES + header.length + array.byteLength);
  MAGIC.copy(out, 0);
  out[6] = 1;
  out[7] = 0;
  out.writeUInt16LE(header.length, 8);
  out.write(header, PREFIX_BYTES, 'latin1');
  const dataStart = PREFIX_BYTES + header.length;
  if (array instanceof Uint8Array || LITTLE_ENDIAN) {
    out.set(new Uint8Array(array.buffer, array.byteOffset, array.byteLength), dataStart);
  } else {
    for (let i = 0; i < array.length; i++) out.writeInt32LE(array[i]!, dataStart + 4 * i);
  }
  return out;
}

/**
 * Parses a 1-D '<i4' or '|u1' (also '<u1') .npy as written by encodeNpy or np.save; throws a
 * message naming `what` (e.g. the member name) and the reason on anything else.
 */
export function decodeNpy(bytes: Uint8Array, what = 'npy data'): NpyArray {
  const data = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (data.length < PREFIX_BYTES || !data.subarray(0, MAGIC.length).equals(MAGIC)) {
    throw new Error(`${what}: not a .npy file (missing the \\x93NUMPY magic)`);
  }
  const [major, minor] = [data[6]!, data[7]!];
  if (major !== 1 || minor !== 0) throw new Error(`${what}: .npy format version ${major}.${minor}, only 1.0 is supported`);
  const headerLength = data.readUInt16LE(8);
  const dataStart = PREFIX_BYTES + headerLength;
  if (data.length < dataStart) throw new Error(`${what}: .npy header runs past the end of the data`);
  const header = data.toString('latin1', PREFIX_BYTES, dataStart);
  const match = /^\{'descr': '([<|>=][a-z]\d+)', 'fortran_order': (True|False), 'shape': \((\d*),?\), \}\s*$/.exec(header);
  if (!match) throw new Error(`${what}: unsupported .npy header ${JSON.stringify(header.trim())} (expected a 1-D array)`);
  const [, descr, fortran, shape] = match;
  if (fortran !== 'False') throw new Error(`${what}: Fortran-order arrays are not supported`);
  if (shape === '') throw new Error(`${what}: 0-d (scalar) arrays are not supported, expected 1-D`);
  const length = Number(shape);
  const body = data.subarray(dataStart);
  if (descr === '<i4') {
    if (body.length !== length * 4) throw new Error(`${what}: header declares ${length} int32 values but ${body.length} data bytes follow`);
    const out = new Int32Array(length);
    for (let i = 0; i < length; i++) out[i] = body.readInt32LE(4 * i);
    return out;
  }
  if (descr === '|u1' || descr === '<u1') {
    if (body.length !== length) throw new Error(`${what}: header declares ${length} uint8 values but ${body.length} data bytes follow`);
    return new Uint8Array(body);
  }
  throw new Error(`${what}: dtype ${descr} is not supported (only <i4 and |u1)`);
}
