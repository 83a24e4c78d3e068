// `loom select`: two streaming passes over the score sidecars.
//   Pass 1 (only when the rule has top/bottom atoms): feed each such column into a quantile
//   sketch and turn the fraction into a threshold.
//   Pass 2: per shard, join the rule's scorers by uid, evaluate the rule, and feed kept uids to
//   the bounded-memory sorter that writes OUT.npy. OUT.json summarises everything.
import { mkdir } from 'node:fs/promises';
import { dirname } from 'node:path';
import { LoomError } from '../util/errors.js';
import { writeJsonAtomic } from '../util/atomic.js';
import { evaluateAtom, evaluateTree, TRUE, FALSE, type ResolvedAtom } from './evaluate.js';
import { neededColumns, parseRule, formatRule, type Atom } from './rule.js';
import { QuantileSketch } from './quantileSketch.js';
import { listSidecars, readSidecar, sidecarRowCount, type SidecarData } from './sidecars.js';
import { UidSorter, DEFAULT_RUN_SIZE, RUNS_SUFFIX } from './uidSorter.js';
import { removeStaleTemps } from '../util/staleTemps.js';

export interface SelectOptions {
  scoresDir: string;
  rule: string;
  /** Output prefix: writes `${out}.npy` and `${out}.json`. */
  out: string;
  /** Uids per sorted run before spilling to disk (default 1,000,000). */
  runSize?: number;
  /** Quantile sketch buffer size per level (default 4096). */
  sketchK?: number;
  /** Called with (rows done, rows in total) as each shard finishes; the total covers both passes. */
  onProgress?: (done: number, total: number) => void;
  /** Called with each warning as it happens (also collected in the summary). */
  onWarning?: (message: string) => void;
}

export interface AtomSummary {
  id: number;
  text: string;
  kind: Atom['kind'];
  column: string;
  /** The comparison actually applied (top/bottom resolved to a threshold). */
  op: string;
  threshold: number;
  fraction?: number;
  /** Rows the sketch saw for a top/bottom atom, and its guaranteed rank-error bound in rows. */
  sketch?: { rows: number; rankErrorBound: number; min: number; max: number };
  passed: number;
  failed: number;
  /** Rows with no score for this column (missing from the scorer's sidecar, or NaN). */
  missing: number;
}

export interface SelectSummary {
  format: 'loom-selection';
  version: 1;
  rule: string;
  rule_parsed: string;
  inputs: { scores: string; scorers: Record<string, { shards: number; rows: number; bad: number; bad_by_reason: Record<string, number> }> };
  output: { npy: string; json: string };
  shards: number;
  /** Distinct uids seen in any of the rule's scorers' sidecars. */
  total: number;
  kept: number;
  dropped: number;
  atoms: AtomSummary[];
  /** Samples missing from a scorer's sidecar although another of the rule's scorers has them. */
  missing_rows_by_scorer: Record<string, number>;
  /** Shards that have a sidecar for some of the rule's scorers but not all: stem -> missing scorers. */
  shards_missing_scorer: Record<string, string[]>;
  invalid_uid_rows: number;
  duplicate_uid_rows: number;
  sort: { run_size: number; spilled_runs: number };
  warnings: string[];
  seconds: number;
}

const colKey = (scorer: string, column: string) => `${scorer}.${column}`;

