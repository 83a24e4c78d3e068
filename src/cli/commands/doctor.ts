// `loom doctor`: checks both planes of this machine, Node (sharp/libvips, the tokenizers
// binding) and the Python compute environment (torch, CUDA, libraries), in one report.
import { readFileSync, realpathSync } from 'node:fs';
import { join } from 'node:path';
import type { Command } from 'commander';
import { LoomError, EXIT_FAILURE } from '../../util/errors.js';
import { printSummary, table } from '../output.js';
import { startProgress } from '../progress.js';
import { runWorker } from '../../protocol/worker.js';
import { formatCommand, workerCommand } from '../../protocol/command.js';
import { pythonExecutable, repoRoot } from '../../util/paths.js';

interface Check {
  ok: boolean;
  version?: string | null;
  error?: string;
  [k: string]: unknown;
}

export interface DoctorReport {
  ok: boolean;
  problems: string[];
  /** Things that work but are probably not what the user meant (the run goes on). */
  warnings: string[];
  node: { version: string; platform: string; arch: string; sharp: Check; tokenizers: Check };
  python: { interpreter: string; source: string; command: string; ok: boolean; error?: string; report?: Record<string, unknown> };
}

const SETUP_HINT = 'hint: run `make setup` to create .venv with loom_compute, or set LOOM_PYTHON to a Python that has it installed';

function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

async function checkSharp(): Promise<Check> {
  try {
    const sharp = (await import('sharp')).default;
    const versions = sharp.versions as Record<string, string | undefined>;
    return { ok: true, version: versions.sharp ?? null, libvips: versions.vips ?? null };
  } catch (err) {
    return { ok: false, version: null, error: errorText(err) };
  }
}

async function checkTokenizers(): Promise<Check> {
  try {
    const tokenizers = await import('tokenizers');
    // Calling into the native binding proves it loaded for this platform, not just its JS shim.
    const alphabet = tokenizers.byteLevelAlphabet();
    if (alphabet.length !== 256) throw new Error(`the binding returned a byte-level alphabet of ${alphabet.length} symbols, not 256`);
    const pkg = JSON.parse(readFileSync(join(repoRoot(), 'node_modules', 'tokenizers', 'package.json'), 'utf8')) as { version?: string };
    return { ok: true, version: pkg.version ?? null };
  } catch (err) {
    return { ok: false, version: null, error: errorText(err) };
  }
}

function interpreterSource(python: string): string {
  if (process.env.LOOM_PYTHON) return 'LOOM_PYTHON';
  return python === 'python3' ? 'python3 on PATH (no .venv in the repository)' : "the repository's .venv";
}

async function collectDoctorReport(options: { silent?: boolean } = {}): Promise<DoctorReport> {
  const [sharp, tokenizers] = await Promise.all([checkSharp(), checkTokenizers()]);
  const interpreter = pythonExecutable();
  const python: DoctorReport['python'] = {
    interpreter,
    source: interpreterSource(interpreter),
    command: formatCommand(workerCommand({ verb: 'doctor', python: interpreter })),
    ok: false,
  };
  try {
    const { done } = await runWorker({ verb: 'doctor', python: interpreter, progressLabel: 'checking Python', startProgress, silent: options.silent });
    python.report = done;
    python.ok = done.ok === true;
  } catch (err) {
    if (!(err instanceof LoomError)) throw err;
    python.error = err.message;
  }
  const problems: string[] = [];
  if (!sharp.ok) problems.push(`sharp does not load: ${sharp.error}`);
  if (!tokenizers.ok) problems.push(`the tokenizers binding does not load: ${tokenizers.error}`);
  if (python.error !== undefined) problems.push(`the Python worker does not run: ${python.error}`);
  const pythonProblems = python.report?.problems;
  if (Array.isArray(pythonProblems)) problems.push(...pythonProblems.map((p) => `python: ${String(p)}`));
  const warnings: string[] = [];
  const imported = record(python.report?.loom_compute).path;
  const elsewhere = typeof imported === 'string' ? otherCheckoutWarning(imported, repoRoot()) : null;
  if (elsewhere) warnings.push(elsewhere);
  return {
    ok: problems.length === 0,
    problems,
    warnings,
    node: { version: process.version, platform: process.platform, arch: process.arch, sharp, tokenizers },
    python,
  };
}

/**
 * A warning when the worker imports loom_compute from another place than this repository's
 * python/src (an editable install of another checkout, an old wheel): the Python side would then
 * run other code than the TypeScript side it talks to, without any error.
 */
export function otherCheckoutWarning(importedFrom: string, repo: string): string | null {
  const ours = join(repo, 'python', 'src', 'loom_compute');
  const real = (p: string) => {
    try {
      return realpathSync(p);
    } catch {
      return p;
    }
  };
  if (real(importedFrom) === real(ours)) return null;
  return (
    `loom_compute is imported from ${importedFrom}, not from this repository (${ours}): ` +
    'the worker runs another checkout\'s Python code; reinstall (`make setup`) or set PYTHONPATH=' + join(repo, 'python', 'src')
  );
}

