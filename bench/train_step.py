"""Loom's training step against the plain Hugging Face reference, same rows, same GPU, one invocation.

Both sides train an Open-Qwen2VL-2B-shaped model with random weights (SigLIP-SO400M/14-384 with the
26 blocks that feed the features, 12x12 pooled to 144 tokens per image, 2-layer MLP projector,
Qwen2.5-1.5B decoder; vision frozen) on packed 4096-token rows of image-caption pairs. Loom runs
its own trainer pieces (VisionLanguageModel, parallelize = activation checkpointing + optional
torch.compile + FSDP2 over a one-process group, build_optimizer, train_step); the reference is
``../shared/bench/hf_reference_step.py`` run as a subprocess with matching arguments. The rows
are built from the reference's own seed and draws, so both sides train the very same tokens.

Prints JSON lines on stdout (device, loom, reference, comparison) and a table on stderr; the
number to read is ``ratio_useful_tokens_per_s`` (Loom / reference). ``--tiny`` uses the
reference's tiny configs, for a CPU smoke run.

Usage: .venv/bin/python bench/train_step.py [--tiny] [--steps 8] [--warmup 3] [--packed-rows 3]
       [--seq-len 4096] [--compile] [--no-ac] [--attention auto|flex|sdpa] [--reference PATH]
       [--reference-extra "--head-on-labels"] [--skip-reference] [--json-out FILE]
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import Qwen2Config, Qwen2ForCausalLM, SiglipVisionConfig, SiglipVisionModel

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "python" / "src"))  # runs from a checkout without installing the package

from loom_compute.atomic import write_json_atomic
from loom_compute.config import RunConfig, parse_run_config
from loom_compute.data.packed import collate_packed
from loom_compute.model.builder import HF_ATTENTION, attention_backend
from loom_compute.model.vlm import VisionLanguageModel
from loom_compute.train.distributed import init_distributed, shutdown_distributed
from loom_compute.train.metrics import memory_gib, model_flops, parameter_counts, peak_tflops
from loom_compute.train.optim import apply_freeze, build_optimizer
from loom_compute.train.parallel import parallelize
from loom_compute.train.trainer import to_device, train_step

DEFAULT_REFERENCE = REPO.parent / "shared" / "bench" / "hf_reference_step.py"
SEED_MODEL, SEED_DATA = 0, 1  # the reference's torch.manual_seed(0) and Generator().manual_seed(1)
BATCHES = 3  # the reference cycles through 3 batches
TEXT_ID_LOW = 100  # text ids are drawn from [100, vocab), as the reference draws them
SIGLIP_MEAN = SIGLIP_STD = (0.5, 0.5, 0.5)
GRAD_CLIP = 1.0  # the Open-Qwen2VL recipe's; the reference does not clip


def model_configs(tiny: bool) -> dict[str, Any]:
    """The reference's ``configs(tiny)`` numbers, plus Loom's token ids.

    The reference runs 26 SigLIP blocks and takes the last one's output, because Open-Qwen2VL's
    features come from the second-to-last of SO400M's 27 blocks. Loom's default is
    feature_layer=-2 on a 27-block tower; to do the same work as the reference Loom gets the same
    26 blocks and feature_layer=-1 (the 27th block would be computed and thrown away).
    """
    if tiny:
        vision = {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
                  "image_size": 56, "patch_size": 14, "vision_use_head": False}
        llm = {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
               "num_key_value_heads": 2, "vocab_size": 1000, "max_position_embeddings": 4096, "tie_word_embeddings": True}
        return {"vision": vision, "llm": llm, "image_grid": 2, "image_token_id": 7, "pad_id": 0}
    vision = {"hidden_size": 1152, "intermediate_size": 4304, "num_hidden_layers": 26, "num_attention_heads": 16,
              "image_size": 384, "patch_size": 14, "vision_use_head": False}
    llm = {"hidden_size": 1536, "intermediate_size": 8960, "num_hidden_layers": 28, "num_attention_heads": 12,
           "num_key_value_heads": 2, "vocab_size": 151936, "max_position_embeddings": 32768, "rope_theta": 1000000.0,
           "tie_word_embeddings": True, "rms_norm_eps": 1e-6}
    # Qwen2's <|image_pad|> and <|endoftext|>
    return {"vision": vision, "llm": llm, "image_grid": 12, "image_token_id": 151655, "pad_id": 151643}


def hf_configs(cfg: dict[str, Any], attention: str) -> tuple[SiglipVisionConfig, Qwen2Config]:
    hf_attention = HF_ATTENTION[attention]
    return (SiglipVisionConfig(**cfg["vision"], attn_implementation=hf_attention),
            Qwen2Config(**cfg["llm"], attn_implementation=hf_attention))


def build_model(cfg: dict[str, Any], attention: str) -> VisionLanguageModel:
    vision_config, llm_config = hf_configs(cfg, attention)
    vision = SiglipVisionModel(vision_config)
    llm = Qwen2ForCausalLM(llm_config)
    return VisionLanguageModel(
        vision,
        llm,
        projector_hidden_size=cfg["llm"]["hidden_size"],  # the reference's projector: Linear(dv, dl) -> GELU -> Linear(dl, dl)
        image_token_id=cfg["image_token_id"],
        image_grid=cfg["image_grid"],
        feature_layer=-1,  # see model_configs: 26 blocks, the last one's output
        isolate_documents=True,
        attention=attention,
    )


def caption_lengths(n: int, gen: torch.Generator) -> torch.Tensor:
    """The reference's caption-length distribution (~28 text tokens per pair), same draws."""
    x = torch.randn(n, generator=gen) * 0.45 + math.log(24.0)
    return x.exp().round().clamp(6, 120).long()


