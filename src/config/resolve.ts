// Turning a preset, a stage and the user's overrides into one validated run config.
import { existsSync, readFileSync } from 'node:fs';
import { isAbsolute, resolve } from 'node:path';
import type { z } from 'zod';
import { LoomError } from '../util/errors.js';
import { loomCacheDir } from '../util/paths.js';
import { withImageToken, type DerivedTokenizerNote } from './derivedTokenizer.js';
import { presetDefaults } from './presets.js';
import { RunConfigSchema, PRESETS, STAGES, type RunConfig } from './schema.js';

export interface ResolveOptions {
  preset: string;
  stage: string;
  name: string;
  /** Partial configs merged in order over the preset's defaults (e.g. from --file). */
  overrides?: unknown[];
  /** `key.path=value` assignments applied last (parseSetValue: JSON literals as JSON, other text a string with \\n, \\t, \\\\ read as escapes). */
  assignments?: string[];
  /** Directory that relative paths in overrides are resolved against (default: cwd). */
  baseDir?: string;
  /** Where a tokenizer derived with the image token is stored (default: loomCacheDir()). */
  cacheDir?: string;
  /** Called when the tokenizer lacked the image token and a copy with it was derived. */
  onDerivedTokenizer?: (note: DerivedTokenizerNote) => void;
}

export function resolveRunConfig(options: ResolveOptions): RunConfig {
  const preset = oneOf(options.preset, PRESETS, 'preset');
  const stage = oneOf(options.stage, STAGES, 'stage');
  let merged: unknown = presetDefaults(preset, stage, options.name);
  for (const override of options.overrides ?? []) merged = deepMerge(merged, override);
  for (const assignment of options.assignments ?? []) merged = applyAssignment(merged, assignment);
  const config = validateRunConfig(merged, 'resolved config');
  const absolute = absolutizePaths(config, options.baseDir ?? process.cwd());
  // A real LLM's tokenizer has no image token: point the run at a copy that has one (derivedTokenizer.ts).
  return withImageToken(absolute, options.cacheDir ?? loomCacheDir(), options.onDerivedTokenizer);
}

/** Validates a complete config; throws a LoomError listing every problem with its key path. */
export function validateRunConfig(value: unknown, source: string): RunConfig {
  const result = RunConfigSchema.safeParse(value);
  if (result.success) return result.data;
  throw new LoomError(`invalid run config (${source}):\n${formatIssues(result.error.issues).join('\n')}`);
}

/** Key paths (dotted) of every problem in a config, or [] when it is valid. */
export function configErrorPaths(value: unknown): string[] {
  const result = RunConfigSchema.safeParse(value);
  return result.success ? [] : result.error.issues.map((issue) => dotted(issue.path));
}

export function loadRunConfigFile(path: string): RunConfig {
  return validateRunConfig(readJsonFile(path), path);
}

export function readJsonFile(path: string): unknown {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new LoomError(`cannot read ${path}: ${(err as Error).message}`);
  }
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new LoomError(`${path} is not valid JSON: ${(err as Error).message}`);
  }
}

function formatIssues(issues: z.core.$ZodIssue[]): string[] {
  return issues.map((issue) => {
    const where = issue.path.length > 0 ? dotted(issue.path) : '(top level)';
    return `  at ${where}: ${issue.message}`;
  });
}

function dotted(path: PropertyKey[]): string {
  return path.map(String).join('.');
}

function oneOf<T extends string>(value: string, allowed: readonly T[], what: string): T {
  if ((allowed as readonly string[]).includes(value)) return value as T;
  throw new LoomError(`unknown ${what} '${value}' (choose one of: ${allowed.join(', ')})`);
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** Objects merge key by key; anything else (arrays, scalars, null) replaces. */
export function deepMerge(base: unknown, override: unknown): unknown {
  if (!isPlainObject(base) || !isPlainObject(override)) return override;
  const out: Record<string, unknown> = { ...base };
  for (const [key, value] of Object.entries(override)) out[key] = key in base ? deepMerge(base[key], value) : value;
  return out;
}

// Keys that would reach an object's prototype instead of a config field.
const FORBIDDEN_KEYS = new Set(['__proto__', 'constructor', 'prototype']);

/**
 * The value of `--set key=value`, as a shell user expects: text that is a JSON literal (a number,
 * true, false, null, a "quoted string", an [array] or an {object}) is that JSON value; any other
 * text is a string in which `\n` is a newline, `\t` a tab and `\\` one backslash (as printf
 * reads them); any other backslash is kept as typed.
 */
export function parseSetValue(raw: string): unknown {
  try {
    return JSON.parse(raw);
  } catch {
    return raw.replace(/\\([nt\\])/g, (_, c: string) => (c === 'n' ? '\n' : c === 't' ? '\t' : '\\'));
  }
}

/** Applies `a.b.c=value`, the value read by parseSetValue. */
export function applyAssignment(config: unknown, assignment: string): unknown {
  const eq = assignment.indexOf('=');
  if (eq <= 0) throw new LoomError(`--set expects key.path=value, got '${assignment}'`);
  const keys = assignment.slice(0, eq).split('.');
  const badKey = keys.find((k) => k === '' || FORBIDDEN_KEYS.has(k));
  if (badKey !== undefined) throw new LoomError(`--set ${assignment.slice(0, eq)}: ${badKey === '' ? 'empty key in the path' : `'${badKey}' is not a config key`}`);
  const value = parseSetValue(assignment.slice(eq + 1));
  const patch = keys.reduceRight<unknown>((inner, key) => ({ [key]: inner }), value);
  return deepMerge(config, patch);
}

function absolutize(path: string, baseDir: string): string {
  return isAbsolute(path) ? path : resolve(baseDir, path);
}

/** Local paths become absolute so the worker, started elsewhere, finds the same files. */
function absolutizePaths(config: RunConfig, baseDir: string): RunConfig {
  const localCheckpoint = (source: RunConfig['model']['llm']['source']): RunConfig['model']['llm']['source'] =>
    source.pretrained !== null && existsSync(resolve(baseDir, source.pretrained))
      ? { pretrained: resolve(baseDir, source.pretrained), config: null }
      : source;
  const llmSource = localCheckpoint(config.model.llm.source);
  const tokenizerPath =
    config.tokenizer.path !== null
      ? absolutize(config.tokenizer.path, baseDir)
      : llmSource.pretrained !== null && isAbsolute(llmSource.pretrained)
        ? resolve(llmSource.pretrained, 'tokenizer.json')
        : null;
  return {
    ...config,
    model: {
      ...config.model,
      vision: { ...config.model.vision, source: localCheckpoint(config.model.vision.source) },
      llm: { ...config.model.llm, source: llmSource },
    },
    tokenizer: { ...config.tokenizer, path: tokenizerPath },
    data: { ...config.data, shards: config.data.shards === null ? null : absolutize(config.data.shards, baseDir) },
  };
}
