"""Reference for `loom inspect` throughput: the usual Python way to read and validate shards.

Reads WebDataset shards with the `webdataset` library, fully decodes every image with Pillow and
reads caption and json, the same work `loom inspect` does. Prints one JSON line with samples/s.
Usage: python bench/inspect_reference.py SHARD [SHARD ...]
"""

import io
import json
import sys
import time

import webdataset as wds
from PIL import Image


def main(paths: list[str]) -> None:
    started = time.perf_counter()
    samples = bad = 0
    widths: list[int] = []
    caption_chars = 0
    for sample in wds.WebDataset(paths, shardshuffle=False, empty_check=False):
        image_key = next((k for k in ("jpg", "png", "webp") if k in sample), None)
        try:
            if image_key is None or "txt" not in sample or "json" not in sample:
                raise ValueError("incomplete sample")
            with Image.open(io.BytesIO(sample[image_key])) as image:
                image.load()
                widths.append(image.width)
            caption_chars += len(sample["txt"].decode("utf-8"))
            json.loads(sample["json"])
            samples += 1
        except Exception:  # noqa: BLE001 - the reference only counts failures
            bad += 1
    seconds = time.perf_counter() - started
    print(json.dumps({"impl": "python-webdataset+PIL", "samples": samples, "bad": bad, "seconds": round(seconds, 3),
                      "samples_per_s": round(samples / seconds, 1)}))


if __name__ == "__main__":
    main(sys.argv[1:])
