// Questions and answers about a scene, for SFT conversations. Every answer is computed from the
// scene truth; `kind` names the skill so tests (and people) can check each one.
import type { Rng } from '../util/rng.js';
import type { Scene } from './scene.js';
import { groupsOf } from './scene.js';
import { backgroundPhrase, captionForScene } from './caption.js';
import { SHAPE_COLORS, SHAPE_KINDS, SHAPE_PLURALS, countWord, regionByName, type ShapeKind } from './vocabulary.js';

export type QaKind =
  | 'count_shape'
  | 'count_color'
  | 'count_total'
  | 'color_of_shape'
  | 'shape_of_color'
  | 'position'
  | 'size'
  | 'background'
  | 'exists'
  | 'describe';

export interface QaPair {
  kind: QaKind;
  question: string;
  answer: string;
  /** The fact the answer states, for checking: a count, a colour, a shape, a region, yes/no. */
  truth: string | number | boolean;
}

const noun = (shape: ShapeKind, n: number): string => (n === 1 ? shape : SHAPE_PLURALS[shape]);

function countSentence(n: number, singular: string, plural: string): string {
  if (n === 0) return `There are no ${plural}.`;
  if (n === 1) return `There is one ${singular}.`;
  return `There are ${countWord(n)} ${plural}.`;
}

type Maker = (scene: Scene, rng: Rng) => QaPair | null;

const makers: Record<QaKind, Maker> = {
  count_shape(scene, rng) {
    const present = [...new Set(scene.objects.map((o) => o.shape))];
    const shape = rng.chance(0.25) ? rng.pick(SHAPE_KINDS) : rng.pick(present);
    const n = scene.objects.filter((o) => o.shape === shape).length;
    const q = rng.pick([`How many ${SHAPE_PLURALS[shape]} are there?`, `How many ${SHAPE_PLURALS[shape]} can you see in the image?`, `Count the ${SHAPE_PLURALS[shape]} in this picture.`]);
    return { kind: 'count_shape', question: q, answer: countSentence(n, shape, SHAPE_PLURALS[shape]), truth: n };
  },
  count_color(scene, rng) {
    const present = [...new Set(scene.objects.map((o) => o.color))];
    const color = rng.chance(0.2) ? rng.pick(SHAPE_COLORS).name : rng.pick(present);
    const n = scene.objects.filter((o) => o.color === color).length;
    const q = rng.pick([`How many ${color} shapes are there?`, `How many ${color} objects are in the image?`]);
    return { kind: 'count_color', question: q, answer: countSentence(n, `${color} shape`, `${color} shapes`), truth: n };
  },
  count_total(scene, rng) {
    const n = scene.objects.length;
    const q = rng.pick(['How many shapes are in the image?', 'How many objects are there in total?']);
    const a = n === 1 ? 'There is one shape in total.' : `There are ${countWord(n)} shapes in total.`;
    return { kind: 'count_total', question: q, answer: a, truth: n };
  },
  color_of_shape(scene, rng) {
    const candidates = SHAPE_KINDS.filter((s) => {
      const colors = new Set(scene.objects.filter((o) => o.shape === s).map((o) => o.color));
      return colors.size === 1;
    });
    if (candidates.length === 0) return null;
    const shape = rng.pick(candidates);
    const objs = scene.objects.filter((o) => o.shape === shape);
    const color = (objs[0] as (typeof objs)[number]).color;
    const one = objs.length === 1;
    const q = one ? `What color is the ${shape}?` : `What color are the ${SHAPE_PLURALS[shape]}?`;
    const a = one ? `The ${shape} is ${color}.` : `The ${SHAPE_PLURALS[shape]} are ${color}.`;
    return { kind: 'color_of_shape', question: q, answer: a, truth: color };
  },
  shape_of_color(scene, rng) {
    const candidates = SHAPE_COLORS.map((c) => c.name).filter((c) => new Set(scene.objects.filter((o) => o.color === c).map((o) => o.shape)).size === 1);
    if (candidates.length === 0) return null;
    const color = rng.pick(candidates);
    const objs = scene.objects.filter((o) => o.color === color);
    const shape = (objs[0] as (typeof objs)[number]).shape;
    const one = objs.length === 1;
    const q = one ? `What shape is the ${color} object?` : `What shape are the ${color} objects?`;
    const a = one ? `It is a ${shape}.` : `They are ${SHAPE_PLURALS[shape]}.`;
    return { kind: 'shape_of_color', question: q, answer: a, truth: shape };
  },
  position(scene, rng) {
    const singles = groupsOf(scene).filter((g) => g.count === 1 && g.region);
    if (singles.length === 0) return null;
    const g = rng.pick(singles);
    const region = regionByName(g.region as NonNullable<typeof g.region>);
    const q = rng.pick([`Where is the ${g.color} ${g.shape}?`, `In which part of the image is the ${g.color} ${g.shape}?`]);
    return { kind: 'position', question: q, answer: `The ${g.color} ${g.shape} is ${region.phrase}.`, truth: region.name };
  },
  size(scene, rng) {
    const g = rng.pick(groupsOf(scene));
    const what = `${g.color} ${noun(g.shape, g.count)}`;
    const q = g.count === 1 ? `Is the ${what} small, medium or large?` : `Are the ${what} small, medium or large?`;
    const a = g.count === 1 ? `The ${what} is ${g.size}.` : `The ${what} are ${g.size}.`;
    return { kind: 'size', question: q, answer: a, truth: g.size };
  },
  background(scene, rng) {
    const q = rng.pick(['What does the background look like?', 'Describe the background.']);
    return { kind: 'background', question: q, answer: `It is a ${backgroundPhrase(scene.background, rng)}.`, truth: `${scene.background.kind}:${scene.background.color}` };
  },
  exists(scene, rng) {
    const shape = rng.pick(SHAPE_KINDS);
    const color = rng.chance(0.5) && scene.objects.length > 0 ? rng.pick(scene.objects).color : rng.pick(SHAPE_COLORS).name;
    const n = scene.objects.filter((o) => o.shape === shape && o.color === color).length;
    const q = `Is there ${/^[aeiou]/.test(color) ? 'an' : 'a'} ${color} ${shape} in the image?`;
    const a = n === 0 ? `No, there is no ${color} ${shape}.` : n === 1 ? `Yes, there is one ${color} ${shape}.` : `Yes, there are ${countWord(n)} ${color} ${SHAPE_PLURALS[shape]}.`;
    return { kind: 'exists', question: q, answer: a, truth: n > 0 };
  },
  describe(scene, rng) {
    const q = rng.pick(['Describe the image.', 'Write a short caption for this image.', 'What is shown in this picture?']);
    return { kind: 'describe', question: q, answer: captionForScene(scene, rng), truth: '' };
  },
};

export const QA_KINDS = Object.keys(makers) as QaKind[];

/** `n` question/answer pairs about the scene, each of a different kind. */
export function questionsForScene(scene: Scene, rng: Rng, n: number): QaPair[] {
  const kinds = rng.shuffle([...QA_KINDS]);
  const pairs: QaPair[] = [];
  for (const kind of kinds) {
    if (pairs.length >= n) break;
    const pair = makers[kind](scene, rng);
    if (pair) pairs.push(pair);
  }
  return pairs;
}
