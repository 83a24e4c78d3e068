// `loom config`: resolve presets into a run config, validate config files, print the schema.
import type { Command } from 'commander';
import { resolveRunConfig, loadRunConfigFile, readJsonFile } from '../../config/resolve.js';
import { checkConfigPaths } from '../../config/checkPaths.js';
import { runConfigJsonSchema, imageTokensPerImage, PRESETS, STAGES } from '../../config/schema.js';
import { writeJsonAtomic } from '../../util/atomic.js';
import { printSummary, table } from '../output.js';

const collect = (value: string, previous: string[]): string[] => [...previous, value];

export function registerConfig(program: Command): void {
  const config = program
    .command('config')
    .summary('resolve, validate and export run configs')
    .description('Resolve presets into a run config, validate config files, print the JSON Schema.');

  config
    .command('init')
    .description(
      'Resolve a preset at a stage, with your overrides, into a complete validated run config.\n\n' +
        'Overrides merge in order: --file (a partial config, JSON), then each --set key.path=value ' +
        '(e.g. --set train.lr=1e-4 --set data.shards=shards/). A value that is JSON (number, true, false, null, ' +
        '"string", [array], {object}) is that JSON; any other text is a string in which \\n, \\t and \\\\ are a ' +
        'newline, a tab and a backslash, so a template needs no JSON quoting.\n\n' +
        'Numbers are checked against sane bounds and tokenizer.path must name an existing file. ' +
        'tokenizer.path defaults to the local LLM checkpoint\'s tokenizer.json; when that tokenizer lacks ' +
        'tokenizer.image_token (a real Qwen2.5\'s has no <image>), the config names a copy with the token added as a ' +
        'special token at the next free id, stored under $LOOM_CACHE_DIR/tokenizers/<sha256>/ (default ~/.cache/loom).',
    )
    .option('--preset <name>', `one of: ${PRESETS.join(', ')}`, 'tiny')
    .option('--stage <stage>', `one of: ${STAGES.join(', ')}`, 'pretrain')
    .option('--name <name>', 'run name (runs/<name>/)', 'run')
    .option('--file <path>', 'partial config JSON merged over the preset (repeatable)', collect, [])
    .option('--set <key=value>', 'override one key (repeatable)', collect, [])
    .option('--out <path>', 'write the config here (atomically) instead of stdout')
    .action(async (opts: { preset: string; stage: string; name: string; file: string[]; set: string[]; out?: string }) => {
      const resolved = resolveRunConfig({
        preset: opts.preset,
        stage: opts.stage,
        name: opts.name,
        overrides: opts.file.map(readJsonFile),
        assignments: opts.set,
        onDerivedTokenizer: (note) =>
          process.stderr.write(
            `tokenizer: ${note.source} has no ${JSON.stringify(note.image_token)}; the config uses a copy with it added as special token ${note.id}: ${note.path}\n`,
          ),
      });
      checkConfigPaths(resolved);
      if (opts.out) {
        await writeJsonAtomic(opts.out, resolved);
        process.stderr.write(`wrote ${opts.out}\n`);
      } else {
        process.stdout.write(JSON.stringify(resolved, null, 2) + '\n');
      }
    });

  config
    .command('validate')
    .description('Validate a run config file against the schema (exit 1 with every problem listed if invalid).')
    .argument('<file>', 'config JSON')
    .option('--json', 'machine-readable summary')
    .action((file: string, opts: { json?: boolean }) => {
      const resolved = loadRunConfigFile(file);
      const summary = {
        file,
        valid: true,
        name: resolved.name,
        preset: resolved.preset,
        stage: resolved.stage,
        image_tokens_per_image: imageTokensPerImage(resolved),
        seq_len: resolved.data.seq_len,
      };
      printSummary(opts, summary, () =>
        [
          `${file}: valid`,
          table([
            ['name', resolved.name],
            ['preset', resolved.preset],
            ['stage', resolved.stage],
            ['image tokens/image', summary.image_tokens_per_image],
            ['sequence length', resolved.data.seq_len],
          ]),
        ].join('\n'),
      );
    });

  config
    .command('schema')
    .description('Print the run config JSON Schema (the file the Python side validates against).')
    .option('--out <path>', 'write it here instead of stdout')
    .action(async (opts: { out?: string }) => {
      const schema = runConfigJsonSchema();
      if (opts.out) await writeJsonAtomic(opts.out, schema);
      else process.stdout.write(JSON.stringify(schema, null, 2) + '\n');
    });
}
