// The layer rule of docs/architecture.md: the CLI is the user interface only, so no module outside
// src/cli/ may import from it (errors live in util/, progress is a callback the CLI supplies).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { repoRoot } from '../../../src/util/paths.js';

function tsFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) =>
    entry.isDirectory() ? tsFiles(join(dir, entry.name)) : entry.name.endsWith('.ts') ? [join(dir, entry.name)] : [],
  );
}

/** Module specifiers of every import/export-from in a source text. */
function importedSpecifiers(source: string): string[] {
  return [...source.matchAll(/(?:^|\n)\s*(?:import|export)\b[^;]*?from\s+'([^']+)'/g)].map((m) => m[1]!);
}

test('importedSpecifiers finds multi-line and type imports', () => {
  const text = "import {\n  a,\n  b,\n} from '../cli/errors.js';\nimport type { X } from './x.js';\nexport { y } from '../y.js';\nconst s = 'from nowhere';\n";
  assert.deepEqual(importedSpecifiers(text), ['../cli/errors.js', './x.js', '../y.js']);
});

test('no module outside src/cli/ imports src/cli/', () => {
  const src = join(repoRoot(), 'src');
  const offenders = tsFiles(src)
    .filter((file) => relative(src, file).split('/')[0] !== 'cli')
    .flatMap((file) =>
      importedSpecifiers(readFileSync(file, 'utf8'))
        .filter((spec) => /(^|\/)cli\//.test(spec))
        .map((spec) => `${relative(src, file)} imports ${spec}`),
    );
  assert.deepEqual(offenders, []);
});
