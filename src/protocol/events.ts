// The events a compute worker prints on stdout, one JSON object per line (see
// python/src/loom_compute/protocol.py for the emitting side).

export type WorkerEvent =
  | { event: 'progress'; done: number; total?: number; [k: string]: unknown }
  | { event: 'metric'; [k: string]: unknown }
  | { event: 'log'; level: string; msg: string }
  | { event: 'done'; [k: string]: unknown }
  | { event: 'error'; msg: string; [k: string]: unknown };

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function isFiniteNumber(value: unknown): value is number {
  return typeof value === 'number' && Number.isFinite(value);
}

/**
 * The event on one stdout line, or undefined when the line is not a well-formed event (plain
 * text from a library, JSON of another shape, an event missing its required fields). Never throws.
 */
export function parseWorkerEvent(line: string): WorkerEvent | undefined {
  const text = line.trim();
  if (!text.startsWith('{')) return undefined;
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return undefined;
  }
  if (!isRecord(value)) return undefined;
  switch (value.event) {
    case 'progress':
      return isFiniteNumber(value.done) && (value.total === undefined || isFiniteNumber(value.total))
        ? (value as WorkerEvent)
        : undefined;
    case 'log':
      return typeof value.level === 'string' && typeof value.msg === 'string' ? (value as WorkerEvent) : undefined;
    case 'error':
      return typeof value.msg === 'string' ? (value as WorkerEvent) : undefined;
    case 'metric':
    case 'done':
      return value as WorkerEvent;
    default:
      return undefined;
  }
}