export async function runSelect(options: SelectOptions): Promise<SelectSummary> {
  const started = Date.now();
  const rule = parseRule(options.rule);
  const needed = neededColumns(rule);
  const index = await listSidecars(options.scoresDir);
  const warnings: string[] = [];
  const warn = (m: string) => {
    warnings.push(m);
    options.onWarning?.(m);
  };
  for (const scorer of needed.keys()) {
    if (!index.scorers.includes(scorer)) {
      const have = index.scorers.length > 0 ? index.scorers.join(', ') : 'none';
      throw new LoomError(`--scores ${options.scoresDir}: no sidecars for scorer '${scorer}' named in the rule (scorers found: ${have})`);
    }
  }
  // Shards that the rule's scorers touch, and which of those scorers each lacks.
  const stems: string[] = [];
  const shardsMissingScorer: Record<string, string[]> = {};
  for (const [stem, byScorer] of index.shards) {
    const present = [...needed.keys()].filter((s) => byScorer.has(s));
    if (present.length === 0) continue;
    stems.push(stem);
    const absent = [...needed.keys()].filter((s) => !byScorer.has(s));
    if (absent.length > 0) shardsMissingScorer[stem] = absent;
  }
  const partial = Object.keys(shardsMissingScorer);
  if (partial.length > 0) {
    const shown = partial.slice(0, 5).map((s) => `${s} (no ${shardsMissingScorer[s]!.join(', ')})`).join('; ');
    warn(`${partial.length} shard(s) lack a sidecar for some of the rule's scorers; their samples fail atoms on those scorers: ${shown}${partial.length > 5 ? '; ...' : ''}`);
  }

  // Row totals for progress come from the parquet footers.
  const sketchAtoms = rule.atoms.filter((a) => a.kind !== 'compare');
  const sketchColumns = new Map<string, Set<string>>();
  for (const a of sketchAtoms) {
    if (!sketchColumns.has(a.ref.scorer)) sketchColumns.set(a.ref.scorer, new Set());
    sketchColumns.get(a.ref.scorer)!.add(a.ref.column);
  }
  let totalRows = 0;
  for (const stem of stems) {
    for (const [scorer, path] of index.shards.get(stem)!) if (needed.has(scorer)) totalRows += await sidecarRowCount(path);
  }
  const passes = sketchAtoms.length > 0 ? 2 : 1;
  let done = 0;
  const progressTotal = totalRows * passes;
  const tick = (n: number) => {
    done += n;
    options.onProgress?.(done, progressTotal);
  };

  // Pass 1: sketches for top/bottom columns.
  const sketches = new Map<string, QuantileSketch>();
  if (sketchAtoms.length > 0) {
    for (const a of sketchAtoms) {
      const key = colKey(a.ref.scorer, a.ref.column);
      if (!sketches.has(key)) sketches.set(key, new QuantileSketch(options.sketchK ?? 4096));
    }
    for (const stem of stems) {
      const byScorer = index.shards.get(stem)!;
      for (const scorer of needed.keys()) {
        const path = byScorer.get(scorer);
        if (!path) continue;
        const cols = sketchColumns.get(scorer);
        if (!cols) {
          tick(await sidecarRowCount(path));
          continue;
        }
        // With uids, so rows with an invalid or repeated uid are dropped exactly as pass 2 drops
        // them: a fraction is then a fraction of the rows the rule is applied to.
        const data = await readSidecar(path, cols);
        for (const c of cols) {
          const sketch = sketches.get(colKey(scorer, c))!;
          for (const v of data.columns.get(c)!) if (!Number.isNaN(v)) sketch.add(v);
        }
        tick(data.rows);
      }
    }
  }
  const resolved: ResolvedAtom[] = rule.atoms.map((atom) => resolveAtom(atom, sketches));

  // Pass 2: join, evaluate, keep.
  await mkdir(dirname(options.out), { recursive: true });
  for (const target of [`${options.out}.npy`, `${options.out}.json`]) {
    for (const path of await removeStaleTemps(target, [RUNS_SUFFIX])) warn(`removed ${path}, left over by a killed run`);
  }
  const sorter = new UidSorter(`${options.out}.npy`, options.runSize ?? DEFAULT_RUN_SIZE);
  const atomCounts = rule.atoms.map(() => ({ passed: 0, failed: 0, missing: 0 }));
  const scorerStats: SelectSummary['inputs']['scorers'] = {};
  for (const s of needed.keys()) scorerStats[s] = { shards: 0, rows: 0, bad: 0, bad_by_reason: {} };
  const missingRows: Record<string, number> = Object.fromEntries([...needed.keys()].map((s) => [s, 0]));
  let total = 0;
  let invalidRows = 0;
  let duplicateRows = 0;
  let kept = 0;
  try {
    for (const stem of stems) {
      const byScorer = index.shards.get(stem)!;
      const data = new Map<string, SidecarData>();
      for (const [scorer, cols] of needed) {
        const path = byScorer.get(scorer);
        if (!path) continue;
        const d = await readSidecar(path, cols);
        data.set(scorer, d);
        const st = scorerStats[scorer]!;
        st.shards++;
        st.rows += d.uids.length;
        st.bad += d.meta?.bad ?? 0;
        for (const [reason, n] of Object.entries(d.meta?.bad_by_reason ?? {})) st.bad_by_reason[reason] = (st.bad_by_reason[reason] ?? 0) + n;
        invalidRows += d.invalidUidRows;
        duplicateRows += d.duplicateUidRows;
        if (d.invalidUidRows > 0) warn(`${path}: ${d.invalidUidRows} row(s) with an invalid uid skipped`);
        if (d.duplicateUidRows > 0) warn(`${path}: ${d.duplicateUidRows} row(s) repeating an earlier uid skipped`);
      }
      const joined = joinShard(data, needed);
      total += joined.uids.length;
      for (const [scorer, n] of joined.missing) missingRows[scorer] = (missingRows[scorer] ?? 0) + n;
      const verdicts = resolved.map((r) => {
        // A float32 column holds 0.95 as 0.949999988: compare at the column's precision so that
        // `>= 0.95` keeps the rows the scorer wrote as 0.95.
        const float32 = data.get(r.atom.ref.scorer)?.float32Columns.has(r.atom.ref.column) === true;
        const atShardPrecision = float32 ? { ...r, threshold: Math.fround(r.threshold) } : r;
        const v = evaluateAtom(atShardPrecision, joined.columns.get(colKey(r.atom.ref.scorer, r.atom.ref.column))!);
        const c = atomCounts[r.atom.id]!;
        for (const x of v) {
          if (x === TRUE) c.passed++;
          else if (x === FALSE) c.failed++;
          else c.missing++;
        }
        return v;
      });
      const result = evaluateTree(rule.root, verdicts, joined.uids.length);
      for (let i = 0; i < result.length; i++) {
        if (result[i] === TRUE) {
          await sorter.add(joined.uids[i]!);
          kept++;
        }
      }
      tick([...data.values()].reduce((n, d) => n + d.rows, 0));
    }
    const written = await sorter.finish();
    if (written !== kept) warn(`${kept - written} kept uid(s) appeared in more than one shard; the selection holds each once`);
    kept = written;
  } catch (err) {
    await sorter.cleanup();
    throw err;
  }
  const summary: SelectSummary = {
    format: 'loom-selection',
    version: 1,
    rule: options.rule,
    rule_parsed: formatRule(rule.root),
    inputs: { scores: options.scoresDir, scorers: scorerStats },
    output: { npy: `${options.out}.npy`, json: `${options.out}.json` },
    shards: stems.length,
    total,
    kept,
    dropped: total - kept,
    atoms: resolved.map((r) => {
      const c = atomCounts[r.atom.id]!;
      const sketch = sketches.get(colKey(r.atom.ref.scorer, r.atom.ref.column));
      return {
        id: r.atom.id,
        text: r.atom.text,
        kind: r.atom.kind,
        column: colKey(r.atom.ref.scorer, r.atom.ref.column),
        op: r.op,
        threshold: r.threshold,
        ...(r.atom.kind !== 'compare' && sketch
          ? { fraction: r.atom.fraction, sketch: { rows: sketch.count, rankErrorBound: sketch.rankErrorBound, min: sketch.min, max: sketch.max } }
          : {}),
        ...c,
      };
    }),
    missing_rows_by_scorer: missingRows,
    shards_missing_scorer: shardsMissingScorer,
    invalid_uid_rows: invalidRows,
    duplicate_uid_rows: duplicateRows,
    sort: { run_size: options.runSize ?? DEFAULT_RUN_SIZE, spilled_runs: sorter.spilledRuns },
    warnings,
    seconds: (Date.now() - started) / 1000,
  };
  await writeJsonAtomic(`${options.out}.json`, summary);
  return summary;
}

