// Scene truth: what an image shows (size, background, objects with positions). Everything else
// (pixels, captions, questions) is derived from a Scene, so the ground truth lives in one place.
import { createHash } from 'node:crypto';
import { Rng } from '../util/rng.js';
import {
  BACKGROUND_COLORS,
  BACKGROUND_KINDS,
  MAX_GROUP_COUNT,
  MAX_OBJECTS,
  REGIONS,
  SHAPE_COLORS,
  SHAPE_KINDS,
  SIZES,
  type BackgroundKind,
  type NamedColor,
  type RegionName,
  type Rgb,
  type ShapeKind,
  type SizeName,
} from './vocabulary.js';

export interface Background {
  kind: BackgroundKind;
  /** Name from BACKGROUND_COLORS (or any colour name for blank images). */
  color: string;
  rgb: Rgb;
  /** Second tone: gradient end or alternate stripe. */
  rgb2?: Rgb;
  direction?: 'horizontal' | 'vertical' | 'diagonal';
  /** Stripe period in pixels. */
  period?: number;
  /** Noise amplitude (± per channel) and its seed, for the noise kind. */
  amplitude?: number;
  noiseSeed?: number;
}

export interface SceneObject {
  shape: ShapeKind;
  color: string;
  size: SizeName;
  /** Centre in pixels (rounded to 0.01 so the JSON is the exact truth the renderer used). */
  x: number;
  y: number;
  /** Bounding radius in pixels: the shape lies inside this circle around (x, y). */
  radius: number;
  rgb: Rgb;
  region: RegionName;
}

export interface Scene {
  width: number;
  height: number;
  background: Background;
  objects: SceneObject[];
}

/** Objects of one shape and colour (they share a size); captions and questions talk about groups. */
export interface Group {
  shape: ShapeKind;
  color: string;
  size: SizeName;
  count: number;
  /** Region of the single object when count is 1. */
  region?: RegionName;
}

/** Minimum RGB distance between a shape's colour and every background tone, so shapes stay visible. */
export const MIN_CONTRAST = 100;
/** Pixels kept free between objects and between an object and the image border. */
export const GAP = 2;

const round2 = (v: number): number => Math.round(v * 100) / 100;
const clampByte = (v: number): number => Math.max(0, Math.min(255, Math.round(v)));

export function colorDistance(a: Rgb, b: Rgb): number {
  return Math.hypot(a[0] - b[0], a[1] - b[1], a[2] - b[2]);
}

/** The region of the 3x3 grid a point falls in. */
export function regionAt(x: number, y: number, width: number, height: number): RegionName {
  const col = Math.min(2, Math.max(0, Math.floor((x / width) * 3)));
  const row = Math.min(2, Math.max(0, Math.floor((y / height) * 3)));
  const region = REGIONS.find((r) => r.col === col && r.row === row);
  return (region ?? REGIONS[4]).name;
}

/** Image size: shorter side 96..192, aspect 1..1.8, longer side at most 256 (web-like variety). */
function pickImageSize(rng: Rng): { width: number; height: number } {
  const short = rng.int(96, 192);
  const long = Math.min(256, Math.round(short * rng.pick([1, 1, 1.25, 1.33, 1.5, 1.78])));
  return rng.chance(0.5) ? { width: long, height: short } : { width: short, height: long };
}

function shiftTone(rgb: Rgb, amount: number): Rgb {
  return [clampByte(rgb[0] + amount), clampByte(rgb[1] + amount), clampByte(rgb[2] + amount)];
}

function pickBackground(rng: Rng): Background {
  const kind = rng.pick(BACKGROUND_KINDS);
  const base = rng.pick(BACKGROUND_COLORS);
  const dark = base.rgb[0] + base.rgb[1] + base.rgb[2] < 3 * 128;
  const bg: Background = { kind, color: base.name, rgb: base.rgb };
  if (kind === 'gradient') {
    bg.rgb = shiftTone(base.rgb, dark ? -12 : 14);
    bg.rgb2 = shiftTone(base.rgb, dark ? 26 : -26);
    bg.direction = rng.pick(['horizontal', 'vertical'] as const);
  } else if (kind === 'stripes') {
    bg.rgb2 = shiftTone(base.rgb, dark ? 30 : -30);
    bg.direction = rng.pick(['horizontal', 'vertical', 'diagonal'] as const);
    bg.period = rng.int(8, 24);
  } else if (kind === 'noise') {
    bg.amplitude = rng.int(8, 16);
    bg.noiseSeed = rng.nextU32();
  }
  return bg;
}

/** Every tone a background can show, for the contrast check (noise stays within ± amplitude). */
function backgroundTones(bg: Background): Rgb[] {
  const tones: Rgb[] = [bg.rgb];
  if (bg.rgb2) tones.push(bg.rgb2);
  if (bg.amplitude) tones.push(shiftTone(bg.rgb, bg.amplitude), shiftTone(bg.rgb, -bg.amplitude));
  return tones;
}

export function colorsVisibleOn(bg: Background): NamedColor[] {
  const tones = backgroundTones(bg);
  return SHAPE_COLORS.filter((c) => tones.every((t) => colorDistance(c.rgb, t) >= MIN_CONTRAST));
}

interface GroupPlan {
  shape: ShapeKind;
  color: NamedColor;
  size: (typeof SIZES)[number];
  count: number;
}

