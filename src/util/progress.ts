// How long work reports how far it got. Domain code (workers, curation, the demo) only reports
// through these types; the CLI supplies the display (src/cli/progress.ts: a bar on a terminal,
// plain lines in a log), so no domain module depends on the user interface.

/** One running progress display. */
export interface Progress {
  /** Adds `n` finished units (default 1). */
  tick(n?: number): void;
  /** Sets the absolute number of finished units (e.g. from a worker's progress event). */
  update(done: number, total?: number): void;
  /** Closes the display and shows its final state. */
  stop(): void;
}

/** What a piece of work tells the display besides its label and total. */
export interface ProgressDisplay {
  /** Unit shown after the rate, e.g. "samples". */
  unit?: string;
  /** Extra text shown with each update (e.g. the latest loss); read at every update. */
  suffix?: () => string;
}

/** Opens a progress display for work named `label` with `total` units (undefined when unknown). */
export type StartProgress = (label: string, total: number | undefined, display?: ProgressDisplay) => Progress;

/** Shows nothing: the default wherever the caller gave no display (tests, nested work). */
export const noProgress: StartProgress = () => ({ tick() {}, update() {}, stop() {} });

/**
 * One display per part of a multi-part job, shown one after another (e.g. synth's pretrain, sft
 * and bench parts). Returns the callback to feed and a `stop` for the end.
 */
export function partsProgress(
  startProgress: StartProgress,
  label: string,
  units: Record<string, string>,
): { update: (part: string, done: number, total: number) => void; stop: () => void } {
  let current: { part: string; bar: Progress } | null = null;
  return {
    update(part, done, total) {
      if (current?.part !== part) {
        current?.bar.stop();
        current = { part, bar: startProgress(`${label} ${part}`, total, { unit: units[part] }) };
      }
      current.bar.update(done, total);
    },
    stop() {
      current?.bar.stop();
      current = null;
    },
  };
}
