"""`loom select` reads sidecars written by pyarrow (as the Python scorers write them) and its uid
array loads in numpy as DataComp's `u8,u8` with exactly the uids an independent numpy selection keeps."""
import hashlib
import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from fixtures.node import require_built

REPO = Path(__file__).resolve().parents[2]
NODE = shutil.which("node")
LOOM = REPO / "bin" / "loom.js"
BUILT = REPO / "dist" / "src" / "cli" / "commands" / "select.js"



@pytest.fixture(scope="module", autouse=True)
def built():
    require_built(BUILT)  # fails, never skips, without node or dist/ (`make test-py` builds first)


def write_sidecar(path: Path, uids, columns, scorer: str, bad: int = 0) -> None:
    arrays = {"uid": pa.array(uids, pa.string()), "key": pa.array([f"{i:09d}" for i in range(len(uids))], pa.string())}
    for name, values in columns.items():
        arrays[name] = pa.array(values, pa.float32())
    meta = {"format": "loom-scores", "version": 1, "scorer": scorer, "model": "test", "shard": path.name.split(".")[0] + ".tar",
            "samples": len(uids), "bad": bad, "bad_by_reason": {"corrupt_image": bad} if bad else {}, "columns": list(columns)}
    table = pa.table(arrays).replace_schema_metadata({"loom": json.dumps(meta)})
    tmp = path.with_name("." + path.name + ".tmp")
    pq.write_table(table, tmp, row_group_size=700)
    tmp.rename(path)


def as_u8u8(uids) -> np.ndarray:
    return np.unique(np.array([(int(u[:16], 16), int(u[16:], 16)) for u in uids], dtype="u8,u8"))


def test_select_uid_array_round_trips_through_numpy(tmp_path):
    rng = np.random.default_rng(0)
    scores = tmp_path / "scores"
    scores.mkdir()
    all_uids, clip_all, mlmf_all = [], [], []
    for shard in range(3):
        uids = [hashlib.md5(f"{shard}/{i}".encode()).hexdigest() for i in range(1500)]
        clip = rng.uniform(0, 0.5, len(uids)).astype(np.float32)
        su = rng.uniform(0, 100, len(uids)).astype(np.float32)
        write_sidecar(scores / f"{shard:08d}.clip.parquet", uids, {"cosine": clip}, "clip", bad=shard)
        write_sidecar(scores / f"{shard:08d}.mlmf.parquet", uids, {"semantic_understanding": su, "image_text_matching": su / 2}, "mlmf")
        all_uids += uids
        clip_all.append(clip)
        mlmf_all.append(su)
    clip = np.concatenate(clip_all)
    su = np.concatenate(mlmf_all)
    uids = np.array(all_uids)

    out = tmp_path / "sel" / "union"
    rule = "top(clip.cosine, 0.15) | mlmf.semantic_understanding >= 85"
    done = subprocess.run([NODE, str(LOOM), "select", "--scores", str(scores), "--rule", rule, "--out", str(out), "--sketch-k", "8192", "--json"],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)

    # The exact selection in numpy: 4,500 rows fit in one sketch level of 8,192, so the sketch is exact.
    k = int(np.ceil(0.15 * len(clip)))
    threshold = np.sort(clip)[len(clip) - k]
    keep = (clip >= threshold) | (su >= np.float32(85))
    want = as_u8u8(uids[keep])

    got = np.load(str(out) + ".npy", allow_pickle=False)
    assert got.dtype == np.dtype("u8,u8")
    assert np.array_equal(got, want)
    assert summary["kept"] == len(want) == len(got)
    assert summary["total"] == len(uids)
    assert summary["inputs"]["scorers"]["clip"]["bad"] == 0 + 1 + 2
    assert summary["atoms"][0]["sketch"]["rankErrorBound"] == 0
    assert summary["atoms"][0]["threshold"] == pytest.approx(float(threshold))
    assert json.loads(Path(str(out) + ".json").read_text())["kept"] == len(want)
    # The round trip back to strings gives the uids we wrote.
    back = {"%016x%016x" % (int(r["f0"]), int(r["f1"])) for r in got}
    assert back == set(uids[keep].tolist())
