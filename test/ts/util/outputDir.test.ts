import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { claimOutputDir, OWNER_FILE, withOutputDir, type LockRecord } from '../../../src/util/outputDir.js';
import { repoRoot } from '../../../src/util/paths.js';
import { runSynth } from '../../../src/synth/generate.js';
import { EVEN_MIX } from '../../../src/synth/noise.js';
import { resolveRunConfig } from '../../../src/config/resolve.js';
import { runPack } from '../../../src/pack/run.js';

const fresh = () => mkdtemp(join(tmpdir(), 'loom-outdir-'));
const loom = join(repoRoot(), 'bin', 'loom.js');

async function lockFiles(dir: string): Promise<string[]> {
  return (await readdir(dir)).filter((n) => n.startsWith('.loom-lock'));
}

describe('owned output folders', () => {
  it('claims a new folder: marker written, lock held while claimed, removed on release', async () => {
    const dir = join(await fresh(), 'out');
    const claim = await claimOutputDir(dir, { command: 'pack' });
    const marker = JSON.parse(await readFile(join(dir, OWNER_FILE), 'utf8'));
    assert.deepEqual(marker, { format: 'loom-output', version: 1, command: 'pack' });
    const lock = JSON.parse(await readFile(claim.lockPath, 'utf8')) as LockRecord;
    assert.equal(lock.pid, process.pid);
    assert.equal(lock.command, 'pack');
    await claim.release();
    assert.deepEqual(await lockFiles(dir), []);
    // The same command takes its own folder again.
    await withOutputDir(dir, { command: 'pack' }, async () => assert.equal((await lockFiles(dir)).length, 1));
  });

  it('refuses a folder of foreign files, never touching them, unless the command adopts them', async () => {
    const dir = await fresh();
    await writeFile(join(dir, 'thesis.tex'), 'precious');
    await assert.rejects(claimOutputDir(dir, { command: 'pack' }), /holds files Loom did not write \("thesis.tex"\)/);
    assert.deepEqual(await readdir(dir), ['thesis.tex']);
    const claim = await claimOutputDir(dir, { command: 'pack', adopt: (names) => names.includes('thesis.tex') });
    await claim.release();
    assert.ok(existsSync(join(dir, OWNER_FILE)));
  });

  it("refuses another command's folder and a path that is a file", async () => {
    const root = await fresh();
    await withOutputDir(join(root, 'a'), { command: 'synth' }, async () => undefined);
    await assert.rejects(claimOutputDir(join(root, 'a'), { command: 'pack' }), /is the output of 'loom synth'/);
    await writeFile(join(root, 'f'), 'x');
    await assert.rejects(claimOutputDir(join(root, 'f'), { command: 'pack' }), /exists and is not a directory/);
  });

  it('refuses a second run while the first holds the lock; ranks of one launch lock side by side', async () => {
    const dir = join(await fresh(), 'out');
    const first = await claimOutputDir(dir, { command: 'pack' });
    await assert.rejects(claimOutputDir(dir, { command: 'pack' }), new RegExp(`being written by 'loom pack' process ${process.pid}`));
    await first.release();
    const r0 = await claimOutputDir(dir, { command: 'pack', rank: 0, worldSize: 2 });
    const r1 = await claimOutputDir(dir, { command: 'pack', rank: 1, worldSize: 2 });
    await assert.rejects(claimOutputDir(dir, { command: 'pack', rank: 1, worldSize: 2 }), /rank 1 of 2/);
    // A launch of another shape would assign windows differently: refused while any rank lives.
    await assert.rejects(claimOutputDir(dir, { command: 'pack', rank: 2, worldSize: 3 }), /cannot join it/);
    await r0.release();
    await r1.release();
  });

  it('takes over the stale lock of a killed process, and one left half-written by a kill', async () => {
    const dir = join(await fresh(), 'out');
    // A real process that takes the lock and is killed with SIGKILL (no chance to clean up).
    const script = `import('${join(repoRoot(), 'dist', 'src', 'util', 'outputDir.js')}').then(async (m) => { await m.claimOutputDir(${JSON.stringify(dir)}, { command: 'pack' }); process.stdout.write('locked\\n'); setInterval(() => {}, 1000); });`;
    const child = spawn(process.execPath, ['-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
    await new Promise<void>((resolve) => child.stdout.on('data', () => resolve()));
    await assert.rejects(claimOutputDir(dir, { command: 'pack' }), new RegExp(`process ${child.pid}`));
    child.kill('SIGKILL');
    await new Promise((resolve) => child.on('exit', resolve));
    const claim = await claimOutputDir(dir, { command: 'pack' });
    assert.equal((JSON.parse(await readFile(claim.lockPath, 'utf8')) as LockRecord).pid, process.pid);
    await claim.release();

    // A lock file created but never written (killed between create and write), older than a moment.
    await writeFile(join(dir, '.loom-lock-00000.json'), '');
    const past = new Date(Date.now() - 60_000);
    const { utimes } = await import('node:fs/promises');
    await utimes(join(dir, '.loom-lock-00000.json'), past, past);
    await (await claimOutputDir(dir, { command: 'pack' })).release();
  });

  it('refuses a lock held on another host, naming the file to delete', async () => {
    const dir = join(await fresh(), 'out');
    await mkdir(dir);
    await writeFile(join(dir, OWNER_FILE), JSON.stringify({ format: 'loom-output', version: 1, command: 'train' }));
    const lock: LockRecord = { format: 'loom-lock', command: 'train', pid: 1, pid_start: null, host: 'node-elsewhere', rank: 0, world_size: 1, started: 'then' };
    await writeFile(join(dir, '.loom-lock-00000.json'), JSON.stringify(lock));
    await assert.rejects(claimOutputDir(dir, { command: 'train' }), /on host node-elsewhere.*delete that file/);
  });

  it('a reused pid (another start time) is not the owner', async () => {
    const dir = join(await fresh(), 'out');
    await mkdir(dir);
    const lock: LockRecord = { format: 'loom-lock', command: 'pack', pid: process.pid, pid_start: '1', host: (await import('node:os')).hostname(), rank: 0, world_size: 1, started: 'then' };
    await writeFile(join(dir, '.loom-lock-00000.json'), JSON.stringify(lock));
    if (!existsSync(`/proc/${process.pid}/stat`)) return; // no /proc: the start time cannot tell
    await (await claimOutputDir(dir, { command: 'pack' })).release();
  });

  it('through the CLI: synth refuses a foreign folder, and two synth runs on one --out', async () => {
    const root = await fresh();
    const foreign = join(root, 'foreign');
    await mkdir(foreign);
    await writeFile(join(foreign, 'notes.txt'), 'mine');
    const r = spawnSync(process.execPath, [loom, 'synth', '--out', foreign, '--samples', '4', '--sft', '0', '--bench', '0'], { encoding: 'utf8' });
    assert.equal(r.status, 1);
    assert.match(r.stderr, /loom: error: --out .*foreign holds files Loom did not write \("notes.txt"\)/);
    assert.doesNotMatch(r.stderr, /\n\s+at /); // no stack trace
    assert.deepEqual(await readdir(foreign), ['notes.txt']);

    // Two runs on one folder: the second is refused while the first is alive, and the first completes.
    const out = join(root, 'synth');
    const args = [loom, 'synth', '--out', out, '--samples', '3000', '--sft', '0', '--bench', '0', '--json'];
    const first = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let firstErr = '';
    first.stderr.on('data', (d: Buffer) => (firstErr += d.toString()));
    while ((await lockFiles(out).catch(() => [])).length === 0) await new Promise((r) => setTimeout(r, 20));
    const second = spawnSync(process.execPath, args, { encoding: 'utf8' });
    const code = await new Promise<number | null>((resolve) => first.on('exit', resolve));
    assert.equal(code, 0, firstErr);
    assert.equal(second.status, 1);
    assert.match(second.stderr, /is being written by 'loom synth' process \d+/);
    assert.deepEqual(await lockFiles(out), []);
  });

  it('pack: a folder of foreign files is refused untouched; a second pack on one --out is refused while another holds it', async () => {
    const root = await fresh();
    await runSynth({ out: join(root, 'data'), seed: 5, samples: 60, sft: 0, bench: 0, noise: 0, noiseMix: { ...EVEN_MIX }, samplesPerShard: 30, threads: 0 });
    const config = resolveRunConfig({ preset: 'tiny', stage: 'pretrain', name: 'run', overrides: [], assignments: [] });
    const shards = join(root, 'data', 'pretrain');
    const foreign = join(root, 'foreign');
    await mkdir(join(foreign, 'w000000'), { recursive: true });
    await writeFile(join(foreign, 'w000000', 'mine.txt'), 'not a pack');
    await assert.rejects(runPack({ config, shards, out: foreign }), /holds files Loom did not write \("w000000"\)/);
    assert.deepEqual(await readdir(join(foreign, 'w000000')), ['mine.txt']);

    const out = join(root, 'packed');
    // Another pack run (this process, rank 0) holds the folder: nothing is packed until it lets go.
    const running = await claimOutputDir(out, { command: 'pack' });
    await assert.rejects(runPack({ config, shards, out, window: 20 }), /is being written by 'loom pack' process/);
    assert.deepEqual((await readdir(out)).filter((n) => !n.startsWith('.loom')), []);
    await running.release();
    const done = await runPack({ config, shards, out, window: 20 });
    assert.equal(done.complete, true);
    assert.deepEqual(await lockFiles(out), []);
    // Once the first is done, a rerun resumes (every window found done).
    const again = await runPack({ config, shards, out, window: 20 });
    assert.deepEqual(again.packed_windows, []);
  });

  it('select: refuses to replace files that are not an earlier selection, and a prefix another run holds', async () => {
    const root = await fresh();
    const prefix = join(root, 'sel');
    await writeFile(`${prefix}.json`, '{"mine": true}');
    const select = (out: string) => spawnSync(process.execPath, [loom, 'select', '--scores', join(root, 'none'), '--rule', 'a.b >= 1', '--out', out], { encoding: 'utf8' });
    const refused = select(prefix);
    assert.equal(refused.status, 1);
    assert.match(refused.stderr, /sel\.json exists and is not a Loom selection summary/);
    assert.equal(await readFile(`${prefix}.json`, 'utf8'), '{"mine": true}');
    const other = join(root, 'other');
    await writeFile(`${other}.npy`, 'x');
    assert.match(select(other).stderr, /other\.npy exists without the .*other\.json of a selection/);
    // A live run's lock on the prefix (this test process) refuses a second run before it reads anything.
    const held = join(root, 'held');
    const { hostname } = await import('node:os');
    const { processStartTime } = await import('../../../src/util/outputDir.js');
    const lock: LockRecord = { format: 'loom-lock', command: 'select', pid: process.pid, pid_start: processStartTime(process.pid), host: hostname(), rank: 0, world_size: 1, started: 'now' };
    await writeFile(`${held}.loom-lock.json`, JSON.stringify(lock));
    assert.match(select(held).stderr, new RegExp(`being written by 'loom select' process ${process.pid}`));
  });
});
