// Score histograms for the curation report: counts per bin, split by ground-truth kind when the
// data has one, drawn as an SVG and rasterised to PNG with sharp.
import sharp from 'sharp';
import { readSidecar, listSidecars } from '../select/sidecars.js';
import { writeFileAtomic } from '../util/atomic.js';

export interface ScoreHistogram {
  column: string; // scorer.column
  bins: number;
  min: number;
  max: number;
  /** kind ('all' without truth) -> count per bin. */
  counts: Record<string, number[]>;
  rows: number;
}

/**
 * Histograms of `scorer.column` over every sidecar of that scorer; `kindOf` splits rows by truth.
 * Two passes over the sidecars (range, then counts), so memory holds one sidecar, not the pool.
 */
export async function scoreHistogram(scoresDir: string, scorer: string, column: string, bins = 40, kindOf?: (uid: string) => string | undefined): Promise<ScoreHistogram> {
  const index = await listSidecars(scoresDir);
  const paths = [...index.shards.values()].map((perScorer) => perScorer.get(scorer)).filter((p): p is string => p !== undefined);
  let min = Infinity;
  let max = -Infinity;
  let rows = 0;
  for (const path of paths) {
    for (const v of (await readSidecar(path, [column])).columns.get(column)!) {
      if (!Number.isFinite(v)) continue;
      rows++;
      if (v < min) min = v;
      if (v > max) max = v;
    }
  }
  if (rows === 0) [min, max] = [0, 1];
  if (max === min) max = min + 1e-6;
  const counts: Record<string, number[]> = {};
  for (const path of paths) {
    const data = await readSidecar(path, [column], { uids: kindOf !== undefined });
    const scores = data.columns.get(column)!;
    for (let i = 0; i < scores.length; i++) {
      const v = scores[i]!;
      if (!Number.isFinite(v)) continue;
      const kind = kindOf ? (kindOf(data.uids[i]!) ?? 'unlabelled') : 'all';
      const bin = Math.min(bins - 1, Math.floor(((v - min) / (max - min)) * bins));
      (counts[kind] ??= new Array<number>(bins).fill(0))[bin]! += 1;
    }
  }
  return { column: `${scorer}.${column}`, bins, min, max, counts, rows };
}

const COLOURS = ['#1f5fa8', '#d9480f', '#2b8a3e', '#862e9c', '#e67700', '#c2255c', '#0b7285', '#5c940d'];

/** An SVG of the histogram: one outlined step line per kind, a threshold marker when given. */
function histogramSvg(h: ScoreHistogram, title: string, threshold?: number): string {
  const [w, hgt, left, right, top, bottom] = [820, 420, 60, 170, 40, 50];
  const plotW = w - left - right;
  const plotH = hgt - top - bottom;
  const peak = Math.max(1, ...Object.values(h.counts).flat());
  const x = (bin: number) => left + (bin / h.bins) * plotW;
  const y = (count: number) => top + plotH - (count / peak) * plotH;
  const parts: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${w}" height="${hgt}" font-family="sans-serif" font-size="12">`,
    `<rect width="100%" height="100%" fill="white"/>`,
    `<text x="${left}" y="22" font-size="15">${escape(title)}</text>`,
    `<line x1="${left}" y1="${top + plotH}" x2="${left + plotW}" y2="${top + plotH}" stroke="#444"/>`,
    `<line x1="${left}" y1="${top}" x2="${left}" y2="${top + plotH}" stroke="#444"/>`,
  ];
  for (let t = 0; t <= 4; t++) {
    const value = h.min + ((h.max - h.min) * t) / 4;
    const px = left + (plotW * t) / 4;
    parts.push(`<text x="${px}" y="${top + plotH + 18}" text-anchor="middle">${value.toFixed(3)}</text>`);
  }
  parts.push(`<text x="${left + plotW / 2}" y="${hgt - 10}" text-anchor="middle">${escape(h.column)}</text>`);
  parts.push(`<text x="${left - 8}" y="${top + 4}" text-anchor="end">${peak}</text>`, `<text x="${left - 8}" y="${top + plotH}" text-anchor="end">0</text>`);
  Object.entries(h.counts)
    .sort(([a], [b]) => a.localeCompare(b))
    .forEach(([kind, counts], i) => {
      const colour = COLOURS[i % COLOURS.length]!;
      let d = `M ${x(0)} ${y(0)}`;
      counts.forEach((c, bin) => (d += ` L ${x(bin)} ${y(c)} L ${x(bin + 1)} ${y(c)}`));
      d += ` L ${x(h.bins)} ${y(0)}`;
      parts.push(`<path d="${d}" fill="none" stroke="${colour}" stroke-width="1.6"/>`);
      const total = counts.reduce((s, c) => s + c, 0);
      parts.push(`<rect x="${left + plotW + 14}" y="${top + i * 20}" width="12" height="12" fill="${colour}"/>`);
      parts.push(`<text x="${left + plotW + 32}" y="${top + i * 20 + 10}">${escape(kind)} (${total})</text>`);
    });
  if (threshold !== undefined && Number.isFinite(threshold) && threshold >= h.min && threshold <= h.max) {
    const px = left + ((threshold - h.min) / (h.max - h.min)) * plotW;
    parts.push(`<line x1="${px}" y1="${top}" x2="${px}" y2="${top + plotH}" stroke="#c00" stroke-dasharray="5,4"/>`);
    parts.push(`<text x="${px + 4}" y="${top + 12}" fill="#c00">threshold ${threshold.toFixed(3)}</text>`);
  }
  parts.push('</svg>');
  return parts.join('\n');
}

export async function writeHistogramPng(h: ScoreHistogram, title: string, out: string, threshold?: number): Promise<void> {
  const png = await sharp(Buffer.from(histogramSvg(h, title, threshold))).png().toBuffer();
  await writeFileAtomic(out, png);
}

function escape(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}
