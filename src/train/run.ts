// Runs the Python trainer (`python -m loom_compute train`, under torchrun when a launcher is given)
// and follows it: the latest metric feeds the progress display, and each metric reaches the
// caller (the CLI prints it as a line where no bar is drawn).
import type { LauncherOptions } from '../protocol/command.js';
import { runWorker, type WorkerEvent } from '../protocol/worker.js';
import type { StartProgress } from '../util/progress.js';

/** Called with each metric event and the run's total steps, once the worker has said it. */
export type OnMetric = (metric: Record<string, unknown>, totalSteps: number | undefined) => void;

/** Follows a training worker's events: keeps the latest metric and hands each one on. */
export class TrainMonitor {
  lastMetric: Record<string, unknown> | undefined;
  private total: number | undefined;

  constructor(private readonly onMetric: OnMetric | undefined) {}

  readonly onEvent = (event: WorkerEvent): void => {
    if (event.event === 'progress') this.total = event.total;
    if (event.event !== 'metric') return;
    this.lastMetric = event;
    this.onMetric?.(event, this.total);
  };

  /** The loss for the end of the progress display ('' before the first metric). */
  barSuffix(): string {
    const loss = this.lastMetric?.loss;
    return typeof loss === 'number' ? `loss ${loss.toFixed(4)}` : '';
  }
}

export interface TrainRunOptions {
  configPath: string;
  /** The worker's arguments after `--config FILE` (--resume, --stop-after-steps). */
  args?: string[];
  launcher?: LauncherOptions;
  /** No progress, metrics or worker logs (errors are still reported). */
  quiet?: boolean;
  /** Shows progress over optimizer steps, with the latest loss. */
  startProgress?: StartProgress;
  onMetric?: OnMetric;
}

/** Runs the `train` verb to the end and returns its `done` summary. */
export async function runTraining(o: TrainRunOptions): Promise<Record<string, unknown>> {
  const quiet = o.quiet ?? false;
  const monitor = new TrainMonitor(quiet ? undefined : o.onMetric);
  const { done } = await runWorker({
    verb: 'train',
    configPath: o.configPath,
    args: o.args ?? [],
    ...(o.launcher ? { launcher: o.launcher } : {}),
    ...(o.startProgress ? { startProgress: o.startProgress } : {}),
    progressLabel: 'train',
    progressSuffix: () => monitor.barSuffix(),
    silent: quiet,
    onEvent: monitor.onEvent,
  });
  return done;
}
