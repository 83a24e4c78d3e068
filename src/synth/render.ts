// Draws a Scene into a raw RGB buffer (row-major, 3 bytes per pixel). No canvas dependency: the
// shapes are polygons (or a circle) filled scanline by scanline at pixel centres, which is cheap
// and exact enough that the pixel at each object's centre has the object's colour.
import type { Background, Scene, SceneObject } from './scene.js';
import type { ShapeKind } from './vocabulary.js';

type Point = readonly [number, number];

const NOISE_SLACK = 1021;

/** Outline of a shape around the origin with bounding radius r (every vertex within r). */
export function shapePolygon(shape: Exclude<ShapeKind, 'circle'>, r: number): Point[] {
  switch (shape) {
    case 'square': {
      const a = 0.7 * r;
      return [[-a, -a], [a, -a], [a, a], [-a, a]];
    }
    case 'triangle':
      return [[0, -r], [0.866 * r, 0.5 * r], [-0.866 * r, 0.5 * r]];
    case 'diamond':
      return [[0, -r], [0.75 * r, 0], [0, r], [-0.75 * r, 0]];
    case 'hexagon':
      return Array.from({ length: 6 }, (_, k) => [r * Math.cos((k * Math.PI) / 3), r * Math.sin((k * Math.PI) / 3)] as const);
    case 'star':
      return Array.from({ length: 10 }, (_, k) => {
        const radius = k % 2 === 0 ? r : 0.45 * r;
        const angle = -Math.PI / 2 + (k * Math.PI) / 5;
        return [radius * Math.cos(angle), radius * Math.sin(angle)] as const;
      });
  }
}

/** Copies row 0 (already filled) into every other row. */
function repeatFirstRow(buf: Uint8Array, width: number, height: number): void {
  const row = width * 3;
  for (let y = 1; y < height; y++) buf.copyWithin(y * row, 0, row);
}

/** Fills row y with one colour: one pixel, then doubling copies (memcpy instead of a pixel loop). */
function fillRow(buf: Uint8Array, y: number, width: number, r: number, g: number, b: number): void {
  const start = y * width * 3;
  const end = start + width * 3;
  buf[start] = r;
  buf[start + 1] = g;
  buf[start + 2] = b;
  for (let filled = 3; start + filled < end; filled *= 2) buf.copyWithin(start + filled, start, Math.min(start + 2 * filled, end) - filled);
}

// Backgrounds are built a row at a time and copied where rows repeat: drawing must stay far
// cheaper than JPEG encoding for synth to reach thousands of samples per second.
function fillBackground(buf: Uint8Array, width: number, height: number, bg: Background): void {
  const [r1, g1, b1] = bg.rgb;
  const [r2, g2, b2] = bg.rgb2 ?? bg.rgb;
  const row = width * 3;
  if (bg.kind === 'gradient') {
    if (bg.direction === 'vertical') {
      for (let y = 0; y < height; y++) {
        const t = y / Math.max(1, height - 1);
        fillRow(buf, y, width, r1 + (r2 - r1) * t, g1 + (g2 - g1) * t, b1 + (b2 - b1) * t);
      }
      return;
    }
    for (let x = 0; x < width; x++) {
      const t = x / Math.max(1, width - 1);
      buf[x * 3] = r1 + (r2 - r1) * t;
      buf[x * 3 + 1] = g1 + (g2 - g1) * t;
      buf[x * 3 + 2] = b1 + (b2 - b1) * t;
    }
    repeatFirstRow(buf, width, height);
    return;
  }
  if (bg.kind === 'stripes') {
    const half = Math.max(1, (bg.period ?? 16) / 2);
    const band = (along: number): boolean => Math.floor(along / half) % 2 === 1;
    if (bg.direction === 'horizontal') {
      for (let y = 0; y < height; y++) fillRow(buf, y, width, band(y) ? r2 : r1, band(y) ? g2 : g1, band(y) ? b2 : b1);
      return;
    }
    if (bg.direction === 'vertical') {
      for (let x = 0; x < width; x++) {
        const alt = band(x);
        buf[x * 3] = alt ? r2 : r1;
        buf[x * 3 + 1] = alt ? g2 : g1;
        buf[x * 3 + 2] = alt ? b2 : b1;
      }
      repeatFirstRow(buf, width, height);
      return;
    }
    // Diagonal: row y is the pattern of x + y, i.e. one long row read from offset y.
    const pattern = new Uint8Array((width + height) * 3);
    for (let k = 0; k < width + height; k++) {
      const alt = band(k);
      pattern[k * 3] = alt ? r2 : r1;
      pattern[k * 3 + 1] = alt ? g2 : g1;
      pattern[k * 3 + 2] = alt ? b2 : b1;
    }
    for (let y = 0; y < height; y++) buf.set(pattern.subarray(y * 3, y * 3 + row), y * row);
    return;
  }
  if (bg.kind === 'noise') {
    // Luminance noise (one offset for all three channels) from a seeded xorshift32. One random
    // line of NOISE_SLACK + width pixels is drawn; each row copies a window of it starting at a
    // random offset, which looks like independent noise per row at a fraction of the cost.
    let s = (bg.noiseSeed ?? 1) >>> 0 || 1;
    const next = (): number => {
      s ^= s << 13;
      s ^= s >>> 17;
      s ^= s << 5;
      s >>>= 0;
      return s;
    };
    const amp = bg.amplitude ?? 0;
    const span = 2 * amp + 1;
    const length = width + NOISE_SLACK;
    const line = new Uint8Array(length * 3);
    for (let p = 0, i = 0; p < length; p++, i += 3) {
      const d = (next() % span) - amp;
      line[i] = Math.max(0, Math.min(255, r1 + d));
      line[i + 1] = Math.max(0, Math.min(255, g1 + d));
      line[i + 2] = Math.max(0, Math.min(255, b1 + d));
    }
    for (let y = 0; y < height; y++) {
      const offset = (next() % NOISE_SLACK) * 3;
      buf.set(line.subarray(offset, offset + row), y * row);
    }
    return;
  }
  fillRow(buf, 0, width, r1, g1, b1);
  repeatFirstRow(buf, width, height);
}

