"""Trains a data filtering network: a small CLIP, trained contrastively on a trusted subset.

This is the DFN idea (Fang et al., "Data Filtering Networks"): a CLIP trained only on
high-quality pairs scores a large pool, and the pool's top fraction is kept. DFN's own filtering
network was never released, so users train theirs. The result is saved as a transformers
checkpoint (`save_pretrained` with its image processor and tokenizer), so `ClipScorer` and
`python -m loom_compute score --model DIR` load it like any CLIP.

Loss: symmetric InfoNCE over the batch (CLIP's `return_loss`: cross-entropy of image-to-text and
text-to-image logits with a learned temperature). Images are squashed to a square (no centre
crop: synthetic captions name positions, and a crop would cut the corners off).
"""

from __future__ import annotations

import json
import math
import os
import secrets
import shutil
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from loom_compute import protocol
from loom_compute.curate.runner import default_decode_workers, list_shards
from loom_compute.curate.shards import GoodSample, read_shard
from loom_compute.errors import LoomComputeError, UsageError

REPO_TINY_TOKENIZER = Path(__file__).resolve().parents[4] / "assets" / "tokenizer" / "tiny" / "tokenizer.json"
END_OF_TEXT = "<|endoftext|>"


@dataclass(frozen=True)
class FilterConfig:
    steps: int = 600
    batch_size: int = 128
    lr: float = 5e-4
    weight_decay: float = 0.1
    warmup_fraction: float = 0.05
    seed: int = 0
    image_size: int = 64
    patch_size: int = 8
    width: int = 64
    layers: int = 3
    heads: int = 4
    projection_dim: int = 64
    max_text_length: int = 64


def tokenizer_with_end_of_text(path: Path) -> Any:
    """A `PreTrainedTokenizerFast` from a tokenizer.json that appends <|endoftext|> to every text,
    so CLIP pools a real end-of-text token; it pads with the same token."""
    from tokenizers import Tokenizer
    from tokenizers.processors import TemplateProcessing
    from transformers import PreTrainedTokenizerFast

    raw = Tokenizer.from_file(str(path))
    eot = raw.token_to_id(END_OF_TEXT)
    if eot is None:
        raise LoomComputeError(f"{path}: the tokenizer has no {END_OF_TEXT} token to end captions with")
    raw.post_processor = TemplateProcessing(single=f"$A {END_OF_TEXT}", pair=f"$A {END_OF_TEXT} $B {END_OF_TEXT}", special_tokens=[(END_OF_TEXT, eot)])
    return PreTrainedTokenizerFast(tokenizer_object=raw, eos_token=END_OF_TEXT, pad_token=END_OF_TEXT)


def tokenize_captions(tokenizer: Any, captions: list[str], max_length: int) -> Any:
    """Caption ids padded to max_length, each ending in <|endoftext|>. Captions are data text
    (DESIGN.md): special-token strings in them are plain tokens (split_special_tokens=True)."""
    return tokenizer(captions, padding="max_length", truncation=True, max_length=max_length, return_tensors="pt", split_special_tokens=True)


def _model(config: FilterConfig, vocab_size: int, eot: int) -> Any:
    from transformers import CLIPConfig, CLIPModel

    tower = {"hidden_size": config.width, "intermediate_size": 4 * config.width, "num_hidden_layers": config.layers, "num_attention_heads": config.heads}
    clip_config = CLIPConfig(
        text_config={**tower, "vocab_size": vocab_size, "max_position_embeddings": config.max_text_length, "eos_token_id": eot, "pad_token_id": eot, "bos_token_id": eot},
        vision_config={**tower, "image_size": config.image_size, "patch_size": config.patch_size},
        projection_dim=config.projection_dim,
    )
    return CLIPModel(clip_config)


def _trusted_pairs(shards: Sequence[Path]) -> list[GoodSample]:
    samples: list[GoodSample] = []
    bad = 0
    for shard in shards:
        for item in read_shard(shard, decode_workers=default_decode_workers()):
            if isinstance(item, GoodSample):
                samples.append(item)
            else:
                bad += 1
                protocol.log("warning", f"{shard}: {'key ' + item.key if item.key else 'file'}: {item.reason}: {item.detail}")
    if bad:
        protocol.log("info", f"{bad} bad sample(s) in the trusted shards were skipped")
    return samples


