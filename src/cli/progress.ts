// Progress reporting for long work. Bars go to stderr so stdout stays clean for `--json`
// summaries; when stderr is not a terminal (CI, logs) a plain line is printed every few seconds.
import cliProgress from 'cli-progress';
import type { Progress, ProgressDisplay } from '../util/progress.js';

export interface ProgressOptions extends ProgressDisplay {
  /** Print nothing at all (tests, nested work). */
  silent?: boolean;
  /** Seconds between plain lines when stderr is not a TTY. */
  plainIntervalS?: number;
}

/** The CLI's display for progress (a StartProgress, see src/util/progress.ts). */
export function startProgress(label: string, total: number | undefined, options: ProgressOptions = {}): Progress {
  if (options.silent) return { tick() {}, update() {}, stop() {} };
  const unit = options.unit ?? 'items';
  const suffix = options.suffix;
  return process.stderr.isTTY
    ? new BarProgress(label, total, unit, suffix)
    : new PlainProgress(label, total, unit, options.plainIntervalS ?? 5, suffix);
}

class BarProgress implements Progress {
  private readonly bar: cliProgress.SingleBar;
  private done = 0;
  private readonly started = Date.now();

  constructor(
    label: string,
    private total: number | undefined,
    unit: string,
    private readonly suffix?: () => string,
  ) {
    this.bar = new cliProgress.SingleBar(
      {
        format: `${label} [{bar}] {percentage}% | {value}/{total} ${unit} | {rate}/s | eta {eta_formatted}${suffix ? '{suffix}' : ''}`,
        stream: process.stderr,
        hideCursor: true,
        etaBuffer: 50,
      },
      cliProgress.Presets.shades_classic,
    );
    this.bar.start(total ?? 0, 0, { rate: '0', suffix: this.suffixText() });
  }

  tick(n = 1): void {
    this.update(this.done + n);
  }

  update(done: number, total?: number): void {
    this.done = done;
    if (total !== undefined && total !== this.total) {
      this.total = total;
      this.bar.setTotal(total);
    }
    this.bar.update(done, { rate: formatRate(done, this.started), suffix: this.suffixText() });
  }

  stop(): void {
    this.bar.update(this.done, { rate: formatRate(this.done, this.started), suffix: this.suffixText() });
    this.bar.stop();
  }

  private suffixText(): string {
    const text = this.suffix?.() ?? '';
    return text === '' ? '' : ` | ${text}`;
  }
}

class PlainProgress implements Progress {
  private done = 0;
  private readonly started = Date.now();
  private lastPrint = Date.now();

  constructor(
    private readonly label: string,
    private total: number | undefined,
    private readonly unit: string,
    private readonly intervalS: number,
    private readonly suffix?: () => string,
  ) {}

  tick(n = 1): void {
    this.update(this.done + n);
  }

  update(done: number, total?: number): void {
    this.done = done;
    if (total !== undefined) this.total = total;
    if (Date.now() - this.lastPrint >= this.intervalS * 1000) {
      this.lastPrint = Date.now();
      this.print();
    }
  }

  stop(): void {
    this.print();
  }

  private print(): void {
    const of = this.total !== undefined ? `/${this.total}` : '';
    const extra = this.suffix?.() ?? '';
    process.stderr.write(`${this.label}: ${this.done}${of} ${this.unit} (${formatRate(this.done, this.started)}/s)${extra === '' ? '' : `, ${extra}`}\n`);
  }
}

function formatRate(done: number, startedMs: number): string {
  const seconds = Math.max((Date.now() - startedMs) / 1000, 1e-3);
  const rate = done / seconds;
  return rate >= 100 ? Math.round(rate).toString() : rate.toFixed(1);
}