def make_rows(n_rows: int, seq_len: int, tpi: int, vocab: int, image_size: int, image_token_id: int,
              gen: torch.Generator) -> list[dict[str, Any]]:
    """Packed rows as ``collate_packed`` takes them, from exactly the draws of the reference's
    ``make_batch("packed", ...)``: same documents, same text ids, same images (quantised to uint8).

    A document is ``tpi`` image placeholders then its caption; the caption tokens carry the loss.
    """
    lens = caption_lengths(n_rows * seq_len // (tpi + 24) * 2, gen).tolist()
    layout: list[list[int]] = []
    for _ in range(n_rows):
        row, used = [], 0
        while lens and used + tpi + lens[-1] <= seq_len:
            length = lens.pop()
            row.append(length)
            used += tpi + length
        layout.append(row)
    ids = torch.randint(TEXT_ID_LOW, vocab, (n_rows, seq_len), generator=gen).numpy()
    n_images = sum(len(r) for r in layout)
    pixels = torch.randn(n_images, 3, image_size, image_size, generator=gen)
    # With SigLIP's mean = std = 0.5, collate maps these bytes back to the reference's values clipped to [-1, 1].
    images = ((pixels * 0.5 + 0.5) * 255.0).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()
    rows, next_image = [], 0
    for i, row in enumerate(layout):
        used = sum(tpi + length for length in row)
        tokens = ids[i, :used].astype(np.int32)
        tokens[tokens == image_token_id] = TEXT_ID_LOW  # a text id must never read as an image placeholder
        loss = np.zeros(used, dtype=np.uint8)
        at = 0
        for length in row:
            tokens[at : at + tpi] = image_token_id
            loss[at + tpi : at + tpi + length] = 1
            at += tpi + length
        rows.append({
            "tokens": tokens,
            "loss": loss,
            "doclens": np.array([tpi + length for length in row], dtype=np.int32),
            "images": images[next_image : next_image + len(row)],
        })
        next_image += len(row)
    return rows


def make_batches(cfg: dict[str, Any], n_rows: int, seq_len: int) -> list[dict[str, Any]]:
    """The reference's three packed batches, collated by Loom's ``collate_packed``."""
    gen = torch.Generator().manual_seed(SEED_DATA)
    tpi = cfg["image_grid"] ** 2
    batches = []
    for _ in range(BATCHES):
        rows = make_rows(n_rows, seq_len, tpi, cfg["llm"]["vocab_size"], cfg["vision"]["image_size"], cfg["image_token_id"], gen)
        batches.append(collate_packed(rows, seq_len, cfg["pad_id"], SIGLIP_MEAN, SIGLIP_STD))
    return batches


def run_config(attention: str, activation_checkpointing: bool, compile_blocks: bool) -> RunConfig:
    """A run config for the trainer pieces: the tiny preset's (the model is built from ``model_configs``
    instead), with the settings they read set here; optimizer numbers are the reference's (torch defaults)."""
    base = json.loads((REPO / "vectors" / "config" / "valid" / "tiny-pretrain.json").read_text(encoding="utf-8"))["config"]
    base["dist"]["backend"] = "auto"
    base["model"]["vision"]["trainable"], base["model"]["llm"]["trainable"] = False, True
    base["train"].update(
        precision="bf16",
        attention=attention,
        isolate_documents=True,
        activation_checkpointing=activation_checkpointing,
        compile=compile_blocks,
        lr=1e-5,
        betas=[0.9, 0.999],
        eps=1e-8,
        weight_decay=0.01,
    )
    return parse_run_config(base, "bench/train_step.py")


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run_loom(args: argparse.Namespace) -> dict[str, Any]:
    cfg = model_configs(args.tiny)
    wanted = attention_backend(run_config(args.attention, not args.no_ac, args.compile))  # auto decided as the trainer does
    if wanted == "flex" and not torch.cuda.is_available():
        raise SystemExit("bench/train_step.py: --attention flex needs CUDA (FlexAttention has no CPU backward); use sdpa or auto")
    config = run_config(wanted, not args.no_ac, args.compile)
    ctx = init_distributed(config)
    try:
        if ctx.world_size != 1:
            raise SystemExit("bench/train_step.py: run it as one process (not under torchrun)")
        torch.manual_seed(SEED_MODEL)
        with torch.device(ctx.device):  # built where it trains, as the reference is
            model = build_model(cfg, wanted)
        freeze = apply_freeze(model, config)
        counts = parameter_counts(model)  # before sharding, as the trainer counts
        parallelize(model, ctx.mesh, config)
        model.train()
        optimizer = build_optimizer(model, config)
        # On the device before timing, as the reference stages its batches.
        batches = [to_device(b, ctx.device) for b in make_batches(cfg, args.packed_rows, args.seq_len)]
        if ctx.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(ctx.device)
        times: list[float] = []
        tokens = images = 0
        result = None
        for step in range(args.warmup + args.steps):
            batch = batches[step % len(batches)]
            synchronize(ctx.device)
            t0 = time.perf_counter()
            result = train_step(model, optimizer, [batch], ctx, GRAD_CLIP)
            synchronize(ctx.device)
            if step >= args.warmup:
                times.append(time.perf_counter() - t0)
                tokens += result.real_tokens
                images += result.images
        assert result is not None
        seconds = sum(times)
        patches = images * model.patch_grid**2
        peak = peak_tflops(ctx.device)
        flops = model_flops(counts, tokens, patches)
        loom = {
            "impl": "loom",
            "mode": "packed",
            "tiny": args.tiny,
            "rows": args.packed_rows,
            "seq_len": args.seq_len,
            "useful_tokens_per_step": tokens / len(times),
            "images_per_step": images / len(times),
            "step_s": seconds / len(times),
            "useful_tokens_per_s": round(tokens / seconds),
            "images_per_s": round(images / seconds, 1),
            "mfu": round(flops / seconds / (peak * 1e12), 4) if peak else None,
            "peak_mem_gib": round(memory_gib(ctx.device), 1) if ctx.device.type == "cuda" else None,
            "loss": round(result.loss, 3),
            "grad_norm": round(result.grad_norm, 4),
            "trained_params": counts["trained"],
            "vision_params": counts["vision"],
            "frozen_params": freeze["frozen_params"],
            "settings": {
                "attention": wanted,
                "isolate_documents": True,
                "activation_checkpointing": not args.no_ac,
                "compile": args.compile,
                "precision": "bf16 params via FSDP2, fp32 master weights and gradient reduce",
                "fsdp_world_size": ctx.world_size,
                "grad_clip": GRAD_CLIP,
                "vocab_head": "labelled positions only",
                "feature_layer": -1,
                "vision_blocks": cfg["vision"]["num_hidden_layers"],
                "image_tokens_per_image": cfg["image_grid"] ** 2,
                "steps": args.steps,
                "warmup": args.warmup,
            },
        }
        del model, optimizer, batches, batch
        gc.collect()
        if ctx.device.type == "cuda":
            torch.cuda.empty_cache()  # leave the GPU to the reference process
        return loom
    finally:
        shutdown_distributed()


def run_reference(args: argparse.Namespace) -> tuple[dict[str, Any] | None, dict[str, Any]]:
    """(device line, packed result) of the reference, run with the same rows, steps and model size."""
    path = Path(args.reference)
    cmd = [sys.executable, str(path), "--modes", "packed", "--packed-rows", str(args.packed_rows),
           "--seq-len", str(args.seq_len), "--steps", str(args.steps), "--warmup", str(args.warmup)]
    if args.tiny:
        cmd.append("--tiny")
    cmd += shlex.split(args.reference_extra)
    proc = subprocess.run(cmd, check=False, capture_output=True, text=True)
    lines = json_lines(proc.stdout)
    packed = next((r for r in lines if r.get("mode") == "packed"), None)
    if proc.returncode != 0 or packed is None:
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-15:])
        raise SystemExit(f"bench/train_step.py: the reference failed (exit {proc.returncode}): {shlex.join(cmd)}\n{tail}")
    device = next((r for r in lines if "device" in r), None)
    return device, {"impl": "hf-reference", "command": shlex.join(cmd), **packed}


