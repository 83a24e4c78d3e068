// `loom export` and `loom import`: what they check and the worker commands they build. The
// conversions themselves are Python's (`export` and `import` verbs, loom_compute/convert/):
//   export --format llava-hf|tokenizer --source EXPORT --out DIR
//   import --format prismatic|llava|llava-hf --source SRC --out EXPORT [--vision DIR] [--llm DIR]
//          [--tokenizer PATH] --config BASE.json
// An import starts from a preset's resolved SFT config (BASE.json, written here to a temporary
// file); the importer overrides the model shapes, tokenizer and image settings from the source.
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, dirname, join, resolve } from 'node:path';
import { resolveRunConfig } from '../config/resolve.js';
import { PRESETS, type Preset, type RunConfig } from '../config/schema.js';
import { workerCommand } from '../protocol/command.js';
import { runWorker } from '../protocol/worker.js';
import { writeJsonAtomic } from '../util/atomic.js';
import { LoomError, EXIT_USAGE } from '../util/errors.js';
import type { StartProgress } from '../util/progress.js';
import { EXPORT_INFO, isInside, requireReplaceableOutput, resolveExportDir } from './paths.js';

export const EXPORT_FORMATS = ['llava-hf', 'tokenizer'] as const;
export const IMPORT_FORMATS = ['prismatic', 'llava', 'llava-hf'] as const;
export type ExportFormat = (typeof EXPORT_FORMATS)[number];
export type ImportFormat = (typeof IMPORT_FORMATS)[number];
export const DEFAULT_IMPORT_PRESET: Preset = 'open-qwen2vl-2b';

/** A folder an earlier `loom export --format F` wrote (never a native export: that one stays). */
const EARLIER_EXPORT: Record<ExportFormat, (names: string[]) => boolean> = {
  'llava-hf': (names) => !names.includes(EXPORT_INFO) && names.includes('config.json'),
  tokenizer: (names) => !names.includes(EXPORT_INFO) && (names.includes('tokenizer.json') || names.includes('tokenizer_config.json')),
};

export interface ConvertPlan {
  format: string;
  source: string;
  out: string;
  args: string[];
  argv: string[];
}

export interface ExportRequest {
  format: string;
  /** A Loom export or a run directory holding one. */
  source: string;
  out: string;
}

export function planExport(r: ExportRequest, cwd = process.cwd()): ConvertPlan {
  const format = oneOf(r.format, EXPORT_FORMATS, '--format');
  const source = resolveExportDir(r.source, 'RUN_OR_EXPORT', cwd);
  const out = requireReplaceableOutput(r.out, '--out', EARLIER_EXPORT[format], `an earlier ${format} export`, cwd);
  if (isInside(out, source) || isInside(source, out)) {
    throw new LoomError(`--out ${r.out} and the export ${source} overlap; write the ${format} folder elsewhere`, EXIT_USAGE);
  }
  const args = ['--format', format, '--source', source, '--out', out];
  return { format, source, out, args, argv: workerCommand({ verb: 'export', args }) };
}

export interface ImportRequest {
  format: string;
  /** The checkpoint: a folder (prismatic run folder, LLaVA or llava-hf model folder). */
  source: string;
  out: string;
  vision?: string;
  llm?: string;
  tokenizer?: string;
  preset?: string;
}

export interface ImportPlan extends ConvertPlan {
  preset: Preset;
  /** The preset's SFT config the importer starts from (written to a temporary file at run time). */
  baseConfig: RunConfig;
  /** The worker arguments before `--config BASE.json`. */
  argsWithoutConfig: string[];
}

export function planImport(r: ImportRequest, cwd = process.cwd()): ImportPlan {
  const format = oneOf(r.format, IMPORT_FORMATS, '--format');
  const preset = oneOf(r.preset ?? DEFAULT_IMPORT_PRESET, PRESETS, '--preset');
  const source = resolve(cwd, r.source);
  if (!existsSync(source)) throw new LoomError(`SRC ${r.source}: no such file or directory`, EXIT_USAGE);
  const optional = (path: string | undefined, flag: string): string[] => {
    if (path === undefined) return [];
    const abs = resolve(cwd, path);
    if (!existsSync(abs)) throw new LoomError(`${flag} ${path}: no such file or directory`, EXIT_USAGE);
    return [flag, abs];
  };
  const extra = [...optional(r.vision, '--vision'), ...optional(r.llm, '--llm'), ...optional(r.tokenizer, '--tokenizer')];
  const out = requireReplaceableOutput(r.out, '--out', (names) => names.includes(EXPORT_INFO), 'an earlier Loom export (loom.json)', cwd);
  if (isInside(out, source) || isInside(source, out)) {
    throw new LoomError(`--out ${r.out} and SRC ${r.source} overlap; write the export elsewhere`, EXIT_USAGE);
  }
  const baseConfig = importBaseConfig(preset, out);
  const argsWithoutConfig = ['--format', format, '--source', source, '--out', out, ...extra];
  const args = [...argsWithoutConfig, '--config', '<BASE.json>'];
  return { format, source, out, args, argsWithoutConfig, argv: workerCommand({ verb: 'import', args }), preset, baseConfig };
}

/** The preset's resolved SFT config, named after the output folder (runs/<name>/export -> <name>). */
export function importBaseConfig(preset: Preset, out: string): RunConfig {
  return resolveRunConfig({ preset, stage: 'sft', name: runNameFor(out) });
}

/** A valid run name from an output path: its folder name, or the run's for runs/<name>/export. */
export function runNameFor(out: string): string {
  const base = basename(out) === 'export' ? basename(dirname(resolve(out))) : basename(resolve(out));
  const name = base.replace(/[^A-Za-z0-9._-]+/g, '-').replace(/^[^A-Za-z0-9]+/, '');
  return name === '' ? 'imported' : name;
}

/** Writes the base config to a fresh temporary folder; the caller removes it with `cleanup`. */
export async function writeBaseConfig(config: RunConfig): Promise<{ path: string; cleanup: () => Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), 'loom-import-'));
  const path = join(dir, 'base-config.json');
  await writeJsonAtomic(path, config);
  return { path, cleanup: () => rm(dir, { recursive: true, force: true }) };
}

export interface ConvertRunOptions {
  startProgress?: StartProgress;
  quiet?: boolean;
  /** Sees the exact command once it is known (the import's includes the temporary config path). */
  onCommand?: (argv: string[]) => void;
}

export async function runExport(plan: ConvertPlan, o: ConvertRunOptions = {}): Promise<Record<string, unknown>> {
  o.onCommand?.(plan.argv);
  const { done } = await runWorker({ verb: 'export', args: plan.args, progressLabel: 'export', silent: o.quiet ?? false, ...(o.startProgress ? { startProgress: o.startProgress } : {}) });
  return done;
}

export async function runImport(plan: ImportPlan, o: ConvertRunOptions = {}): Promise<Record<string, unknown>> {
  const base = await writeBaseConfig(plan.baseConfig);
  try {
    const args = [...plan.argsWithoutConfig, '--config', base.path];
    o.onCommand?.(workerCommand({ verb: 'import', args }));
    const { done } = await runWorker({ verb: 'import', args, progressLabel: 'import', silent: o.quiet ?? false, ...(o.startProgress ? { startProgress: o.startProgress } : {}) });
    return done;
  } finally {
    await base.cleanup();
  }
}

function oneOf<T extends string>(value: string, allowed: readonly T[], flag: string): T {
  if ((allowed as readonly string[]).includes(value)) return value as T;
  throw new LoomError(`${flag} '${value}': expected one of ${allowed.join(', ')}`, EXIT_USAGE);
}