function firstLine(text: string): string {
  return text.split('\n', 1)[0] ?? '';
}

function indent(text: string, prefix: string): string {
  return text
    .split('\n')
    .map((line) => prefix + line)
    .join('\n');
}

function yesNo(value: unknown): string {
  return value === true ? 'yes' : value === false ? 'no' : '-';
}

function record(value: unknown): Record<string, unknown> {
  return typeof value === 'object' && value !== null ? (value as Record<string, unknown>) : {};
}

function checkLine(check: Check, extra = ''): string {
  return check.ok ? `${check.version ?? '?'}${extra}` : `BROKEN: ${check.error}`;
}

export function formatDoctorReport(report: DoctorReport): string {
  const { node, python } = report;
  const out = [
    'Node',
    table([
      ['node', `${node.version} (${node.platform} ${node.arch})`],
      ['sharp', checkLine(node.sharp, ` (libvips ${String(node.sharp.libvips ?? '?')})`)],
      ['tokenizers', checkLine(node.tokenizers, ' (native binding loads)')],
    ]),
    '',
    `Python: ${python.interpreter} (from ${python.source})`,
  ];
  const r = python.report;
  if (!r) {
    out.push(`  the worker did not run (command: ${python.command}):`, indent(python.error ?? 'unknown reason', '    '));
  } else {
    const py = record(r.python);
    const cpu = record(r.cpu);
    const torch = record(r.torch);
    const bf16 = record(torch.bf16);
    const dist = record(torch.distributed);
    const devices = Array.isArray(torch.devices) ? torch.devices.map(record) : [];
    const rows: Array<[string, string | number]> = [
      ['python', `${String(py.version)} ${String(py.implementation ?? '')}`.trim()],
      ['cpu', `${String(cpu.count)} cores (${String(cpu.usable ?? '?')} usable, ${String(cpu.machine ?? '?')})`],
      ['torch', torch.ok ? String(torch.version) : `BROKEN: ${String(torch.error)}`],
    ];
    if (torch.ok) {
      rows.push(['cuda', torch.cuda_available ? `yes (CUDA ${String(torch.cuda_version)}, ${devices.length} device(s))` : 'not available (CPU only)']);
      for (const d of devices) rows.push([`  gpu ${String(d.index)}`, `${String(d.name)} (sm ${String(d.capability)}, ${String(d.memory_gib)} GiB)`]);
      rows.push(['bf16', `cpu ${yesNo(bf16.cpu)}, cuda ${yesNo(bf16.cuda)}`]);
      rows.push(['distributed', `nccl ${yesNo(dist.nccl)}, gloo ${yesNo(dist.gloo)}, mpi ${yesNo(dist.mpi)}`]);
    }
    for (const [name, value] of Object.entries(record(r.libraries))) {
      const lib = record(value);
      rows.push([name, lib.ok ? String(lib.version ?? '?') : `BROKEN: ${String(lib.error)}`]);
    }
    const own = record(r.loom_compute);
    rows.push(['loom_compute', `${String(own.version ?? '?')} (${String(own.path ?? '?')})`]);
    out.push(table(rows));
  }
  out.push('');
  if (report.warnings.length > 0) out.push(`Warnings:\n${report.warnings.map((w) => `  - ${w}`).join('\n')}`, '');
  out.push(report.ok ? 'Everything Loom needs is in place.' : `Problems:\n${report.problems.map((p) => `  - ${firstLine(p)}`).join('\n')}`);
  return out.join('\n');
}

export function registerDoctor(program: Command): void {
  program
    .command('doctor')
    .summary('check Node, Python, torch and GPUs for Loom')
    .description(
      'Check this machine for Loom: Node (version, sharp/libvips, the tokenizers binding) and the Python ' +
        'compute worker (interpreter, torch, CUDA devices, bf16, NCCL/gloo, library versions).\n\n' +
        'The interpreter is $LOOM_PYTHON, else the repository .venv, else python3. ' +
        'Exits non-zero when something Loom needs is missing or broken.',
    )
    .option('--json', 'print the report as JSON on stdout')
    .action(async (opts: { json?: boolean }) => {
      const report = await collectDoctorReport({ silent: opts.json });
      printSummary(opts, report, () => formatDoctorReport(report));
      if (!report.ok) {
        const hint = report.python.ok || report.problems.some((p) => p.includes('make setup')) ? '' : `\n${SETUP_HINT}`;
        // The human report above already lists them in full; scripts reading --json get them on stderr too.
        const list = opts.json ? `:\n${report.problems.map((p) => `  - ${firstLine(p)}`).join('\n')}` : ' (listed above)';
        throw new LoomError(`doctor found ${report.problems.length} problem(s)${list}${hint}`, EXIT_FAILURE);
      }
    });
}
