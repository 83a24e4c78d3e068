// Checks shared by the synth tests: each recomputes an answer from the scene truth on its own,
// reading the subject from the question text, so generator and checker can disagree.
import assert from 'node:assert/strict';
import { parseCaptionGroups } from '../../../src/synth/caption.js';
import type { BenchQuestion } from '../../../src/synth/bench.js';
import type { QaPair } from '../../../src/synth/qa.js';
import type { Scene } from '../../../src/synth/scene.js';
import { COUNT_WORDS, REGIONS, SHAPE_COLORS, shapeFromWord } from '../../../src/synth/vocabulary.js';

const COLORS = SHAPE_COLORS.map((c) => c.name);

function wordsOf(text: string): string[] {
  return text.toLowerCase().match(/[a-z]+/g) ?? [];
}

/** The count an answer states: "There are no stars." -> 0, "There is one circle." -> 1, ... */
export function statedCount(answer: string): number {
  const words = wordsOf(answer);
  for (const w of words) {
    const n = (COUNT_WORDS as readonly string[]).indexOf(w);
    if (n >= 0) return n;
  }
  throw new Error(`no count in answer: ${answer}`);
}

/** Checks one answer against the scene, reading the subject from the question text itself. */
export function checkAnswer(scene: Scene, qa: QaPair): void {
  const q = wordsOf(qa.question);
  const qShape = q.map(shapeFromWord).find(Boolean);
  const qColor = q.find((w) => COLORS.includes(w));
  const ctx = `${qa.question} -> ${qa.answer}`;
  switch (qa.kind) {
    case 'count_shape':
      assert.equal(statedCount(qa.answer), scene.objects.filter((o) => o.shape === qShape).length, ctx);
      break;
    case 'count_color':
      assert.equal(statedCount(qa.answer), scene.objects.filter((o) => o.color === qColor).length, ctx);
      break;
    case 'count_total':
      assert.equal(statedCount(qa.answer), scene.objects.length, ctx);
      break;
    case 'color_of_shape': {
      const said = wordsOf(qa.answer).filter((w) => COLORS.includes(w));
      assert.equal(said.length, 1, ctx);
      const objs = scene.objects.filter((o) => o.shape === qShape);
      assert.ok(objs.length > 0 && objs.every((o) => o.color === said[0]), ctx);
      break;
    }
    case 'shape_of_color': {
      const said = wordsOf(qa.answer).map(shapeFromWord).filter(Boolean);
      const objs = scene.objects.filter((o) => o.color === qColor);
      assert.ok(objs.length > 0 && objs.every((o) => o.shape === said[0]), ctx);
      break;
    }
    case 'position': {
      const objs = scene.objects.filter((o) => o.shape === qShape && o.color === qColor);
      assert.equal(objs.length, 1, ctx);
      const region = REGIONS.find((r) => qa.answer.endsWith(`${r.phrase}.`));
      assert.equal(region?.name, objs[0]!.region, ctx);
      break;
    }
    case 'size': {
      const objs = scene.objects.filter((o) => o.shape === qShape && o.color === qColor);
      assert.ok(objs.length > 0, ctx);
      assert.ok(qa.answer.endsWith(`${objs[0]!.size}.`), ctx);
      break;
    }
    case 'exists': {
      const n = scene.objects.filter((o) => o.shape === qShape && o.color === qColor).length;
      assert.equal(qa.answer.startsWith('Yes'), n > 0, ctx);
      if (n > 0) assert.equal(statedCount(qa.answer.replace(/^Yes, there (is|are) /, 'x ')), n, ctx);
      break;
    }
    case 'background':
      assert.ok(qa.answer.includes(scene.background.color), ctx);
      break;
    case 'describe': {
      const said = parseCaptionGroups(qa.answer).map((g) => `${g.count} ${g.color} ${g.shape}`).sort();
      const m = new Map<string, number>();
      for (const o of scene.objects) m.set(`${o.color} ${o.shape}`, (m.get(`${o.color} ${o.shape}`) ?? 0) + 1);
      assert.deepEqual(said, [...m].map(([k, n]) => `${n} ${k}`).sort(), ctx);
      break;
    }
  }
}

/** "2 red circle, 1 blue star" style key of what a scene holds, counted straight from its objects. */
export function truthKey(scene: Scene): string {
  const m = new Map<string, number>();
  for (const o of scene.objects) m.set(`${o.color} ${o.shape}`, (m.get(`${o.color} ${o.shape}`) ?? 0) + 1);
  return [...m].map(([k, n]) => `${n} ${k}`).sort().join(', ');
}

/** The same key for what a caption says. */
export function parsedKey(caption: string): string {
  return parseCaptionGroups(caption)
    .map((g) => `${g.count} ${g.color} ${g.shape}`)
    .sort()
    .join(', ');
}

/** The correct option recomputed from the scene, reading the subject from the question. */
export function expectedAnswer(q: BenchQuestion): string {
  const words = q.question.toLowerCase().match(/[a-z]+/g) ?? [];
  const shape = words.map(shapeFromWord).find(Boolean);
  const color = words.find((w) => SHAPE_COLORS.some((c) => c.name === w));
  const objs = q.scene.objects;
  switch (q.category) {
    case 'object_counting':
      return String(objs.filter((o) => o.shape === shape).length);
    case 'color_recognition': {
      const colors = new Set(objs.filter((o) => o.shape === shape).map((o) => o.color));
      assert.equal(colors.size, 1, q.question);
      return [...colors][0]!;
    }
    case 'shape_recognition': {
      const shapes = new Set(objs.filter((o) => o.color === color).map((o) => o.shape));
      assert.equal(shapes.size, 1, q.question);
      return [...shapes][0]!;
    }
    case 'object_localization': {
      const matching = objs.filter((o) => o.color === color && o.shape === shape);
      assert.equal(matching.length, 1, q.question);
      return matching[0]!.region;
    }
  }
}

