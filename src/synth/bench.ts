// A held-out multiple-choice benchmark in MMBench's TSV layout. Scenes come from their own seed
// stream and any scene that equals a training scene (by scene hash) is redrawn.
import type { Rng } from '../util/rng.js';
import { encodeScene, type EncodeSpec, type SceneEncoder } from './encode.js';
import { colorsVisibleOn, generateScene, groupsOf, sceneHash, type Scene } from './scene.js';
import { streamRng } from './streams.js';
import { REGIONS, SHAPE_COLORS, SHAPE_KINDS, SHAPE_PLURALS } from './vocabulary.js';

export const BENCH_COLUMNS = ['index', 'question', 'hint', 'A', 'B', 'C', 'D', 'answer', 'category', 'image', 'l2-category', 'split'] as const;
export const LETTERS = ['A', 'B', 'C', 'D'] as const;
export type Letter = (typeof LETTERS)[number];

/** Skills asked about, with MMBench-style second-level categories. */
export const BENCH_CATEGORIES = {
  object_counting: 'fine-grained perception (instance-level)',
  color_recognition: 'fine-grained perception (single-instance)',
  shape_recognition: 'fine-grained perception (single-instance)',
  object_localization: 'fine-grained perception (instance-level)',
} as const;
export type BenchCategory = keyof typeof BENCH_CATEGORIES;
const CATEGORY_ORDER = Object.keys(BENCH_CATEGORIES) as BenchCategory[];

export interface BenchQuestion {
  index: number;
  category: BenchCategory;
  question: string;
  options: Record<Letter, string>;
  answer: Letter;
  scene: Scene;
  sceneHash: string;
  /** How many drawn scenes were rejected because they equal a training scene. */
  rejectedAsTraining: number;
}

/** Answer letters for `n` questions: each letter n/4 times (±1), in an order fixed by the seed. */
export function planAnswerLetters(seed: number, n: number): Letter[] {
  const letters = Array.from({ length: n }, (_, i) => LETTERS[i % 4] as Letter);
  return streamRng(seed, 'answerLetters', n).shuffle(letters);
}

interface Asked {
  question: string;
  correct: string;
  distractors: string[];
}

/** Plausible wrong options: preferred ones first (e.g. present in the image), then the rest. */
function distractorsFrom(rng: Rng, correct: string, preferred: string[], pool: string[]): string[] {
  const pick = rng.shuffle([...new Set(preferred)].filter((x) => x !== correct));
  const rest = rng.shuffle(pool.filter((x) => x !== correct && !pick.includes(x)));
  return [...pick, ...rest].slice(0, 3);
}

function ask(category: BenchCategory, scene: Scene, rng: Rng): Asked | null {
  const groups = groupsOf(scene);
  switch (category) {
    case 'object_counting': {
      const shape = rng.pick([...new Set(scene.objects.map((o) => o.shape))]);
      const n = scene.objects.filter((o) => o.shape === shape).length;
      const near = [n + 1, n - 1, n + 2, n - 2, n + 3].filter((x) => x >= 0);
      const distractors = rng.shuffle(near.slice(0, 4)).slice(0, 3).map(String);
      return { question: `How many ${SHAPE_PLURALS[shape]} are in the image?`, correct: String(n), distractors };
    }
    case 'color_recognition': {
      const shapes = SHAPE_KINDS.filter((s) => new Set(scene.objects.filter((o) => o.shape === s).map((o) => o.color)).size === 1);
      if (shapes.length === 0) return null;
      const shape = rng.pick(shapes);
      const color = (scene.objects.find((o) => o.shape === shape) as Scene['objects'][number]).color;
      const single = scene.objects.filter((o) => o.shape === shape).length === 1;
      const question = single ? `What color is the ${shape}?` : `What color are the ${SHAPE_PLURALS[shape]}?`;
      const preferred = [...scene.objects.map((o) => o.color), ...colorsVisibleOn(scene.background).map((c) => c.name)];
      return { question, correct: color, distractors: distractorsFrom(rng, color, preferred, SHAPE_COLORS.map((c) => c.name)) };
    }
    case 'shape_recognition': {
      const colors = SHAPE_COLORS.map((c) => c.name).filter((c) => new Set(scene.objects.filter((o) => o.color === c).map((o) => o.shape)).size === 1);
      if (colors.length === 0) return null;
      const color = rng.pick(colors);
      const shape = (scene.objects.find((o) => o.color === color) as Scene['objects'][number]).shape;
      const single = scene.objects.filter((o) => o.color === color).length === 1;
      const question = single ? `What shape is the ${color} object?` : `What shape are the ${color} objects?`;
      const preferred = scene.objects.map((o) => o.shape);
      return { question, correct: shape, distractors: distractorsFrom(rng, shape, preferred, [...SHAPE_KINDS]) };
    }
    case 'object_localization': {
      const singles = groups.filter((g) => g.count === 1 && g.region);
      if (singles.length === 0) return null;
      const g = rng.pick(singles);
      const region = g.region as string;
      const question = `Where is the ${g.color} ${g.shape} in the image?`;
      return { question, correct: region, distractors: distractorsFrom(rng, region, [], REGIONS.map((r) => r.name)) };
    }
  }
}

/**
 * Question `index`: its category cycles through the skills, its correct letter comes from the
 * balanced plan, and its scene is redrawn until the question applies and it is not a training scene.
 */
export function planBenchQuestion(seed: number, index: number, answer: Letter, trainingHashes: ReadonlySet<string>): BenchQuestion {
  const category = CATEGORY_ORDER[index % CATEGORY_ORDER.length] as BenchCategory;
  let rejectedAsTraining = 0;
  for (let attempt = 0; ; attempt++) {
    const rng = streamRng(seed, 'bench', index, attempt);
    const scene = generateScene(rng);
    const hash = sceneHash(scene);
    if (trainingHashes.has(hash)) {
      rejectedAsTraining++;
      continue;
    }
    const asked = ask(category, scene, rng);
    if (!asked) continue;
    const wrong = rng.shuffle([...asked.distractors]);
    const options = {} as Record<Letter, string>;
    for (const letter of LETTERS) options[letter] = letter === answer ? asked.correct : (wrong.shift() as string);
    return { index, category, question: asked.question, options, answer, scene, sceneHash: hash, rejectedAsTraining };
  }
}

const BENCH_IMAGE: EncodeSpec = { format: 'jpg', quality: 90 };

export async function benchTsvRow(q: BenchQuestion, encode: SceneEncoder = encodeScene): Promise<string> {
  const jpeg = await encode(q.scene, BENCH_IMAGE);
  const cells = [
    String(q.index),
    q.question,
    '',
    q.options.A,
    q.options.B,
    q.options.C,
    q.options.D,
    q.answer,
    q.category,
    jpeg.toString('base64'),
    BENCH_CATEGORIES[q.category],
    'dev',
  ];
  return cells.join('\t');
}
