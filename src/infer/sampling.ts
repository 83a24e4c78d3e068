// The decoding settings `loom chat`, `loom generate` and the demo hand to the Python verbs
// (`chat`, `generate`). Only the settings given are passed on, so the defaults live in one place:
// the verbs (loom_compute/infer/), which `--help` quotes.
import { LoomError, EXIT_USAGE } from '../util/errors.js';

export interface Sampling {
  maxNewTokens?: number;
  /** 0 = greedy. */
  temperature?: number;
  topP?: number;
  /** 0 = no top-k cut. */
  topK?: number;
  seed?: number;
  /** Strings that end an answer (not included in it). */
  stop?: string[];
  /** auto, cpu, cuda or cuda:N. */
  device?: string;
  dtype?: 'auto' | 'float32' | 'bfloat16';
}

/** The verbs' defaults, as `--help` states them (the verbs apply them; see python/src/loom_compute/verbs/). */
export const SAMPLING_DEFAULTS = { maxNewTokens: 256, temperature: 0, topP: 1, topK: 0, seed: 0 } as const;

export const DEVICES = ['auto', 'cpu', 'cuda'] as const;
export const DTYPES = ['auto', 'float32', 'bfloat16'] as const;

/** Checks the ranges (a LoomError naming the flag) and returns the worker arguments. */
export function samplingArgs(s: Sampling): string[] {
  const args: string[] = [];
  if (s.maxNewTokens !== undefined) {
    if (!Number.isInteger(s.maxNewTokens) || s.maxNewTokens < 1) throw usage(`--max-new-tokens: expected an integer >= 1, got ${s.maxNewTokens}`);
    args.push('--max-new-tokens', String(s.maxNewTokens));
  }
  if (s.temperature !== undefined) {
    if (!Number.isFinite(s.temperature) || s.temperature < 0) throw usage(`--temperature: expected a number >= 0 (0 = greedy), got ${s.temperature}`);
    args.push('--temperature', String(s.temperature));
  }
  if (s.topP !== undefined) {
    if (!Number.isFinite(s.topP) || s.topP <= 0 || s.topP > 1) throw usage(`--top-p: expected a number in (0, 1], got ${s.topP}`);
    args.push('--top-p', String(s.topP));
  }
  if (s.topK !== undefined) {
    if (!Number.isInteger(s.topK) || s.topK < 0) throw usage(`--top-k: expected an integer >= 0 (0 = off), got ${s.topK}`);
    args.push('--top-k', String(s.topK));
  }
  if (s.seed !== undefined) {
    if (!Number.isInteger(s.seed) || s.seed < 0) throw usage(`--seed: expected an integer >= 0, got ${s.seed}`);
    args.push('--seed', String(s.seed));
  }
  for (const stop of s.stop ?? []) {
    if (stop === '') throw usage('--stop: an empty stop string would end every answer at once');
    // `--stop=TEXT` keeps a stop string that starts with '-' from being read as a flag.
    args.push(`--stop=${stop}`);
  }
  if (s.device !== undefined) {
    if (!(DEVICES as readonly string[]).includes(s.device) && !/^cuda:\d+$/.test(s.device)) throw usage(`--device: expected one of ${DEVICES.join(', ')} or cuda:N, got '${s.device}'`);
    args.push('--device', s.device);
  }
  if (s.dtype !== undefined) args.push('--dtype', oneOf(s.dtype, DTYPES, '--dtype'));
  return args;
}

function oneOf<T extends string>(value: string, allowed: readonly T[], flag: string): T {
  if ((allowed as readonly string[]).includes(value)) return value as T;
  throw usage(`${flag}: expected one of ${allowed.join(', ')}, got '${value}'`);
}

function usage(message: string): LoomError {
  return new LoomError(message, EXIT_USAGE);
}
