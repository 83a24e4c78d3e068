// Image preparation for the data plane: decode anything sharp reads, show it the way a viewer
// would (EXIF orientation, sRGB, alpha flattened), resize to the model's square input and
// encode JPEG. The resize kernel is chosen to match what HF's SiglipImageProcessor feeds SigLIP
// (PIL BICUBIC with antialiasing, i.e. a Keys a=-0.5 cubic = Catmull-Rom, widened on
// reduction): libvips' cubic reduce for shrinking axes, a centre-aligned affine for growing ones.
// python/tests/test_images_parity.py measures the difference (a fraction of a level, up to ~2
// levels for reductions beyond 8x, where libvips box-shrinks part of the way).
import sharp, { type Sharp } from 'sharp';

export type ResizeMode = 'squash' | 'pad';

export type Rgb = [number, number, number];

export interface PrepareOptions {
  /** Output side in pixels: the result is always size x size. */
  size: number;
  /** 'squash' ignores the aspect ratio (the recipe's mode); 'pad' keeps it and centres on padColor. */
  mode: ResizeMode;
  /** Letterbox colour for 'pad'. Default DEFAULT_PAD_COLOR (LLaVA's expand2square with SigLIP's mean). */
  padColor?: Rgb;
  /** Colour that transparent pixels are composited onto. Default DEFAULT_ALPHA_COLOR (white, as HF's convert_to_rgb). */
  alphaColor?: Rgb;
  /** JPEG quality 1-100 for prepareImage. Default DEFAULT_JPEG_QUALITY. */
  quality?: number;
}

export interface ImageProbe {
  /** Displayed width: after EXIF orientation is applied (a portrait photo stored sideways reports its portrait width). */
  width: number;
  /** Displayed height, after EXIF orientation. */
  height: number;
  /** Decoder that recognised the bytes: jpeg, png, webp, gif, tiff, ... */
  format: string;
  /** Bands as stored: 1 grey, 2 grey+alpha, 3 RGB, 4 RGBA or CMYK. */
  channels: number;
  /** Colour space as stored: srgb, b-w, cmyk, rgb16, grey16, ... */
  space: string;
  hasAlpha: boolean;
  /** EXIF orientation tag (1-8) when present. */
  orientation?: number;
}

export interface RgbImage {
  /** Interleaved 8-bit RGB, row-major, width * height * 3 bytes. */
  data: Uint8Array;
  width: number;
  height: number;
}

/** SigLIP normalises with mean 0.5, so LLaVA-style padding fills with round-down(0.5 * 255). */
export const DEFAULT_PAD_COLOR: Rgb = [127, 127, 127];
/** transformers' convert_to_rgb composites transparency onto white before the processor sees it. */
export const DEFAULT_ALPHA_COLOR: Rgb = [255, 255, 255];
/** High enough that re-encoding adds little next to the web JPEG's own loss. */
const DEFAULT_JPEG_QUALITY = 95;
/** sharp's name for the Catmull-Rom cubic, the closest of its kernels to PIL's BICUBIC. */
const RESIZE_KERNEL = 'cubic' as const;
/**
 * The one pixel limit of the data plane (inspect, pack, Python scoring): larger images are bad
 * samples (`image_too_large`), refused from their header before any pixel is decoded. It is PIL's
 * default decompression-bomb threshold (2^30 / 4 / 3), so Python's own decoder agrees; the value
 * is shared with Python through vectors/limits.json (tested on both sides).
 */
export const MAX_IMAGE_PIXELS = 89_478_485;
const MAX_INPUT_PIXELS = MAX_IMAGE_PIXELS;

function validateOptions(options: PrepareOptions): void {
  const { size, mode } = options;
  if (!Number.isInteger(size) || size < 1 || size > 8192) {
    throw new Error(`image size must be an integer from 1 to 8192, got ${String(size)}`);
  }
  if (mode !== 'squash' && mode !== 'pad') {
    throw new Error(`resize mode must be 'squash' or 'pad', got ${JSON.stringify(mode)}`);
  }
  for (const [name, colour] of [['padColor', options.padColor], ['alphaColor', options.alphaColor]] as const) {
    if (colour === undefined) continue;
    if (colour.length !== 3 || colour.some((c) => !Number.isInteger(c) || c < 0 || c > 255)) {
      throw new Error(`${name} must be three integers 0-255, got ${JSON.stringify(colour)}`);
    }
  }
  const q = options.quality;
  if (q !== undefined && (!Number.isInteger(q) || q < 1 || q > 100)) {
    throw new Error(`JPEG quality must be an integer from 1 to 100, got ${String(q)}`);
  }
}

function colour([r, g, b]: Rgb): { r: number; g: number; b: number } {
  return { r, g, b };
}

