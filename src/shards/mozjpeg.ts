// The fast JPEG check: mozjpeg compiled to WebAssembly (npm @jsquash/jpeg), run in this thread.
// It only ever *accepts* an image; anything it does not accept cleanly goes to sharp, which
// decides and words the reason (decode.ts). So it must never accept what sharp would reject:
// it accepts only data that ends with the EOI marker, decodes with no libjpeg message at all
// (libjpeg merely warns on premature end of data and pads with grey), and is not too large.
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { readImageHeader } from './imageHeader.js';

/** ok: decoded cleanly. Otherwise `why` says what sent it to sharp (for tests and debugging). */
export type FastJpegResult = { ok: true; width: number; height: number } | { ok: false; why: string };

/** Larger images go to sharp: they would grow the wasm heap for good (4 bytes a pixel) and
 *  sharp also enforces its own pixel limit, which the fast path must not bypass. */
export const FAST_JPEG_MAX_PIXELS = 8 * 1024 * 1024;

interface MozjpegModule {
  decode(data: Uint8Array, preserveOrientation: boolean): { width: number; height: number } | null;
}
type ModuleFactory = (options: Record<string, unknown>) => Promise<MozjpegModule>;

const EOI = [0xff, 0xd9];

/**
 * True when the JPEG ends with the end-of-image marker FFD9 as its very last two bytes. No
 * trailing bytes (not even zero padding) are allowed on the fast path; such files are rare and
 * sharp judges them.
 */
export function endsWithEoi(data: Uint8Array): boolean {
  const n = data.length;
  return n >= 4 && data[n - 2] === EOI[0] && data[n - 1] === EOI[1];
}

let compiled: Promise<{ factory: ModuleFactory; wasm: WebAssembly.Module }> | null = null;

function loadCodec(): Promise<{ factory: ModuleFactory; wasm: WebAssembly.Module }> {
  compiled ??= (async () => {
    const pkgDir = dirname(createRequire(import.meta.url).resolve('@jsquash/jpeg/package.json'));
    const codecDir = join(pkgDir, 'codec', 'dec');
    const wasm = await WebAssembly.compile(readFileSync(join(codecDir, 'mozjpeg_dec.wasm')));
    const mod = (await import(pathToFileURL(join(codecDir, 'mozjpeg_dec.js')).href)) as { default: ModuleFactory };
    return { factory: mod.default, wasm };
  })();
  return compiled;
}

/**
 * A decoder bound to one wasm instance. libjpeg ends a fatal error with exit(), which unwinds
 * the wasm stack without freeing anything and leaves the instance unusable, so after any
 * throw the instance is replaced by a fresh one (a few milliseconds; bad images are rare).
 */
export async function createFastJpegDecoder(): Promise<(data: Uint8Array) => Promise<FastJpegResult>> {
  const { factory, wasm } = await loadCodec();
  const messages: string[] = [];
  const instantiate = (): Promise<MozjpegModule> =>
    factory({
      noInitialRun: true,
      instantiateWasm: (imports: WebAssembly.Imports, done: (instance: WebAssembly.Instance) => void) => {
        const instance = new WebAssembly.Instance(wasm, imports);
        done(instance);
        return instance.exports;
      },
      // libjpeg's warnings and errors arrive here, one line each, during the decode call.
      print: (line: string) => messages.push(line),
      printErr: (line: string) => messages.push(line),
    });
  let codec: MozjpegModule | null = await instantiate();

  return async (data: Uint8Array): Promise<FastJpegResult> => {
    const size = readImageHeader(data);
    if (!size.ok || size.format !== 'jpg') return { ok: false, why: 'no JPEG frame header' };
    if (size.width * size.height > FAST_JPEG_MAX_PIXELS) return { ok: false, why: `larger than ${FAST_JPEG_MAX_PIXELS} pixels` };
    if (!endsWithEoi(data)) return { ok: false, why: 'does not end with the EOI marker' };
    codec ??= await instantiate();
    messages.length = 0;
    let image: { width: number; height: number } | null;
    try {
      image = codec.decode(data, false);
    } catch (err) {
      codec = null;
      return { ok: false, why: `decoder error: ${messages[0] ?? (err instanceof Error ? err.message : String(err))}` };
    }
    if (messages.length > 0) return { ok: false, why: `decoder message: ${messages[0]}` };
    if (!image) return { ok: false, why: 'decoder returned nothing' };
    return { ok: true, width: image.width, height: image.height };
  };
}
