// The closed vocabulary of the synthetic dataset: every word a caption, question or answer can
// use comes from here, so captions can be checked (and parsed back) against the scene truth, and
// the bundled tiny tokenizer can be trained on text built from it (see corpus.ts: captionCorpus).

export type Rgb = readonly [number, number, number];

export interface NamedColor {
  readonly name: string;
  readonly rgb: Rgb;
}

/** Colours of shapes. Names are single words so a caption parser can find them unambiguously. */
export const SHAPE_COLORS: readonly NamedColor[] = [
  { name: 'red', rgb: [214, 39, 40] },
  { name: 'orange', rgb: [245, 130, 20] },
  { name: 'yellow', rgb: [240, 205, 30] },
  { name: 'green', rgb: [44, 160, 44] },
  { name: 'cyan', rgb: [30, 200, 210] },
  { name: 'blue', rgb: [31, 80, 220] },
  { name: 'purple', rgb: [135, 60, 180] },
  { name: 'pink', rgb: [240, 110, 180] },
  { name: 'brown', rgb: [130, 75, 35] },
  { name: 'black', rgb: [20, 20, 20] },
  { name: 'white', rgb: [250, 250, 250] },
];

/** Background base colours. Two-word names are fine here: they only occur in background phrases. */
export const BACKGROUND_COLORS: readonly NamedColor[] = [
  { name: 'white', rgb: [236, 236, 230] },
  { name: 'grey', rgb: [190, 190, 190] },
  { name: 'dark grey', rgb: [72, 72, 78] },
  { name: 'beige', rgb: [222, 208, 178] },
  { name: 'light blue', rgb: [188, 208, 236] },
  { name: 'light green', rgb: [196, 226, 192] },
  { name: 'navy', rgb: [28, 38, 84] },
];

export const SHAPE_KINDS = ['circle', 'square', 'triangle', 'diamond', 'star', 'hexagon'] as const;
export type ShapeKind = (typeof SHAPE_KINDS)[number];

export const SHAPE_PLURALS: Readonly<Record<ShapeKind, string>> = {
  circle: 'circles',
  square: 'squares',
  triangle: 'triangles',
  diamond: 'diamonds',
  star: 'stars',
  hexagon: 'hexagons',
};

/** Object sizes: bounding radius as a fraction of the image's shorter side. */
export const SIZES = [
  { name: 'small', radiusFraction: 0.065 },
  { name: 'medium', radiusFraction: 0.1 },
  { name: 'large', radiusFraction: 0.14 },
] as const;
export type SizeName = (typeof SIZES)[number]['name'];

/** A 3x3 grid of regions; `col`/`row` are 0..2 from the left/top. */
export const REGIONS = [
  { name: 'top left', col: 0, row: 0, phrase: 'in the top left corner' },
  { name: 'top', col: 1, row: 0, phrase: 'at the top' },
  { name: 'top right', col: 2, row: 0, phrase: 'in the top right corner' },
  { name: 'left', col: 0, row: 1, phrase: 'on the left' },
  { name: 'center', col: 1, row: 1, phrase: 'in the center' },
  { name: 'right', col: 2, row: 1, phrase: 'on the right' },
  { name: 'bottom left', col: 0, row: 2, phrase: 'in the bottom left corner' },
  { name: 'bottom', col: 1, row: 2, phrase: 'at the bottom' },
  { name: 'bottom right', col: 2, row: 2, phrase: 'in the bottom right corner' },
] as const;
export type RegionName = (typeof REGIONS)[number]['name'];

/** Count words; index = count. Index 0 is used in answers ("no stars"). */
export const COUNT_WORDS = ['no', 'one', 'two', 'three', 'four', 'five', 'six', 'seven', 'eight', 'nine', 'ten'] as const;

/** Largest number of objects of one kind in a scene, and in a whole scene. */
export const MAX_GROUP_COUNT = 4;
export const MAX_OBJECTS = 7;

export const BACKGROUND_KINDS = ['solid', 'gradient', 'noise', 'stripes'] as const;
export type BackgroundKind = (typeof BACKGROUND_KINDS)[number];

/** How each background kind reads in a caption: `{color}` is the background colour's name. */
export const BACKGROUND_PHRASES: Readonly<Record<BackgroundKind, readonly string[]>> = {
  solid: ['plain {color} background', 'solid {color} background', '{color} background'],
  gradient: ['{color} gradient background', 'softly graded {color} background', 'shaded {color} background'],
  noise: ['speckled {color} background', 'grainy {color} background', 'textured {color} background'],
  stripes: ['striped {color} background', '{color} background with stripes', 'stripy {color} background'],
};

/**
 * Caption templates. `{objects}` is the list of object groups ("two red circles and a blue square"),
 * `{background}` a background phrase ("striped grey background"), `{be}` is/are agreeing with the
 * first group. Templates without `{background}` give shorter captions so lengths vary.
 */
export const CAPTION_TEMPLATES: readonly string[] = [
  '{Objects} on a {background}.',
  '{Objects} on a {background}',
  'A {background} with {objects}.',
  'An image of {objects} on a {background}.',
  'A picture showing {objects} against a {background}.',
  'There {be} {objects} on a {background}.',
  'Simple shapes: {objects}, drawn over a {background}.',
  'A drawing of {objects}.',
  '{Objects}.',
  'This image shows {objects} on a {background}.',
  'Illustration with {objects} placed on a {background}.',
  'Flat graphic of {objects} over a {background}.',
];

/** Words that gibberish captions draw from, besides random letters. */
export const FILLER_WORDS: readonly string[] = [
  'the', 'of', 'and', 'with', 'over', 'under', 'image', 'photo', 'blob', 'thing', 'click', 'here',
  'buy', 'now', 'free', 'best', 'quality', 'download', 'page', 'lorem', 'ipsum', 'dolor', 'sit', 'amet',
];

/** Everything a caption parser needs to recognise: shape words in singular and plural. */
export function shapeFromWord(word: string): ShapeKind | undefined {
  const w = word.toLowerCase();
  for (const kind of SHAPE_KINDS) if (w === kind || w === SHAPE_PLURALS[kind]) return kind;
  return undefined;
}

export function regionByName(name: RegionName): (typeof REGIONS)[number] {
  const region = REGIONS.find((r) => r.name === name);
  if (!region) throw new Error(`unknown region '${name}'`);
  return region;
}

export function countWord(n: number): string {
  const word = COUNT_WORDS[n];
  if (word === undefined) throw new Error(`no count word for ${n}`);
  return word;
}