/**
 * Turns top(col, f) into `col >= t` with t the value of ascending rank n - ceil(f n), and
 * bottom(col, f) into `col <= t` with t at rank ceil(f n) - 1; f = 0 keeps nothing.
 */
function resolveAtom(atom: Atom, sketches: Map<string, QuantileSketch>): ResolvedAtom {
  if (atom.kind === 'compare') return { atom, op: atom.op, threshold: atom.value };
  const sketch = sketches.get(colKey(atom.ref.scorer, atom.ref.column))!;
  const n = sketch.count;
  const c = Math.ceil(atom.fraction * n - 1e-9);
  if (atom.kind === 'top') return { atom, op: '>=', threshold: c <= 0 ? Infinity : sketch.valueAtRank(n - c) };
  return { atom, op: '<=', threshold: c <= 0 ? -Infinity : sketch.valueAtRank(c - 1) };
}

/**
 * Joins one shard's sidecars by uid: rows are the union of uids in first-seen order (the first
 * scorer's tar order, then uids only other scorers have); each rule column is aligned to those
 * rows, NaN where a scorer has no row for the uid.
 */
function joinShard(data: Map<string, SidecarData>, needed: Map<string, Set<string>>) {
  const position = new Map<string, number>();
  const uids: string[] = [];
  const sidecars = [...data.values()];
  // Common case: every scorer wrote the same rows in the same tar order; no map is needed.
  const first = sidecars[0]?.uids ?? [];
  if (sidecars.every((d) => d.uids.length === first.length && d.uids.every((u, i) => u === first[i]))) {
    return alignedJoin(data, needed, first);
  }
  for (const d of sidecars) {
    for (const u of d.uids) {
      if (!position.has(u)) {
        position.set(u, uids.length);
        uids.push(u);
      }
    }
  }
  const columns = new Map<string, Float64Array>();
  const missing = new Map<string, number>();
  for (const [scorer, cols] of needed) {
    const d = data.get(scorer);
    missing.set(scorer, uids.length - (d?.uids.length ?? 0));
    for (const c of cols) {
      const out = new Float64Array(uids.length).fill(NaN);
      if (d) {
        const src = d.columns.get(c)!;
        for (let i = 0; i < d.uids.length; i++) out[position.get(d.uids[i]!)!] = src[i]!;
      }
      columns.set(colKey(scorer, c), out);
    }
  }
  return { uids, columns, missing };
}

function alignedJoin(data: Map<string, SidecarData>, needed: Map<string, Set<string>>, uids: string[]) {
  const columns = new Map<string, Float64Array>();
  const missing = new Map<string, number>();
  for (const [scorer, cols] of needed) {
    const d = data.get(scorer);
    missing.set(scorer, d ? 0 : uids.length);
    for (const c of cols) columns.set(colKey(scorer, c), d ? d.columns.get(c)! : new Float64Array(uids.length).fill(NaN));
  }
  return { uids, columns, missing };
}
