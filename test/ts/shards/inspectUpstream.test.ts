// `loom inspect` shows the producer's own losses (img2dataset's _stats.json: failed downloads and
// resizes, status_dict) next to Loom's bad-sample counts, and reports images over the pixel limit.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { repoRoot } from '../../../src/util/paths.js';
import { makeImage, sampleMembers, withTempDir, writeTar } from './fixtures.js';
import { pngHeaderOnly } from './hugeImage.js';

const run = promisify(execFile);
const loom = (args: string[]) => run(process.execPath, [join(repoRoot(), 'bin', 'loom.js'), ...args], { maxBuffer: 1 << 24 });

test('inspect sums img2dataset sidecars beside its own bad-sample counts', async () => {
  await withTempDir(async (dir) => {
    const jpg = await makeImage('jpg', 8, 8);
    await writeTar(dir, '00000000.tar', [...sampleMembers('a', jpg), ...sampleMembers('huge', pngHeaderOnly(20_000, 20_000), 'png')]);
    await writeFile(join(dir, '00000000_stats.json'), JSON.stringify({
      count: 10, successes: 7, failed_to_download: 2, failed_to_resize: 1,
      status_dict: { success: 7, 'HTTP Error 404: Not Found': 2, 'image too small': 1 },
    }));
    await writeTar(dir, '00000001.tar', sampleMembers('b', jpg));
    await writeFile(join(dir, '00000001_stats.json'), JSON.stringify({ count: 5, successes: 3, failed_to_download: 2, status_dict: { success: 3, 'HTTP Error 404: Not Found': 2, bogus: 'x' } }));
    await writeTar(dir, '00000002.tar', sampleMembers('c', jpg));
    await writeFile(join(dir, '00000002_stats.json'), '{not json');

    const report = JSON.parse((await loom(['inspect', '--json', dir])).stdout);
    assert.deepEqual(report.upstream, {
      shardsWithStats: 2, shardsWithoutStats: 1, count: 15, successes: 10, failed_to_download: 4, failed_to_resize: 1,
      status: { success: 10, 'HTTP Error 404: Not Found': 4, 'image too small': 1 },
    });
    assert.equal(report.badByReason.image_too_large.count, 1);
    assert.equal(report.badByReason.image_too_large.examples[0].key, 'huge');

    const { stdout } = await loom(['inspect', dir]);
    assert.match(stdout, /Before the shards were written \(producer's _stats\.json, 2 of 3 shards\)/);
    assert.match(stdout, /failed_to_download\s+4/);
    assert.match(stdout, /HTTP Error 404: Not Found: 4/);
    assert.match(stdout, /image_too_large: 1/);
  });
});
