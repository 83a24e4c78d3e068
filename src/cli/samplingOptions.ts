// The decoding flags `loom chat` and `loom generate` share, parsed into src/infer/sampling.ts's
// Sampling (which checks the ranges and builds the worker arguments).
import type { Command } from 'commander';
import { DEVICES, DTYPES, SAMPLING_DEFAULTS, type Sampling } from '../infer/sampling.js';
import { integerOption, numberOption } from './options.js';

export interface SamplingCliOptions {
  maxNewTokens?: string;
  temperature?: string;
  topP?: string;
  topK?: string;
  seed?: string;
  stop?: string[];
  device?: string;
  dtype?: string;
}

const d = SAMPLING_DEFAULTS;

export function addSamplingOptions(command: Command): Command {
  return command
    .option('--max-new-tokens <n>', `most tokens per answer (default ${d.maxNewTokens})`)
    .option('--temperature <t>', `sampling temperature; 0 = greedy (default ${d.temperature})`)
    .option('--top-p <p>', `nucleus sampling: keep the smallest set of tokens with this much probability, (0, 1] (default ${d.topP})`)
    .option('--top-k <k>', `sample among the k most likely tokens; 0 = no limit (default ${d.topK})`)
    .option('--seed <n>', `random seed for sampling (default ${d.seed})`)
    .option('--stop <text>', 'end the answer where this text appears (not included; repeatable); the model\'s end-of-turn token always stops it', (value: string, previous: string[] = []) => [...previous, value])
    .option('--device <device>', `where the model runs: ${DEVICES.join(', ')} or cuda:N (default auto: this process's GPU when there is one, else cpu)`)
    .option('--dtype <dtype>', `weights and compute: ${DTYPES.join(', ')} (default auto: bfloat16 on CUDA, float32 on the CPU)`);
}

export function samplingFromOptions(o: SamplingCliOptions): Sampling {
  return {
    ...(o.maxNewTokens !== undefined ? { maxNewTokens: integerOption(o.maxNewTokens, '--max-new-tokens', 1) } : {}),
    ...(o.temperature !== undefined ? { temperature: numberOption(o.temperature, '--temperature') } : {}),
    ...(o.topP !== undefined ? { topP: numberOption(o.topP, '--top-p') } : {}),
    ...(o.topK !== undefined ? { topK: integerOption(o.topK, '--top-k', 0) } : {}),
    ...(o.seed !== undefined ? { seed: integerOption(o.seed, '--seed', 0) } : {}),
    ...(o.stop !== undefined ? { stop: o.stop } : {}),
    ...(o.device !== undefined ? { device: o.device } : {}),
    ...(o.dtype !== undefined ? { dtype: o.dtype as Sampling['dtype'] } : {}),
  };
}
