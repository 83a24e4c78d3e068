// How `loom train` (and the demo's training steps) read to a person: one line per metric event
// where no progress bar is drawn, and the summary table of a finished run.
import { table } from '../output.js';
import type { OnMetric } from '../../train/run.js';

/**
 * Prints each metric as a line on stderr when stderr is not a terminal (logs, Slurm); on a
 * terminal the progress bar shows the loss instead, and --quiet shows nothing.
 */
export function metricLinePrinter(quiet: boolean): OnMetric | undefined {
  if (quiet || process.stderr.isTTY) return undefined;
  return (metric, totalSteps) => process.stderr.write(`${formatMetricLine(metric, totalSteps)}\n`);
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function num(value: unknown): number | undefined {
  return typeof value === 'number' && Number.isFinite(value) ? value : undefined;
}

function compact(value: number): string {
  if (Math.abs(value) >= 1e6) return `${(value / 1e6).toFixed(2)}M`;
  if (Math.abs(value) >= 1e4) return `${(value / 1e3).toFixed(1)}k`;
  return value >= 100 ? value.toFixed(0) : value.toFixed(1);
}

/** One readable line for a metric event, e.g. `train step 10/100: loss 2.3456, lr 1.00e-3, ...`. */
export function formatMetricLine(metric: Record<string, unknown>, total?: number): string {
  const step = num(metric.step);
  const parts: string[] = [];
  const loss = num(metric.loss);
  if (loss !== undefined) parts.push(`loss ${loss.toFixed(4)}`);
  const lr = num(metric.lr);
  if (lr !== undefined) parts.push(`lr ${lr.toExponential(2)}`);
  const gradNorm = num(metric.grad_norm);
  if (gradNorm !== undefined) parts.push(`grad_norm ${gradNorm.toFixed(3)}`);
  const tokens = num(metric.tokens_per_s);
  if (tokens !== undefined) parts.push(`${compact(tokens)} tokens/s`);
  const images = num(metric.images_per_s);
  if (images !== undefined) parts.push(`${compact(images)} images/s`);
  const mfu = num(metric.mfu);
  if (mfu !== undefined) parts.push(`MFU ${(100 * mfu).toFixed(1)}%`);
  const mem = num(metric.mem_gib);
  if (mem !== undefined) parts.push(`${mem.toFixed(1)} GiB`);
  const where = step === undefined ? 'train' : `train step ${step}${total !== undefined ? `/${total}` : ''}`;
  return `${where}: ${parts.join(', ')}`;
}

function mfuText(done: Record<string, unknown>): string {
  const mfu = num(done.mean_mfu) ?? num(done.mfu);
  if (mfu !== undefined) return `${(100 * mfu).toFixed(1)}%`;
  return 'n/a on CPU (or on a GPU whose peak FLOP/s Loom does not know)';
}

/** A per-second rate: the worker's own (mean over the last tenth of the steps), else count / seconds. */
function rate(done: Record<string, unknown>, key: 'tokens' | 'images'): string {
  const seen = isPlainObject(done.seen) ? done.seen : {};
  const seconds = num(done.seconds);
  const count = num(seen[key]) ?? num(done[key]);
  const value =
    num(done[`mean_${key}_per_s`]) ??
    num(done[`${key}_per_s`]) ??
    (count !== undefined && seconds !== undefined && seconds > 0 ? count / seconds : undefined);
  return value === undefined ? 'n/a' : compact(value);
}

/** The readable summary of a run, from the worker's `done` event (fields it lacks show as n/a). */
export function renderTrainSummary(done: Record<string, unknown>): string {
  const text = (value: unknown): string => (value === undefined || value === null ? 'n/a' : String(value));
  const steps = num(done.steps);
  const total = num(done.total_steps);
  const resumedFrom = num(done.resumed_from_step);
  const finalLoss = num(done.final_loss);
  const seconds = num(done.seconds);
  const stoppedEarly = done.finished === false;
  const head =
    `${stoppedEarly ? 'stopped' : 'trained'} ${text(done.run_dir)} at step ${text(steps)}${total !== undefined ? ` of ${total}` : ''}` +
    (resumedFrom !== undefined ? ` (resumed from step ${resumedFrom})` : '') +
    (seconds !== undefined ? ` in ${seconds.toFixed(1)} s` : '') +
    (stoppedEarly ? '; rerun with --resume to continue' : '');
  const rows: Array<[string, string | number]> = [
    ['steps', text(steps)],
    ['final loss', finalLoss === undefined ? 'n/a' : finalLoss.toFixed(4)],
    ['tokens/s', rate(done, 'tokens')],
    ['images/s', rate(done, 'images')],
    ['MFU', mfuText(done)],
    ['seconds', seconds === undefined ? 'n/a' : seconds.toFixed(1)],
    ['export', text(done.export)],
    ['loss curve', text(done.loss_curve)],
    ['checkpoint', text(done.checkpoint)],
    ['metrics', text(done.metrics)],
  ];
  return [head, table(rows)].join('\n');
}
