"""Loom's TypeScript shard writer/reader and the Python `webdataset` library read each other's shards."""
import base64
import hashlib
import io
import json
import shutil
import subprocess
from pathlib import Path

import pytest
import webdataset as wds
from PIL import Image

from fixtures.node import require_built

REPO = Path(__file__).resolve().parents[2]
NODE = shutil.which("node")
FIXTURE = REPO / "dist" / "test" / "ts" / "shards" / "interopFixture.js"
LOOM = REPO / "bin" / "loom.js"



@pytest.fixture(scope="module", autouse=True)
def built():
    require_built(FIXTURE)  # fails, never skips, without node or dist/ (`make test-py` builds first)


def image_bytes(fmt: str, w: int, h: int, seed: int) -> bytes:
    rnd = hashlib.sha256(str(seed).encode()).digest() * (w * h * 3 // 32 + 1)
    img = Image.frombytes("RGB", (w, h), rnd[: w * h * 3])
    out = io.BytesIO()
    img.save(out, format={"jpg": "JPEG", "png": "PNG", "webp": "WEBP"}[fmt])
    return out.getvalue()


def make_samples(n: int):
    captions = ["a red ball", "ünïcödé café ☕", "emoji 🧶 and\nnewline", "  spaced  ", "日本語のキャプション"]
    samples = []
    for i in range(n):
        fmt = ["jpg", "png", "webp"][i % 3]
        sample = {
            "key": f"{i:09d}",
            "ext": fmt,
            "image": image_bytes(fmt, 8 + i % 5, 6 + i % 7, i),
            "caption": captions[i % len(captions)] + f" #{i}",
            "json": {"url": f"http://example.com/{i}.{fmt}", "width": 8 + i % 5, "nested": {"i": i, "f": i / 3}},
        }
        if i % 4 == 0:
            sample["uid"] = hashlib.md5(f"given-{i}".encode()).hexdigest()
        samples.append(sample)
    return samples


def run_node(*args: str) -> str:
    done = subprocess.run([NODE, *args], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_python_webdataset_reads_loom_shards(tmp_path):
    samples = make_samples(23)
    spec = [{**{k: v for k, v in s.items() if k != "image"}, "image_b64": base64.b64encode(s["image"]).decode()} for s in samples]
    (tmp_path / "spec.json").write_text(json.dumps(spec), encoding="utf-8")
    out = tmp_path / "shards"
    result = json.loads(run_node(str(FIXTURE), "write", str(tmp_path / "spec.json"), str(out), "10"))
    assert result["samples"] == 23
    assert [Path(p).name for p in result["shards"]] == ["00000000.tar", "00000001.tar", "00000002.tar"]
    urls = [str(out / f"{i:08d}.tar") for i in range(3)]
    read = list(wds.WebDataset(urls, shardshuffle=False, empty_check=False))
    assert [r["__key__"] for r in read] == [s["key"] for s in samples]
    for r, s in zip(read, samples):
        assert r[s["ext"]] == s["image"]
        assert r["txt"].decode("utf-8") == s["caption"]
        meta = json.loads(r["json"])
        expected_uid = s.get("uid") or hashlib.md5(f"{Path(r['__url__']).name}/{s['key']}".encode()).hexdigest()
        assert meta == {**s["json"], "key": s["key"], "uid": expected_uid}
        assert set(k for k in r if not k.startswith("__")) == {s["ext"], "txt", "json"}
    stats = json.loads((out / "00000002_stats.json").read_text())
    assert stats["successes"] == 3 and stats["count"] == 3


def test_loom_reads_python_tarwriter_shards(tmp_path):
    samples = make_samples(17)
    out = tmp_path / "pyshards"
    out.mkdir()
    paths = []
    for shard in range(2):
        path = out / f"{shard:08d}.tar"
        paths.append(path)
        with wds.TarWriter(str(path)) as sink:
            for s in samples[shard * 9 : (shard + 1) * 9]:
                meta = dict(s["json"], **({"uid": s["uid"]} if "uid" in s else {}))
                sink.write({"__key__": s["key"], s["ext"]: s["image"], "txt": s["caption"], "json": meta})
    lines = [json.loads(line) for line in run_node(str(FIXTURE), "read", *map(str, paths)).splitlines()]
    assert all(line["kind"] == "sample" for line in lines), [l for l in lines if l["kind"] == "bad"]
    assert [l["key"] for l in lines] == [s["key"] for s in samples]
    for line, s in zip(lines, samples):
        assert base64.b64decode(line["image_b64"]) == s["image"]
        assert line["ext"] == s["ext"]
        assert line["caption"] == s["caption"]
        shard_name = Path(line["shard"]).name
        assert line["uid"] == s.get("uid") or line["uid"] == hashlib.md5(f"{shard_name}/{s['key']}".encode()).hexdigest()
        assert {k: v for k, v in line["json"].items() if k != "uid"} == s["json"]

    report = json.loads(subprocess.run([NODE, str(LOOM), "inspect", "--json", str(out)], cwd=REPO, capture_output=True, text=True, check=True).stdout)
    assert report["shards"] == 2
    assert report["samples"] == 17
    assert report["bad"] == 0
    assert report["formats"] == {fmt: sum(1 for s in samples if s["ext"] == fmt) for fmt in ("jpg", "png", "webp")}
    assert report["imageWidth"]["max"] == max(8 + i % 5 for i in range(17))


def test_member_names_split_like_webdataset(tmp_path):
    """Loom and webdataset agree on key/extension for awkward member names."""
    from webdataset.tariterators import base_plus_ext

    names = ["a.jpg", "dir/b.JPG", "c.seg.png", "d.v1/e.txt", "f", ".hidden", "dir/.x", "g.", "h..json", "ü/ñ.TXT"]
    script = (
        "import('" + (REPO / "dist" / "src" / "shards" / "keys.js").as_uri() + "').then(m => {"
        " const names = JSON.parse(process.argv[1]);"
        " console.log(JSON.stringify(names.map(n => m.splitMemberName(n))));})"
    )
    ours = json.loads(run_node("-e", script, json.dumps(names)))
    for name, got in zip(names, ours):
        key, ext = base_plus_ext(name)
        if key is None or ext == "":
            assert got is None, name
        else:
            assert got == {"key": key, "ext": ext.lower()}, name
