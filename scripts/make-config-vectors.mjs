// Regenerates the shared config test vectors (vectors/config/) that both the TypeScript and the
// Python tests check. Run after `npm run build` when the schema or presets change:
//   node scripts/make-config-vectors.mjs
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { presetDefaults } from '../dist/src/config/presets.js';

const root = 'vectors/config';
const base = () => structuredClone(presetDefaults('tiny', 'pretrain', 'vector'));
// Paths would differ per checkout; vectors use a fixed, portable one.
const portable = (c) => ({ ...c, tokenizer: { ...c.tokenizer, path: 'assets/tokenizer/tiny/tokenizer.json' } });

const valid = {
  'tiny-pretrain': portable(base()),
  'tiny-sft': portable(presetDefaults('tiny', 'sft', 'vector')),
  'open-qwen2vl-2b-pretrain': presetDefaults('open-qwen2vl-2b', 'pretrain', 'vector'),
  'open-qwen2vl-2b-sft': presetDefaults('open-qwen2vl-2b', 'sft', 'vector'),
  'local-checkpoints': (() => {
    const c = presetDefaults('open-qwen2vl-2b', 'pretrain', 'local_ckpt-1.0');
    c.model.vision.source = { pretrained: '/models/siglip-so400m-patch14-384', config: null };
    c.tokenizer.path = '/models/qwen2.5-1.5b/tokenizer.json';
    c.data.max_images_per_sequence = 32;
    c.train.max_steps = 100;
    c.train.grad_clip = null;
    return c;
  })(),
  'integer-valued-floats': (() => {
    const c = portable(base());
    c.train.lr = 1;
    c.train.epochs = 2;
    return c;
  })(),
};

/** Each invalid vector changes one thing of a valid config; `error_at` is a key path both sides must report. */
const NOT_AN_OBJECT = Symbol('replace the whole config with null');
const mutations = {
  'negative-lr': ['train.lr', (c) => (c.train.lr = -1e-4)],
  'zero-lr': ['train.lr', (c) => (c.train.lr = 0)],
  'lr-as-string': ['train.lr', (c) => (c.train.lr = '1e-4')],
  'fractional-batch': ['train.global_batch', (c) => (c.train.global_batch = 2.5)],
  'unknown-key-typo': ['train', (c) => (c.train.warmup_frac = 0.03)],
  'unknown-top-level-key': ['', (c) => (c.extra = true)],
  'missing-key': ['data', (c) => delete c.data.seq_len],
  'bad-stage': ['stage', (c) => (c.stage = 'finetune')],
  'bad-preset': ['preset', (c) => (c.preset = 'huge')],
  'bad-version': ['version', (c) => (c.version = 2)],
  'bad-name': ['name', (c) => (c.name = 'my run/1')],
  'seq-len-too-small': ['data.seq_len', (c) => (c.data.seq_len = 8)],
  'template-without-caption': ['data.pretrain_template', (c) => (c.data.pretrain_template = '<image>\n<|im_end|>')],
  'bad-resize-mode': ['data.resize', (c) => (c.data.resize = 'crop')],
  'warmup-over-one': ['train.warmup_fraction', (c) => (c.train.warmup_fraction = 1.5)],
  'beta-equal-one': ['train.betas.1', (c) => (c.train.betas = [0.9, 1])],
  'betas-too-long': ['train.betas', (c) => (c.train.betas = [0.9, 0.95, 0.99])],
  'std-zero': ['model.vision.image_std.0', (c) => (c.model.vision.image_std = [0, 0.5, 0.5])],
  'source-both-null': ['model.llm.source', (c) => (c.model.llm.source = { pretrained: null, config: null })],
  'source-both-set': ['model.vision.source', (c) => (c.model.vision.source = { pretrained: 'x', config: {} })],
  'port-out-of-range': ['dist.master_port', (c) => (c.dist.master_port = 70000)],
  'bad-backend': ['dist.backend', (c) => (c.dist.backend = 'mpi')],
  'null-grid': ['image_grid', (c) => (c.image_grid = null)],
  'negative-seed': ['seed', (c) => (c.seed = -1)],
  'empty-tokenizer-path': ['tokenizer.path', (c) => (c.tokenizer.path = '')],
  'not-an-object': ['', () => NOT_AN_OBJECT],
  // Upper bounds: typos that used to pass validation and crash a stage later.
  'seq-len-huge': ['data.seq_len', (c) => (c.data.seq_len = 99999999999)],
  'image-size-huge': ['model.vision.image_size', (c) => (c.model.vision.image_size = 100000)],
  'image-grid-huge': ['image_grid', (c) => (c.image_grid = 1000)],
  'global-batch-huge': ['train.global_batch', (c) => (c.train.global_batch = 1e12)],
  'micro-batch-huge': ['train.micro_batch', (c) => (c.train.micro_batch = 1e9)],
  'lr-huge': ['train.lr', (c) => (c.train.lr = 1000)],
  'max-steps-huge': ['train.max_steps', (c) => (c.train.max_steps = 1e15)],
  'loader-workers-huge': ['train.loader_workers', (c) => (c.train.loader_workers = 100000)],
  'seed-huge': ['seed', (c) => (c.seed = 2 ** 40)],
  'nproc-huge': ['dist.nproc_per_node', (c) => (c.dist.nproc_per_node = 100000)],
  'image-mean-over-one': ['model.vision.image_mean.0', (c) => (c.model.vision.image_mean = [128, 0.5, 0.5])],
  'max-images-huge': ['data.max_images_per_sequence', (c) => (c.data.max_images_per_sequence = 1e9)],
};

rmSync(root, { recursive: true, force: true });
for (const dir of ['valid', 'invalid']) mkdirSync(join(root, dir), { recursive: true });
for (const [name, config] of Object.entries(valid)) {
  writeFileSync(join(root, 'valid', `${name}.json`), JSON.stringify({ description: name, config }, null, 2) + '\n');
}
for (const [name, [errorAt, mutate]] of Object.entries(mutations)) {
  const config = portable(base());
  const replaced = mutate(config);
  const out = replaced === NOT_AN_OBJECT ? null : config;
  writeFileSync(
    join(root, 'invalid', `${name}.json`),
    JSON.stringify({ description: name, error_at: errorAt, config: out }, null, 2) + '\n',
  );
}
console.log(`wrote ${Object.keys(valid).length} valid and ${Object.keys(mutations).length} invalid vectors to ${root}`);
