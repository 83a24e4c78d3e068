// The run config: one typed, fully resolved description of a run. TypeScript owns this schema;
// it is exported as JSON Schema (python/src/loom_compute/schema/run-config.schema.json) and the
// Python compute plane validates every config it is handed against that same file.
import { z } from 'zod';

const PositiveInt = z.number().int().positive();
const NonNegativeInt = z.number().int().nonnegative();
const Fraction = z.number().min(0).max(1);

// Upper bounds: far above any real run, low enough that a typo (an extra zero, a pasted
// timestamp) fails at `--set` / `config init` with its key path instead of crashing a stage
// later with a stack trace (e.g. seq_len=99999999999 in `pack`).
const upTo = (max: number) => PositiveInt.max(max);
/** Widths, sizes and counts of model parts. */
const MAX_WIDTH = 65_536;
/** Optimizer steps and step intervals. */
const MAX_STEPS = 1_000_000_000;
/** The image side the data plane prepares (src/images/image.ts refuses more). */
const MAX_IMAGE_SIDE = 8192;
const Mean = z.number().min(0).max(1);
const Std = z.number().positive().max(10);

/** Weights come from a checkpoint (local directory or hub id), or a model is built from a config. */
const ModelSource = z.union([
  z.strictObject({
    pretrained: z.string().min(1).describe('local checkpoint directory or hub id, loaded with from_pretrained'),
    config: z.null(),
  }),
  z.strictObject({
    pretrained: z.null(),
    config: z
      .record(z.string(), z.unknown())
      .describe('transformers config fields for a from-scratch build (random initialisation)'),
  }),
]);

const Vision = z.strictObject({
  source: ModelSource,
  image_size: upTo(MAX_IMAGE_SIDE).describe('input resolution in pixels (square)'),
  patch_size: upTo(MAX_IMAGE_SIDE),
  hidden_size: upTo(MAX_WIDTH),
  feature_layer: z.number().int().min(-1024).max(1024).describe('hidden state taken as features; -2 = second-to-last block'),
  image_mean: z.tuple([Mean, Mean, Mean]),
  image_std: z.tuple([Std, Std, Std]),
  trainable: z.boolean().describe('false = frozen (the recipe keeps the vision tower frozen)'),
});

const Projector = z.strictObject({
  hidden_size: upTo(MAX_WIDTH).describe('width of the Linear-GELU-Linear projector'),
});

const Llm = z.strictObject({
  source: ModelSource,
  hidden_size: upTo(MAX_WIDTH),
  trainable: z.boolean(),
});

const Tokenizer = z.strictObject({
  path: z.string().min(1).nullable().describe('tokenizer.json; null = the one in the LLM checkpoint directory'),
  image_token: z.string().min(1),
  eos_token: z.string().min(1),
  pad_token: z.string().min(1),
});

const Data = z.strictObject({
  shards: z.string().min(1).nullable().describe('input shards: a directory, a file or a {a..b} brace range'),
  seq_len: z.number().int().min(16).max(1_048_576).describe('tokens per packed sequence (16 to 2^20)'),
  pretrain_template: z
    .string()
    .regex(/\{caption\}/, 'must contain {caption}')
    .describe('text of one pre-training sample; {caption} is replaced, the image token marks the image'),
  resize: z.enum(['squash', 'pad']),
  overlong: z.enum(['truncate', 'drop']).describe('what happens to a sample longer than seq_len'),
  max_images_per_sequence: upTo(MAX_WIDTH).nullable(),
  pack: z.boolean(),
  packed: z.string().min(1).nullable().describe('packed shards (a directory of .tar) that training reads; output of loom pack'),
});

const Train = z.strictObject({
  global_batch: upTo(16_777_216).describe('sequences per optimizer step, across all ranks and accumulation steps'),
  micro_batch: upTo(MAX_WIDTH).describe('sequences per rank per forward pass'),
  lr: z.number().positive().max(10),
  min_lr_ratio: Fraction,
  weight_decay: z.number().nonnegative().max(10),
  betas: z.tuple([z.number().min(0).lt(1), z.number().min(0).lt(1)]),
  eps: z.number().positive().max(1),
  warmup_fraction: Fraction,
  schedule: z.enum(['cosine', 'linear', 'constant']),
  epochs: z.number().positive().max(1_000_000),
  max_steps: upTo(MAX_STEPS).nullable().describe('stop after this many optimizer steps (null: run the epochs)'),
  grad_clip: z.number().positive().max(1e6).nullable(),
  precision: z.enum(['bf16', 'fp32']),
  attention: z
    .enum(['auto', 'flex', 'sdpa', 'eager'])
    .describe('auto: FlexAttention with a document mask on CUDA, SDPA with a dense mask on CPU; eager: the math reference'),
  isolate_documents: z.boolean().describe('false reproduces the original recipe: packed samples attend to each other'),
  activation_checkpointing: z.boolean(),
  compile: z.boolean(),
  checkpoint_every: upTo(MAX_STEPS).describe('optimizer steps between DCP checkpoints (one is always written at the end)'),
  keep_checkpoints: upTo(10_000).describe('newest checkpoints kept in runs/<name>/checkpoints; older ones are deleted'),
  log_every: upTo(MAX_STEPS),
  loader_workers: NonNegativeInt.max(256).describe('DataLoader worker processes per rank (0 = read in the training process)'),
  shuffle_buffer: upTo(10_000_000).describe('packed sequences in each reader\'s shuffle buffer'),
  tensorboard: z.boolean().describe('also write TensorBoard event files to runs/<name>/tensorboard (needs the tensorboard package)'),
});

const Dist = z.strictObject({
  nnodes: upTo(100_000),
  nproc_per_node: upTo(1024),
  backend: z.enum(['auto', 'nccl', 'gloo']),
  master_addr: z.string().min(1),
  master_port: z.number().int().min(1).max(65535),
});

export const PRESETS = ['tiny', 'open-qwen2vl-2b'] as const;
export const STAGES = ['pretrain', 'sft'] as const;

export const RunConfigSchema = z.strictObject({
  version: z.literal(1),
  name: z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._-]*$/, 'letters, digits, ".", "_" and "-" only'),
  preset: z.enum(PRESETS),
  stage: z.enum(STAGES),
  seed: NonNegativeInt.max(4_294_967_295).describe('0 to 2^32 - 1 (numpy\'s seed range)'),
  image_grid: upTo(256).describe('pooled grid side: image tokens per image = image_grid^2 (12 -> 144, 27 -> 729)'),
  model: z.strictObject({
    vision: Vision,
    projector: Projector,
    llm: Llm,
    init_from: z
      .string()
      .min(1)
      .nullable()
      .describe('a Loom export directory (runs/<name>/export) whose weights start this run, e.g. pre-training for SFT'),
  }),
  tokenizer: Tokenizer,
  data: Data,
  train: Train,
  dist: Dist,
});

export type RunConfig = z.infer<typeof RunConfigSchema>;
export type Preset = (typeof PRESETS)[number];
export type Stage = (typeof STAGES)[number];

/** Image tokens each image occupies in the sequence at this config's stage. */
export function imageTokensPerImage(config: RunConfig): number {
  return config.image_grid * config.image_grid;
}

/** The JSON Schema handed to the Python side. */
export function runConfigJsonSchema(): Record<string, unknown> {
  return {
    $id: 'https://loom.dev/schema/run-config.schema.json',
    title: 'Loom run config (resolved)',
    ...z.toJSONSchema(RunConfigSchema, { target: 'draft-2020-12' }),
  };
}