function describe(error: unknown): string {
  const message = error instanceof Error ? error.message : String(error);
  // libvips repeats each decoder complaint once per read attempt: keep one of each.
  const parts = message.split(/\n|(?=\bVips[A-Za-z]*: )/).map((line) => line.replace(/\s+/g, ' ').trim());
  const lines = [...new Set(parts)];
  return lines.filter((line) => line.length > 0).join(' ');
}

function checkInput(data: Buffer): void {
  if (!(data as unknown instanceof Uint8Array)) throw new Error('image data is not a byte buffer');
  if (data.length === 0) throw new Error('image data is empty (0 bytes)');
}

/**
 * A sharp pipeline that yields the image as displayed, in 8-bit sRGB with 3 bands:
 * first frame only, EXIF orientation applied, any colour space (CMYK, grey, 16-bit, ICC
 * profiles) converted to sRGB, transparency composited onto alphaColor.
 */
function displayedRgb(data: Buffer, alphaColor: Rgb): Sharp {
  return sharp(data, { failOn: 'error', limitInputPixels: MAX_INPUT_PIXELS, autoOrient: true })
    .flatten({ background: colour(alphaColor) })
    .toColourspace('srgb');
}

async function run<T>(what: string, work: () => Promise<T>): Promise<T> {
  try {
    return await work();
  } catch (error) {
    throw new Error(`cannot ${what}: ${describe(error)}`);
  }
}

function fromRaw(image: RgbImage): Sharp {
  return sharp(image.data, { raw: { width: image.width, height: image.height, channels: 3 } });
}

/**
 * Reduce along the axes that shrink (libvips' cubic reduce: centre-aligned and widened like
 * PIL's antialiased BICUBIC), leaving the others as they are.
 */
async function reduce(image: RgbImage, width: number, height: number): Promise<RgbImage> {
  const w = Math.min(width, image.width);
  const h = Math.min(height, image.height);
  if (w === image.width && h === image.height) return image;
  const pipeline = fromRaw(image).resize(w, h, { fit: 'fill', kernel: RESIZE_KERNEL });
  return rawRgb(pipeline);
}

/**
 * Enlarge along the axes that grow. libvips' own resize samples enlargements half an output
 * pixel off PIL's centre convention (measured on a step edge), so enlargement is an affine
 * map with explicit pixel-centre offsets instead, X = s * (x + 0.5) - 0.5, with the same
 * Catmull-Rom interpolator; the border is replicated first so edges are not darkened.
 */
async function enlarge(image: RgbImage, width: number, height: number): Promise<RgbImage> {
  if (width <= image.width && height <= image.height) return image;
  const border = 3;
  const sx = Math.max(width, image.width) / image.width;
  const sy = Math.max(height, image.height) / image.height;
  const outW = Math.max(width, image.width);
  const outH = Math.max(height, image.height);
  const padded = await rawRgb(
    fromRaw(image).extend({ top: border, bottom: border, left: border, right: border, extendWith: 'copy' }),
  );
  const mapped = await rawRgb(
    fromRaw(padded).affine([sx, 0, 0, sy], {
      idx: 0.5 - border,
      idy: 0.5 - border,
      odx: -0.5,
      ody: -0.5,
      interpolator: 'bicubic',
    }),
  );
  if (mapped.width < outW || mapped.height < outH) {
    throw new Error(`enlarging to ${outW}x${outH} produced only ${mapped.width}x${mapped.height}`);
  }
  if (mapped.width === outW && mapped.height === outH) return mapped;
  return rawRgb(fromRaw(mapped).extract({ left: 0, top: 0, width: outW, height: outH }));
}

/**
 * Resize 8-bit RGB to exactly width x height, ignoring aspect, the way PIL's
 * Image.resize(BICUBIC) does (what HF's SigLIP processor applies): within a level or so.
 */
export async function resizeRgb(image: RgbImage, width: number, height: number): Promise<RgbImage> {
  if (image.data.length !== image.width * image.height * 3) {
    throw new Error(`raw RGB buffer holds ${image.data.length} bytes, expected ${image.width}x${image.height}x3`);
  }
  return enlarge(await reduce(image, width, height), width, height);
}

/** Size of the image scaled to fit inside size x size, aspect kept, at least one pixel per side. */
export function fitInside(width: number, height: number, size: number): { width: number; height: number } {
  const scale = Math.min(size / width, size / height);
  return {
    width: Math.min(size, Math.max(1, Math.round(width * scale))),
    height: Math.min(size, Math.max(1, Math.round(height * scale))),
  };
}

/** Where the resized image sits in the size x size output. */
interface Layout {
  width: number;
  height: number;
  left: number;
  top: number;
}

function layoutFor(width: number, height: number, options: PrepareOptions): Layout {
  const { size } = options;
  const inner = options.mode === 'squash' ? { width: size, height: size } : fitInside(width, height, size);
  return {
    ...inner,
    left: Math.floor((size - inner.width) / 2),
    top: Math.floor((size - inner.height) / 2),
  };
}

