// The Python `validate-config` verb through runWorker: a config the TypeScript side resolves is
// accepted by the Python side, and a broken one comes back as one message naming file and key.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { presetDefaults } from '../../../src/config/presets.js';
import { PRESETS, STAGES } from '../../../src/config/schema.js';
import { runWorker, WorkerError } from '../../../src/protocol/worker.js';

test('every preset and stage the CLI resolves passes Python validation', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'loom-validate-'));
  try {
    for (const preset of PRESETS) {
      for (const stage of STAGES) {
        const path = join(dir, `${preset}-${stage}.json`);
        writeFileSync(path, JSON.stringify(presetDefaults(preset, stage, `run-${preset}-${stage}`)));
        const { done } = await runWorker({ verb: 'validate-config', configPath: path, silent: true });
        assert.deepEqual(done, { config: path, valid: true, name: `run-${preset}-${stage}`, preset, stage });
      }
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('an invalid config fails with the file and the key in the message', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'loom-validate-'));
  try {
    const path = join(dir, 'bad.json');
    writeFileSync(path, JSON.stringify({ ...presetDefaults('tiny', 'pretrain', 'bad'), seed: 'forty-two' }));
    await assert.rejects(runWorker({ verb: 'validate-config', configPath: path, silent: true }), (err: unknown) => {
      assert.ok(err instanceof WorkerError);
      assert.equal(err.exitCode, 1);
      assert.match(err.message, /^validate-config failed: /);
      assert.ok(err.message.includes(path) && err.message.includes('seed'), err.message);
      return true;
    });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