def train_filter(shard_inputs: Sequence[str | Path], out_dir: str | Path, config: FilterConfig = FilterConfig(), tokenizer_path: str | Path | None = None) -> dict[str, Any]:
    import torch
    from transformers import CLIPImageProcessor

    out = Path(out_dir)
    if out.exists() and any(out.iterdir()):
        raise UsageError(f"{out} exists and is not empty; choose a new --out (the filter is written whole, never over another)")
    if config.steps < 1 or config.batch_size < 2:
        raise UsageError("--steps must be at least 1 and --batch-size at least 2 (a contrastive batch needs negatives)")
    shards = list_shards(shard_inputs)
    samples = _trusted_pairs(shards)
    if len(samples) < 2:
        raise LoomComputeError(f"only {len(samples)} good sample(s) in the trusted shards; need at least 2")
    batch_size = min(config.batch_size, len(samples))

    tokenizer = tokenizer_with_end_of_text(Path(tokenizer_path) if tokenizer_path else REPO_TINY_TOKENIZER)
    eot = tokenizer.convert_tokens_to_ids(END_OF_TEXT)
    image_processor = CLIPImageProcessor(size={"height": config.image_size, "width": config.image_size}, do_center_crop=False)
    protocol.log("info", f"preprocessing {len(samples)} trusted pairs from {len(shards)} shard(s)")
    pixels = torch.cat([
        image_processor(images=[s.image for s in samples[i : i + 256]], return_tensors="pt")["pixel_values"].to(torch.float16)
        for i in range(0, len(samples), 256)
    ])
    text = tokenize_captions(tokenizer, [s.caption for s in samples], config.max_text_length)
    del samples

    torch.manual_seed(config.seed)
    model = _model(config, len(tokenizer), eot)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model.to(device).train()
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and "embedding" not in n]
    no_decay = [p for n, p in model.named_parameters() if not (p.ndim >= 2 and "embedding" not in n)]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}], lr=config.lr, betas=(0.9, 0.98), eps=1e-6)
    warmup = max(1, int(config.warmup_fraction * config.steps))

    def lr_at(step: int) -> float:
        if step < warmup:
            return config.lr * (step + 1) / warmup
        progress = (step - warmup) / max(1, config.steps - warmup)
        return config.lr * 0.5 * (1 + math.cos(math.pi * progress))

    generator = torch.Generator().manual_seed(config.seed)
    order = torch.randperm(len(pixels), generator=generator)
    cursor = 0
    losses: list[float] = []
    started = time.perf_counter()
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else torch.autocast("cpu", enabled=False)
    for step in range(config.steps):
        if cursor + batch_size > len(order):
            order, cursor = torch.randperm(len(pixels), generator=generator), 0
        index = order[cursor : cursor + batch_size]
        cursor += batch_size
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step)
        mask = text["attention_mask"][index]
        length = int(mask.sum(dim=1).max())  # pad to the batch's longest caption, not max_length
        with autocast:
            output = model(
                pixel_values=pixels[index].to(device, torch.float32),
                input_ids=text["input_ids"][index][:, :length].to(device),
                attention_mask=mask[:, :length].to(device),
                return_loss=True,
            )
        optimizer.zero_grad(set_to_none=True)
        output.loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        with torch.no_grad():  # CLIP's clamp: the temperature may not go below 1/100
            model.logit_scale.clamp_(0, math.log(100))
        loss = float(output.loss.detach())
        losses.append(loss)
        protocol.metric(step=step + 1, loss=loss, lr=lr_at(step))
        protocol.progress(step + 1, config.steps, unit="steps")

    seconds = time.perf_counter() - started
    report = {
        "format": "loom-train-filter",
        "version": 1,
        "shards": [str(s) for s in shards],
        "pairs": len(pixels),
        "config": {**asdict(config), "batch_size": batch_size},
        "loss_first": losses[0],
        "loss_last": sum(losses[-10:]) / len(losses[-10:]),
        "chance_loss": math.log(batch_size),
        "losses": losses,
        "seconds": round(seconds, 3),
    }
    _save(out, model.cpu().eval(), image_processor, tokenizer, report)
    return {key: value for key, value in report.items() if key != "losses"} | {"out": str(out)}


def _save(out: Path, model: Any, image_processor: Any, tokenizer: Any, report: dict[str, Any]) -> None:
    """Writes the checkpoint into a temporary sibling directory and renames it into place whole."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}"
    try:
        model.save_pretrained(tmp)
        image_processor.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        (tmp / "train_filter.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
        if out.exists():
            out.rmdir()  # empty (checked at start)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
