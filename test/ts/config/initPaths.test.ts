// `loom config init` refuses a tokenizer path that does not exist, naming the key and the path.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { repoRoot } from '../../../src/util/paths.js';

const init = (...sets: string[]) =>
  spawnSync(process.execPath, [join(repoRoot(), 'bin', 'loom.js'), 'config', 'init', '--preset', 'tiny', '--name', 'x', ...sets.flatMap((s) => ['--set', s])], { encoding: 'utf8' });

test('config init: a tokenizer path that does not exist is a clear error at config time', () => {
  const missing = init('tokenizer.path=/no/such/dir/tokenizer.json');
  assert.equal(missing.status, 1);
  assert.match(missing.stderr, /tokenizer\.path: \/no\/such\/dir\/tokenizer\.json does not exist/);
  const folder = init(`tokenizer.path=${repoRoot()}`);
  assert.match(folder.stderr, /tokenizer\.path: .* is not a file/);
  const ok = init();
  assert.equal(ok.status, 0, ok.stderr);
  assert.ok(JSON.parse(ok.stdout).tokenizer.path.endsWith('tokenizer.json'));
  assert.equal(init('tokenizer.path=null').status, 0, 'null: the LLM checkpoint tokenizer');
});