def differences(loom: dict[str, Any], reference_extra: str) -> list[str]:
    s = loom["settings"]
    return [
        ("Loom isolates documents (block-diagonal causal attention, positions restart per document); "
         "the reference attends across the whole packed row with running positions"),
        ("Loom runs the vocabulary head only at labelled (caption) positions; the reference at every position"
         + (" (reference run with --head-on-labels)" if "--head-on-labels" in reference_extra else "")),
        ("Loom: FSDP2 over a one-process group, bf16 parameters with fp32 master weights and fp32 gradient reduce; "
         "reference: fp32 weights under bf16 autocast, vision tower cast to bf16"),
        f"Loom clips gradients to global norm {GRAD_CLIP}; the reference does not clip",
        f"attention: Loom {s['attention']}, reference sdpa (padding mask)",
        f"activation checkpointing: Loom {'on' if s['activation_checkpointing'] else 'off'}, reference off",
        (f"torch.compile per decoder block: Loom {'on' if s['compile'] else 'off'}, reference "
         + ("on" if "--compile" in reference_extra else "off")),
        (f"vision features: Loom the hidden state of the last of {s['vision_blocks']} blocks (feature_layer=-1), the "
         "reference the tower's last_hidden_state (that plus post_layernorm, which Loom's tower computes too): same work"),
        ("pixels: Loom's are the reference's random values quantised to uint8 and normalised by collate_packed, "
         "staged as float32 (FSDP casts them to bf16 on entry); the reference stages bf16"),
    ]


