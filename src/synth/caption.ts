// Captions from scene truth, and a parser that reads a caption back into groups (tests and noise
// checks use it to confirm that a caption says exactly what the scene holds).
import type { Rng } from '../util/rng.js';
import type { Background, Group, Scene } from './scene.js';
import { groupsOf } from './scene.js';
import {
  BACKGROUND_PHRASES,
  CAPTION_TEMPLATES,
  COUNT_WORDS,
  SHAPE_COLORS,
  SHAPE_PLURALS,
  SIZES,
  countWord,
  regionByName,
  shapeFromWord,
  type ShapeKind,
  type SizeName,
} from './vocabulary.js';

export interface CaptionStyle {
  /** Probability that a group's size word is mentioned. */
  sizeWord: number;
  /** Probability that a lone object's position is mentioned. */
  positionWord: number;
}

const DEFAULT_STYLE: CaptionStyle = { sizeWord: 0.4, positionWord: 0.6 };

function article(word: string): string {
  return /^[aeiou]/.test(word) ? 'an' : 'a';
}

function capitalize(text: string): string {
  return text.charAt(0).toUpperCase() + text.slice(1);
}

/** "two large red circles", "a blue square in the top left corner". */
function groupPhrase(group: Group, rng: Rng, style: CaptionStyle = DEFAULT_STYLE): string {
  const words: string[] = [];
  if (rng.chance(style.sizeWord)) words.push(group.size);
  words.push(group.color, group.count === 1 ? group.shape : SHAPE_PLURALS[group.shape]);
  const head = group.count === 1 ? `${article(words[0] as string)} ${words.join(' ')}` : `${countWord(group.count)} ${words.join(' ')}`;
  if (group.count === 1 && group.region && rng.chance(style.positionWord)) return `${head} ${regionByName(group.region).phrase}`;
  return head;
}

function joinList(items: string[]): string {
  if (items.length <= 1) return items.join('');
  return `${items.slice(0, -1).join(', ')} and ${items[items.length - 1]}`;
}

export function backgroundPhrase(bg: Background, rng: Rng): string {
  return rng.pick(BACKGROUND_PHRASES[bg.kind]).replace('{color}', bg.color);
}

/** A caption for the given groups on the given background (the groups may differ from the image's). */
export function captionForGroups(groups: Group[], bg: Background, rng: Rng, style: CaptionStyle = DEFAULT_STYLE): string {
  const bgText = backgroundPhrase(bg, rng);
  if (groups.length === 0) {
    return rng.pick([`A blank ${bg.color} image.`, `An empty ${bgText}.`, `A plain ${bg.color} surface with nothing on it.`]);
  }
  const order = rng.chance(0.5) ? groups : [...groups].reverse();
  const objects = joinList(order.map((g) => groupPhrase(g, rng, style)));
  const template = rng.pick(CAPTION_TEMPLATES);
  const first = order[0] as Group;
  return template
    .replace('{Objects}', capitalize(objects))
    .replace('{objects}', objects)
    .replace('{background}', bgText)
    .replace('{be}', first.count === 1 ? 'is' : 'are');
}

/** The accurate caption of a scene. */
export function captionForScene(scene: Scene, rng: Rng, style?: CaptionStyle): string {
  return captionForGroups(groupsOf(scene), scene.background, rng, style);
}

export interface ParsedGroup {
  count: number;
  size?: SizeName;
  color: string;
  shape: ShapeKind;
}

const COLOR_WORDS = new Set(SHAPE_COLORS.map((c) => c.name));
const SIZE_WORDS = new Set<string>(SIZES.map((s) => s.name));

/**
 * Reads every "<count> [size] <colour> <shape>" mention out of a caption. Background colours never
 * match because a background colour is followed by "background"/"gradient"/..., not a shape word.
 */
export function parseCaptionGroups(caption: string): ParsedGroup[] {
  const tokens = caption.toLowerCase().match(/[a-z]+/g) ?? [];
  const found: ParsedGroup[] = [];
  for (let i = 0; i < tokens.length; i++) {
    const shape = shapeFromWord(tokens[i] as string);
    if (!shape) continue;
    const color = tokens[i - 1];
    if (color === undefined || !COLOR_WORDS.has(color)) continue;
    let j = i - 2;
    let size: SizeName | undefined;
    if (j >= 0 && SIZE_WORDS.has(tokens[j] as string)) {
      size = tokens[j] as SizeName;
      j -= 1;
    }
    const countToken = tokens[j];
    let count = -1;
    if (countToken === 'a' || countToken === 'an') count = 1;
    else if (countToken !== undefined) count = (COUNT_WORDS as readonly string[]).indexOf(countToken);
    if (count < 1) continue;
    const isPlural = tokens[i] !== shape;
    if (isPlural !== count > 1) continue;
    found.push(size ? { count, size, color, shape } : { count, color, shape });
  }
  return found;
}
