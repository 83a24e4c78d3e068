import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { repoRoot } from '../../../src/util/paths.js';

test('`loom demo` runs synth -> inspect -> curate -> config -> tokenize -> Python -> pack -> train -> SFT -> chat, and its summary adds up', () => {
  const out = mkdtempSync(join(tmpdir(), 'loom-demo-'));
  try {
    const run = spawnSync(process.execPath, [join(repoRoot(), 'bin', 'loom.js'), 'demo', '--out', out, '--samples', '200', '--sft', '10', '--bench', '8', '--trusted', '60', '--filter-steps', '2', '--pretrain-steps', '2', '--sft-steps', '1', '--json'], {
      encoding: 'utf8',
    });
    assert.equal(run.status, 0, run.stderr);
    const summary = JSON.parse(run.stdout);
    assert.deepEqual(summary, JSON.parse(readFileSync(join(out, 'demo.json'), 'utf8')));
    assert.equal(summary.synth.samples, 200);
    assert.equal(summary.synth.clean + Object.values(summary.synth.noise as Record<string, number>).reduce((a, b) => a + b, 0), 200);
    assert.equal(summary.inspect.samples, 200, 'every synthetic sample reads back');
    assert.equal(summary.inspect.bad, 0);
    // Curation scored the whole pool and kept its top 75% (the sketch is exact at this size), then resharded them.
    const kept = summary.curate.kept as number;
    assert.equal(summary.curate.scored, 200);
    assert.equal(kept, 150);
    assert.equal(summary.curate.filter.pairs, 60);
    assert.equal(summary.curate.truth.labelled, 200);
    assert.equal(Object.values(summary.curate.truth.kinds as Record<string, { kept: number }>).reduce((a, k) => a + k.kept, 0), kept);
    assert.ok(existsSync(summary.curate.histograms[0]));
    assert.equal(summary.config.path, join(out, 'config.json'));
    assert.equal(JSON.parse(readFileSync(summary.config.path, 'utf8')).data.shards, join(out, 'curate', 'shards'));
    assert.equal(summary.tokens.samples, kept);
    assert.equal(summary.tokens.imageTokensPerImage, 16);
    assert.ok(summary.tokens.textTokensMean > 3 && summary.tokens.textTokensMean <= summary.tokens.textTokensMax);
    assert.deepEqual(summary.worker, { config: join(out, 'config.json'), valid: true, name: 'demo', preset: 'tiny', stage: 'pretrain' });
    assert.ok(existsSync(join(out, 'data', 'sft', 'llava.json')) && existsSync(join(out, 'data', 'bench', 'mmbench_synth.tsv')));
    // Packing keeps every document, and the Python training loader reads back exactly what was packed.
    assert.equal(summary.pack.documents, kept);
    assert.ok(summary.pack.sequences >= summary.tokens.sequencesLowerBound);
    assert.ok(summary.pack.efficiency > 0 && summary.pack.efficiency <= 1);
    assert.equal(summary.loader.sequences, summary.pack.sequences);
    assert.equal(summary.loader.images, kept);
    assert.ok(Math.abs(summary.loader.fill - summary.pack.efficiency) < 1e-9, `${summary.loader.fill} vs ${summary.pack.efficiency}`);
    assert.equal(summary.pack_sft.documents, 10, 'every SFT conversation is packed');
    assert.equal(summary.pack_sft.image_tokens_per_image, 64);
    // Training ran both stages; SFT started from the pre-training export.
    assert.equal(summary.train.steps, 2);
    assert.ok(Number.isFinite(summary.train.final_loss) && Number.isFinite(summary.train.first_loss));
    assert.ok(existsSync(join(summary.train.export, 'loom.json')) && existsSync(summary.train.loss_curve));
    assert.equal(summary.train_sft.steps, 1);
    const sftConfig = JSON.parse(readFileSync(join(summary.train_sft.run_dir, 'config.json'), 'utf8'));
    assert.equal(sftConfig.model.init_from, summary.train.export);
    assert.ok(summary.loader.label_unigram_entropy > 1, 'captions carry information');
    // The last step asks the SFT model the first SFT question about its image, through the chat session.
    const first = JSON.parse(readFileSync(join(out, 'data', 'sft', 'llava.json'), 'utf8'))[0];
    assert.equal(summary.chat.id, first.id);
    assert.equal(summary.chat.image, join(out, 'data', 'sft', first.image));
    assert.equal(`<image>\n${summary.chat.question}`, first.conversations[0].value);
    assert.equal(summary.chat.truth, first.conversations[1].value);
    assert.equal(typeof summary.chat.answer, 'string');
    assert.ok(summary.chat.new_tokens >= 1 && summary.chat.new_tokens <= 24, String(summary.chat.new_tokens));
    assert.equal(summary.chat.exact, summary.chat.answer === summary.chat.truth);
    assert.deepEqual(summary.chat.loom_chat.slice(0, 4), ['loom', 'chat', '--model', summary.train_sft.export]);
  } finally {
    rmSync(out, { recursive: true, force: true });
  }
});
