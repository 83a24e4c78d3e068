// `loom tokenizer add-image-token`: the explicit form of what config resolution does on its own
// when a run's tokenizer lacks tokenizer.image_token (src/config/derivedTokenizer.ts).
import type { Command } from 'commander';
import { resolve } from 'node:path';
import { QWEN_TOKENS } from '../../config/presets.js';
import { writeTokenizerWithImageToken } from '../../config/derivedTokenizer.js';
import { printSummary, table } from '../output.js';

const HELP =
  'Write a copy of a tokenizer.json with the image token added as a special added token at the next free id ' +
  '(one more than the largest id the file uses), every other byte unchanged. The same input gives the same ' +
  'bytes. A tokenizer that has the token already is copied unchanged; one whose image token is not special, ' +
  'or that lacks the eos or pad token, is refused.\n\n' +
  '`loom config init` (and pack and train resolving a preset) do this on their own when the tokenizer lacks the ' +
  'token, storing the copy under $LOOM_CACHE_DIR (default ~/.cache/loom); use this command to keep the copy ' +
  'somewhere of your choosing and pass it with --set tokenizer.path=OUT.';

export function registerTokenizer(program: Command): void {
  const tokenizer = program.command('tokenizer').summary('prepare a tokenizer.json for a run').description('Prepare a tokenizer.json for a run.');
  tokenizer
    .command('add-image-token')
    .description(HELP)
    .argument('<src>', 'the tokenizer.json to start from (e.g. a downloaded Qwen2.5 checkpoint\'s)')
    .requiredOption('--out <path>', 'where to write the tokenizer.json with the token (atomically)')
    .option('--image-token <token>', 'the image placeholder (tokenizer.image_token)', QWEN_TOKENS.image_token)
    .option('--eos-token <token>', 'the end-of-turn token that must exist (tokenizer.eos_token)', QWEN_TOKENS.eos_token)
    .option('--pad-token <token>', 'the padding token that must exist (tokenizer.pad_token)', QWEN_TOKENS.pad_token)
    .option('--json', 'print the summary as JSON on stdout')
    .addHelpText('after', '\nExample:\n  loom tokenizer add-image-token models/qwen2.5-1.5b/tokenizer.json --out runs/tokenizer/tokenizer.json\n')
    .action((src: string, opts: { out: string; imageToken: string; eosToken: string; padToken: string; json?: boolean }) => {
      const written = writeTokenizerWithImageToken(resolve(src), resolve(opts.out), {
        image_token: opts.imageToken,
        eos_token: opts.eosToken,
        pad_token: opts.padToken,
      });
      printSummary(opts, written, () =>
        [
          written.added ? `added ${JSON.stringify(written.image_token)} as special token ${written.id}` : `${JSON.stringify(written.image_token)} was there already (id ${written.id}); copied unchanged`,
          table([
            ['source', written.source],
            ['wrote', written.out],
            ['sha256', written.sha256],
          ]),
        ].join('\n'),
      );
    });
}