function padded(pipeline: Sharp, layout: Layout, options: PrepareOptions): Sharp {
  if (layout.width === options.size && layout.height === options.size) return pipeline;
  const [r, g, b] = options.padColor ?? DEFAULT_PAD_COLOR;
  return pipeline.extend({
    left: layout.left,
    right: options.size - layout.width - layout.left,
    top: layout.top,
    bottom: options.size - layout.height - layout.top,
    background: { r, g, b, alpha: 1 },
  });
}

/**
 * The whole job as one libvips pipeline, when no axis is enlarged (the usual case: web images
 * are larger than the model's input). Same operations as the general path, without the raw
 * round trips.
 */
async function reducingPipeline(data: Buffer, options: PrepareOptions): Promise<Sharp | null> {
  const { width, height } = await probeImage(data);
  const layout = layoutFor(width, height, options);
  if (layout.width > width || layout.height > height) return null;
  let pipeline = displayedRgb(data, options.alphaColor ?? DEFAULT_ALPHA_COLOR);
  if (layout.width !== width || layout.height !== height) {
    pipeline = pipeline.resize(layout.width, layout.height, { fit: 'fill', kernel: RESIZE_KERNEL, fastShrinkOnLoad: false });
  }
  return padded(pipeline, layout, options);
}

/** General path: decoded pixels resized axis by axis (reduce, then enlarge), then padded. */
async function squareFrom(displayed: RgbImage, options: PrepareOptions): Promise<RgbImage> {
  const layout = layoutFor(displayed.width, displayed.height, options);
  const scaled = await resizeRgb(displayed, layout.width, layout.height);
  if (layout.width === options.size && layout.height === options.size) return scaled;
  return rawRgb(padded(fromRaw(scaled), layout, options));
}

async function rawRgb(pipeline: Sharp): Promise<RgbImage> {
  const { data, info } = await pipeline.raw({ depth: 'uchar' }).toBuffer({ resolveWithObject: true });
  if (info.channels !== 3) throw new Error(`expected 3 channels after conversion, got ${info.channels}`);
  return { data: new Uint8Array(data.buffer, data.byteOffset, data.byteLength), width: info.width, height: info.height };
}

/** Reads the header only (no pixel decode). Width and height are the displayed, post-orientation size. */
export async function probeImage(data: Buffer): Promise<ImageProbe> {
  checkInput(data);
  const meta = await run('read image header', () => sharp(data, { limitInputPixels: MAX_INPUT_PIXELS }).metadata());
  const width = meta.autoOrient?.width ?? meta.width;
  const height = meta.autoOrient?.height ?? meta.height;
  if (!width || !height) throw new Error(`image header has no dimensions (format ${String(meta.format)})`);
  const probe: ImageProbe = {
    width,
    height,
    format: String(meta.format),
    channels: meta.channels,
    space: String(meta.space),
    hasAlpha: meta.hasAlpha,
  };
  if (meta.orientation !== undefined) probe.orientation = meta.orientation;
  return probe;
}

/** The whole image as displayed (oriented, sRGB, alpha flattened), before any resize. */
export async function decodeDisplayed(data: Buffer, options: { alphaColor?: Rgb } = {}): Promise<RgbImage> {
  checkInput(data);
  if (options.alphaColor) validateOptions({ size: 1, mode: 'squash', alphaColor: options.alphaColor });
  return run('decode image', () => rawRgb(displayedRgb(data, options.alphaColor ?? DEFAULT_ALPHA_COLOR)));
}

/** Decoded, oriented, converted and resized pixels: size x size x 3 bytes, exactly what prepareImage encodes. */
export async function decodeToRgb(data: Buffer, options: PrepareOptions): Promise<RgbImage> {
  validateOptions(options);
  checkInput(data);
  const fast = await reducingPipeline(data, options);
  if (fast) return run('decode image', () => rawRgb(fast));
  const displayed = await run('decode image', () => rawRgb(displayedRgb(data, options.alphaColor ?? DEFAULT_ALPHA_COLOR)));
  return run('resize image', () => squareFrom(displayed, options));
}

/** The model-ready JPEG: size x size, sRGB, 3 channels, no metadata. */
export async function prepareImage(data: Buffer, options: PrepareOptions): Promise<Buffer> {
  validateOptions(options);
  checkInput(data);
  const jpeg = { quality: options.quality ?? DEFAULT_JPEG_QUALITY, chromaSubsampling: '4:4:4' } as const;
  const fast = await reducingPipeline(data, options);
  if (fast) return run('prepare image', () => fast.jpeg(jpeg).toBuffer());
  const pixels = await decodeToRgb(data, options);
  return run('encode JPEG', () => fromRaw(pixels).jpeg(jpeg).toBuffer());
}
