// The `loom` command: one sub-command per pipeline stage (see docs/architecture.md).
import { Command, CommanderError } from 'commander';
import { LoomError, EXIT_FAILURE } from '../util/errors.js';
import { registerChat } from './commands/chat.js';
import { registerConfig } from './commands/config.js';
import { registerCurate } from './commands/curate.js';
import { registerDemo } from './commands/demo.js';
import { registerDoctor } from './commands/doctor.js';
import { registerExport } from './commands/export.js';
import { registerGenerate } from './commands/generate.js';
import { registerImport } from './commands/import.js';
import { registerInspect } from './commands/inspect.js';
import { registerPack } from './commands/pack.js';
import { registerReshard } from './commands/reshard.js';
import { registerSelect } from './commands/select.js';
import { registerSynth } from './commands/synth.js';
import { registerTokenizer } from './commands/tokenizer.js';
import { registerTrain } from './commands/train.js';
import { registerUnbuilt } from './commands/unbuilt.js';

export function buildProgram(): Command {
  const program = new Command('loom')
    .description(
      'Loom: curate, pack, train and evaluate multimodal LLMs (Open-Qwen2VL recipe), end to end.\n' +
        'Pipeline: synth -> inspect -> curate -> select -> reshard -> pack -> train -> eval.\n' +
        'Use a model: chat, generate; hand it on or bring one in: export, import.\n' +
        'Every command takes --help; most take --json for a machine-readable summary on stdout.',
    )
    .showHelpAfterError()
    .exitOverride();
  registerSynth(program);
  registerInspect(program);
  registerConfig(program);
  registerDoctor(program);
  registerDemo(program);
  registerPack(program);
  registerTrain(program);
  registerSelect(program);
  registerReshard(program);
  registerCurate(program);
  registerTokenizer(program);
  registerChat(program);
  registerGenerate(program);
  registerExport(program);
  registerImport(program);
  registerUnbuilt(program, new Set(program.commands.map((c) => c.name())));
  return program;
}

/** Runs the CLI and returns the process exit code (errors become one clear line on stderr). */
export async function main(argv: string[]): Promise<number> {
  const program = buildProgram();
  for (const cmd of program.commands) cmd.exitOverride();
  try {
    await program.parseAsync(argv);
    return typeof process.exitCode === 'number' ? process.exitCode : 0;
  } catch (err) {
    if (err instanceof CommanderError) return err.exitCode;
    if (err instanceof LoomError) {
      process.stderr.write(`loom: error: ${err.message}\n`);
      return err.exitCode;
    }
    process.stderr.write(`loom: internal error: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    return EXIT_FAILURE;
  }
}
