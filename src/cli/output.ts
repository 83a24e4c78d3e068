// How commands print their result: a readable summary for people, or one JSON object on
// stdout with `--json` for scripts (progress and logs always go to stderr).

export interface OutputOptions {
  json?: boolean;
}

/** Prints a command's summary: `value` as JSON with --json, otherwise the `human` text. */
export function printSummary(options: OutputOptions, value: unknown, human: () => string): void {
  if (options.json) process.stdout.write(JSON.stringify(value, null, 2) + '\n');
  else process.stdout.write(human().replace(/\n?$/, '\n'));
}

/** A small aligned two-column table for human summaries. */
export function table(rows: Array<[string, string | number]>): string {
  const width = Math.max(0, ...rows.map(([k]) => k.length));
  return rows.map(([k, v]) => `  ${k.padEnd(width)}  ${v}`).join('\n');
}

/** An ASCII histogram: one bar per bucket, scaled to `width` characters. */
export function asciiHistogram(buckets: Array<{ label: string; count: number }>, width = 40): string {
  const max = Math.max(1, ...buckets.map((b) => b.count));
  const labelWidth = Math.max(0, ...buckets.map((b) => b.label.length));
  return buckets
    .map((b) => `  ${b.label.padStart(labelWidth)} | ${'#'.repeat(Math.round((b.count / max) * width)).padEnd(width)} ${b.count}`)
    .join('\n');
}