function planGroups(rng: Rng, bg: Background): GroupPlan[] {
  const colors = colorsVisibleOn(bg);
  const nGroups = rng.pick([1, 1, 2, 2, 2, 3, 3]);
  const plans: GroupPlan[] = [];
  let total = 0;
  for (let g = 0; g < nGroups; g++) {
    const shape = rng.pick(SHAPE_KINDS);
    const color = rng.pick(colors);
    if (plans.some((p) => p.shape === shape && p.color.name === color.name)) continue;
    const count = Math.min(rng.pick([1, 1, 1, 2, 2, 3, 4].filter((c) => c <= MAX_GROUP_COUNT)), MAX_OBJECTS - total);
    if (count <= 0) break;
    plans.push({ shape, color, size: rng.pick(SIZES), count });
    total += count;
  }
  return plans;
}

/** Tries to place every planned object without overlap; returns null when the layout fails. */
function placeObjects(rng: Rng, plans: GroupPlan[], width: number, height: number): SceneObject[] | null {
  const minSide = Math.min(width, height);
  const objects: SceneObject[] = [];
  const usedSingleRegions = new Set<RegionName>();
  for (const plan of plans) {
    for (let i = 0; i < plan.count; i++) {
      // Small jitter keeps sizes natural while the three size classes stay far apart.
      const radius = round2(Math.max(5, plan.size.radiusFraction * minSide * rng.uniform(0.92, 1.08)));
      let placed: SceneObject | null = null;
      for (let attempt = 0; attempt < 60 && !placed; attempt++) {
        let x: number;
        let y: number;
        if (plan.count === 1) {
          // A lone object gets a position word, so keep its centre well inside one grid cell.
          const region = rng.pick(REGIONS.filter((r) => !usedSingleRegions.has(r.name)));
          x = ((region.col + rng.uniform(0.2, 0.8)) * width) / 3;
          y = ((region.row + rng.uniform(0.2, 0.8)) * height) / 3;
        } else {
          x = rng.uniform(radius + GAP, width - radius - GAP);
          y = rng.uniform(radius + GAP, height - radius - GAP);
        }
        x = round2(x);
        y = round2(y);
        if (x - radius < GAP || y - radius < GAP || x + radius > width - GAP || y + radius > height - GAP) continue;
        if (objects.some((o) => Math.hypot(o.x - x, o.y - y) < o.radius + radius + GAP)) continue;
        const rgb: Rgb = [
          clampByte(plan.color.rgb[0] + rng.int(-8, 8)),
          clampByte(plan.color.rgb[1] + rng.int(-8, 8)),
          clampByte(plan.color.rgb[2] + rng.int(-8, 8)),
        ];
        placed = { shape: plan.shape, color: plan.color.name, size: plan.size.name, x, y, radius, rgb, region: regionAt(x, y, width, height) };
      }
      if (!placed) return null;
      if (plan.count === 1) usedSingleRegions.add(placed.region);
      objects.push(placed);
    }
  }
  return objects;
}

/** A random scene: 1-3 groups of shapes, up to MAX_OBJECTS objects, none overlapping, all inside. */
export function generateScene(rng: Rng): Scene {
  const { width, height } = pickImageSize(rng);
  const background = pickBackground(rng);
  for (let attempt = 0; ; attempt++) {
    const plans = planGroups(rng, background);
    // After many failed layouts fall back to one small group, which always fits.
    if (attempt > 20) plans.splice(1);
    if (attempt > 30) for (const p of plans) [p.count, p.size] = [1, SIZES[0]];
    const objects = placeObjects(rng, plans, width, height);
    if (objects && objects.length > 0) return { width, height, background, objects };
  }
}

/** A near-blank image: one flat colour with faint noise, nothing on it. */
export function generateBlankScene(rng: Rng): Scene {
  const { width, height } = pickImageSize(rng);
  const base = rng.pick(BACKGROUND_COLORS);
  return {
    width,
    height,
    background: { kind: 'noise', color: base.name, rgb: base.rgb, amplitude: rng.int(1, 4), noiseSeed: rng.nextU32() },
    objects: [],
  };
}

/** Groups of identical objects (same shape and colour), in order of first appearance. */
export function groupsOf(scene: Scene): Group[] {
  const groups: Group[] = [];
  for (const o of scene.objects) {
    const g = groups.find((x) => x.shape === o.shape && x.color === o.color);
    if (g) {
      g.count += 1;
      delete g.region;
    } else groups.push({ shape: o.shape, color: o.color, size: o.size, count: 1, region: o.region });
  }
  return groups;
}

/** Stable content hash of a scene (32 hex chars); equal scenes hash equal. */
export function sceneHash(scene: Scene): string {
  return createHash('sha256').update(JSON.stringify(scene)).digest('hex').slice(0, 32);
}

/** Hash of what a scene contains, ignoring positions and image size: "same picture, moved around". */
export function compositionHash(scene: Scene): string {
  const groups = groupsOf(scene)
    .map((g) => `${g.count}:${g.size}:${g.color}:${g.shape}`)
    .sort();
  const bg = `${scene.background.kind}:${scene.background.color}`;
  return createHash('sha256').update(`${bg}|${groups.join(',')}`).digest('hex').slice(0, 32);
}
