// Preset defaults for each stage. `tiny` trains from scratch on the synthetic data on a CPU in
// minutes; `open-qwen2vl-2b` is the reference recipe (see shared/reference/recipe-notes.md).
import { join } from 'node:path';
import { assetsDir } from '../util/paths.js';
import type { Preset, RunConfig, Stage } from './schema.js';

type StageSettings = Pick<RunConfig, 'image_grid'> & { train: Partial<RunConfig['train']>; data: Partial<RunConfig['data']> };

interface PresetDefinition {
  base: Omit<RunConfig, 'name' | 'stage' | 'image_grid'>;
  stages: Record<Stage, StageSettings>;
}

const COMMON_TRAIN: RunConfig['train'] = {
  global_batch: 256,
  micro_batch: 8,
  lr: 5e-5,
  min_lr_ratio: 0,
  weight_decay: 0.01,
  betas: [0.9, 0.95],
  eps: 1e-8,
  warmup_fraction: 0.03,
  schedule: 'cosine',
  epochs: 1,
  max_steps: null,
  grad_clip: 1.0,
  precision: 'bf16',
  attention: 'auto',
  isolate_documents: true,
  activation_checkpointing: true,
  compile: false,
  checkpoint_every: 500,
  keep_checkpoints: 2,
  log_every: 1,
  loader_workers: 2,
  shuffle_buffer: 64,
  tensorboard: false,
};

const COMMON_DATA: RunConfig['data'] = {
  shards: null,
  seq_len: 4096,
  pretrain_template: '<image>\n{caption}<|im_end|>',
  resize: 'squash',
  overlong: 'truncate',
  max_images_per_sequence: null,
  pack: true,
  packed: null,
};

const SINGLE_PROCESS: RunConfig['dist'] = {
  nnodes: 1,
  nproc_per_node: 1,
  backend: 'auto',
  master_addr: '127.0.0.1',
  master_port: 29500,
};

/** The tokens both presets name (Qwen's ChatML end of turn and padding, LLaVA's image placeholder). */
export const QWEN_TOKENS = { image_token: '<image>', eos_token: '<|im_end|>', pad_token: '<|endoftext|>' };

function tinyPreset(): PresetDefinition {
  return {
    base: {
      version: 1,
      preset: 'tiny',
      seed: 0,
      model: {
        vision: {
          source: {
            pretrained: null,
            config: {
              hidden_size: 64,
              intermediate_size: 128,
              num_hidden_layers: 3,
              num_attention_heads: 4,
              image_size: 64,
              patch_size: 8,
            },
          },
          image_size: 64,
          patch_size: 8,
          hidden_size: 64,
          feature_layer: -2,
          image_mean: [0.5, 0.5, 0.5],
          image_std: [0.5, 0.5, 0.5],
          trainable: false,
        },
        projector: { hidden_size: 128 },
        llm: {
          source: {
            pretrained: null,
            config: {
              vocab_size: 2048,
              hidden_size: 128,
              intermediate_size: 256,
              num_hidden_layers: 4,
              num_attention_heads: 4,
              num_key_value_heads: 2,
              max_position_embeddings: 2048,
              rope_theta: 10000.0,
              tie_word_embeddings: true,
            },
          },
          hidden_size: 128,
          trainable: true,
        },
        init_from: null,
      },
      tokenizer: { path: join(assetsDir(), 'tokenizer', 'tiny', 'tokenizer.json'), ...QWEN_TOKENS },
      data: { ...COMMON_DATA, seq_len: 1024 },
      train: {
        ...COMMON_TRAIN,
        global_batch: 8,
        micro_batch: 4,
        lr: 2e-3,
        weight_decay: 0.01,
        warmup_fraction: 0.05,
        precision: 'fp32',
        attention: 'sdpa',
        activation_checkpointing: false,
        checkpoint_every: 50,
        loader_workers: 0,
      },
      dist: { ...SINGLE_PROCESS, backend: 'gloo' },
    },
    stages: {
      pretrain: { image_grid: 4, train: {}, data: {} },
      sft: { image_grid: 8, train: { lr: 1e-3, weight_decay: 0.1 }, data: {} },
    },
  };
}

function openQwen2vl2bPreset(): PresetDefinition {
  return {
    base: {
      version: 1,
      preset: 'open-qwen2vl-2b',
      seed: 0,
      model: {
        vision: {
          source: { pretrained: 'google/siglip-so400m-patch14-384', config: null },
          image_size: 384,
          patch_size: 14,
          hidden_size: 1152,
          feature_layer: -2,
          image_mean: [0.5, 0.5, 0.5],
          image_std: [0.5, 0.5, 0.5],
          trainable: false,
        },
        projector: { hidden_size: 1536 },
        llm: {
          source: { pretrained: 'Qwen/Qwen2.5-1.5B-Instruct', config: null },
          hidden_size: 1536,
          trainable: true,
        },
        init_from: null,
      },
      tokenizer: { path: null, ...QWEN_TOKENS },
      data: COMMON_DATA,
      train: COMMON_TRAIN,
      dist: { ...SINGLE_PROCESS, backend: 'nccl' },
    },
    stages: {
      pretrain: { image_grid: 12, train: {}, data: {} },
      sft: { image_grid: 27, train: { global_batch: 128, lr: 2e-5, weight_decay: 0.1 }, data: { pack: false } },
    },
  };
}

/** The complete default config of a preset at a stage (before the user's overrides). */
export function presetDefaults(preset: Preset, stage: Stage, name: string): RunConfig {
  const definition = preset === 'tiny' ? tinyPreset() : openQwen2vl2bPreset();
  const settings = definition.stages[stage];
  return {
    ...definition.base,
    name,
    stage,
    image_grid: settings.image_grid,
    data: { ...definition.base.data, ...settings.data },
    train: { ...definition.base.train, ...settings.train },
  };
}