def table(loom: dict[str, Any], reference: dict[str, Any] | None) -> str:
    head = f"{'impl':<14}{'useful tok/s':>14}{'images/s':>10}{'step s':>9}{'MFU':>8}{'peak GiB':>10}{'loss':>8}"
    out = [head, "-" * len(head)]
    for r in (loom, reference):
        if r is None:
            continue
        mfu = "-" if r.get("mfu") is None else f"{r['mfu']:.3f}"
        mem = "-" if r.get("peak_mem_gib") is None else f"{r['peak_mem_gib']:.1f}"
        out.append(f"{r['impl']:<14}{r['useful_tokens_per_s']:>14,}{r['images_per_s']:>10}{r['step_s']:>9.3f}{mfu:>8}{mem:>10}{r['loss']:>8.3f}")
    return "\n".join(out)


def json_lines(stdout: str) -> list[dict[str, Any]]:
    """The JSON objects a reference script printed one per line (other lines are its chatter)."""
    lines = []
    for line in stdout.splitlines():
        line = line.strip()
        if line.startswith("{"):
            try:
                lines.append(json.loads(line))
            except json.JSONDecodeError:
                pass
    return lines


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tiny", action="store_true", help="the reference's tiny configs, for a CPU smoke run")
    ap.add_argument("--steps", type=int, default=8, help="timed steps (default 8)")
    ap.add_argument("--warmup", type=int, default=3, help="untimed steps first (default 3)")
    ap.add_argument("--packed-rows", type=int, default=3, help="packed rows per step (default 3)")
    ap.add_argument("--seq-len", type=int, default=4096, help="tokens per packed row (default 4096)")
    ap.add_argument("--compile", action="store_true", help="torch.compile each LLM decoder block (train.compile)")
    ap.add_argument("--no-ac", action="store_true", help="no activation checkpointing (train.activation_checkpointing false)")
    ap.add_argument("--attention", choices=("auto", "flex", "sdpa"), default="auto",
                    help="Loom's attention: auto = flex on CUDA, sdpa (dense document mask) on CPU")
    ap.add_argument("--reference", default=str(DEFAULT_REFERENCE), help=f"the reference script (default {DEFAULT_REFERENCE})")
    ap.add_argument("--reference-extra", default="",
                    help="more arguments for the reference, e.g. \"--head-on-labels\" or \"--compile\" (its probes)")
    ap.add_argument("--skip-reference", action="store_true", help="run Loom only")
    ap.add_argument("--json-out", help="also write every result to this JSON file")
    args = ap.parse_args(argv)
    if args.steps < 1 or args.warmup < 0 or args.packed_rows < 1:
        ap.error("--steps and --packed-rows must be >= 1, --warmup >= 0")
    if not args.skip_reference and not Path(args.reference).is_file():
        ap.error(f"reference {args.reference} not found (pass --reference PATH or --skip-reference)")
    tpi = model_configs(args.tiny)["image_grid"] ** 2
    if args.seq_len < tpi + 120:
        ap.error(f"--seq-len {args.seq_len} cannot hold one pair ({tpi} image tokens + up to 120 caption tokens)")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    name = torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"
    device_line = {"device": name, "torch": torch.__version__, "peak_tflops": peak_tflops(torch.device("cuda" if name != "cpu" else "cpu"))}
    print(json.dumps(device_line), flush=True)
    loom = run_loom(args)
    print(json.dumps(loom), flush=True)
    reference = None
    if not args.skip_reference:
        _, reference = run_reference(args)
        print(json.dumps(reference), flush=True)
    comparison: dict[str, Any] = {
        "ratio_useful_tokens_per_s": round(loom["useful_tokens_per_s"] / reference["useful_tokens_per_s"], 3) if reference else None,
        "same": "rows (documents, text ids, image positions), image tokens per image, model sizes, frozen vision, "
                "steps and warmup, optimizer (AdamW, fused on CUDA)",
        "differences": differences(loom, args.reference_extra),
    }
    if reference and reference.get("useful_tokens_per_step") != loom["useful_tokens_per_step"]:
        comparison["warning"] = (f"useful tokens per step differ (loom {loom['useful_tokens_per_step']}, "
                                 f"reference {reference.get('useful_tokens_per_step')}): the rows are not the same")
    print(json.dumps(comparison), flush=True)
    print(table(loom, reference), file=sys.stderr)
    if reference:
        print(f"Loom / reference useful tokens/s: {comparison['ratio_useful_tokens_per_s']:.3f}", file=sys.stderr)
    if args.json_out:
        write_json_atomic(args.json_out, {"device": device_line, "loom": loom, "reference": reference, "comparison": comparison})
    return 0


if __name__ == "__main__":
    sys.exit(main())
