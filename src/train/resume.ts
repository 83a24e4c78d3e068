// What a resumed run may change in its config: how long it runs, how often it logs and saves,
// and where it runs. Anything else would make the checkpoint mean something else, so it is refused.

/** Config keys (and key prefixes) a resumed run may change. */
const RESUME_MUTABLE_KEYS = ['train.max_steps', 'train.checkpoint_every', 'train.log_every', 'train.keep_checkpoints', 'dist'];

/** The keys a resumed run may change, as the help and the refusal name them. */
export const RESUME_MUTABLE_TEXT = RESUME_MUTABLE_KEYS.map((k) => (k === 'dist' ? 'dist.*' : k)).join(', ');

/** The dotted keys where `next` differs from the run's `saved` config outside what a resume may change. */
export function forbiddenResumeChanges(saved: unknown, next: unknown): string[] {
  return configDifferences(saved, next).filter((key) => !resumeMayChange(key));
}

function resumeMayChange(key: string): boolean {
  return RESUME_MUTABLE_KEYS.some((allowed) => key === allowed || key.startsWith(`${allowed}.`));
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** Dotted key paths whose values differ between two configs (objects compared key by key, anything else whole). */
export function configDifferences(a: unknown, b: unknown, prefix = ''): string[] {
  if (isPlainObject(a) && isPlainObject(b)) {
    const keys = [...new Set([...Object.keys(a), ...Object.keys(b)])].sort();
    return keys.flatMap((key) => configDifferences(a[key], b[key], prefix === '' ? key : `${prefix}.${key}`));
  }
  return JSON.stringify(a) === JSON.stringify(b) ? [] : [prefix === '' ? '(whole config)' : prefix];
}