function fillSpan(buf: Uint8Array, width: number, y: number, xFrom: number, xTo: number, o: SceneObject): void {
  // Pixel x is covered when its centre x + 0.5 lies in [xFrom, xTo].
  const start = Math.max(0, Math.ceil(xFrom - 0.5));
  const end = Math.min(width - 1, Math.floor(xTo - 0.5));
  const [r, g, b] = o.rgb;
  for (let x = start, i = (y * width + start) * 3; x <= end; x++, i += 3) {
    buf[i] = r;
    buf[i + 1] = g;
    buf[i + 2] = b;
  }
}

function drawObject(buf: Uint8Array, width: number, height: number, o: SceneObject): void {
  const yStart = Math.max(0, Math.floor(o.y - o.radius));
  const yEnd = Math.min(height - 1, Math.ceil(o.y + o.radius));
  if (o.shape === 'circle') {
    for (let y = yStart; y <= yEnd; y++) {
      const dy = y + 0.5 - o.y;
      const h2 = o.radius * o.radius - dy * dy;
      if (h2 < 0) continue;
      const h = Math.sqrt(h2);
      fillSpan(buf, width, y, o.x - h, o.x + h, o);
    }
    return;
  }
  const poly = shapePolygon(o.shape, o.radius).map(([px, py]) => [px + o.x, py + o.y] as const);
  const xs: number[] = [];
  for (let y = yStart; y <= yEnd; y++) {
    const cy = y + 0.5;
    xs.length = 0;
    for (let k = 0; k < poly.length; k++) {
      const [ax, ay] = poly[k] as Point;
      const [bx, by] = poly[(k + 1) % poly.length] as Point;
      // Half-open rule so a scanline through a vertex counts each edge once.
      if ((ay <= cy && by > cy) || (by <= cy && ay > cy)) xs.push(ax + ((cy - ay) / (by - ay)) * (bx - ax));
    }
    xs.sort((a, b) => a - b);
    for (let k = 0; k + 1 < xs.length; k += 2) fillSpan(buf, width, y, xs[k] as number, xs[k + 1] as number, o);
  }
}

/** The scene as raw RGB pixels (width * height * 3 bytes). */
export function renderScene(scene: Scene): Uint8Array {
  const buf = new Uint8Array(scene.width * scene.height * 3);
  fillBackground(buf, scene.width, scene.height, scene.background);
  for (const o of scene.objects) drawObject(buf, scene.width, scene.height, o);
  return buf;
}
