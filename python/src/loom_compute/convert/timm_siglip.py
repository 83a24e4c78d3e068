"""timm SigLIP ViT weights (as prismatic-vlms stores them) -> transformers ``SiglipVisionModel``.

Prismatic wraps ``timm.create_model("vit_so400m_patch14_siglip_384", num_classes=0)`` as
``featurizer``; its state dict is timm's: one fused ``attn.qkv`` per block (rows q, k, v), a
``pos_embed`` of shape (1, N, C), ``norm`` after the last block and the ``attn_pool`` head (a
latent query, ``q`` and a fused ``kv``). transformers keeps q/k/v apart and names the head's
attention an ``nn.MultiheadAttention`` (``in_proj_weight`` = rows q, k, v).

The MLP activation differs: timm builds these ViTs with ``nn.GELU`` (exact erf), transformers'
SigLIP config says ``gelu_pytorch_tanh``. The released model computed exact GELU, so the imported
config says ``hidden_act: "gelu"``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping

import torch
from transformers import SiglipVisionConfig

from loom_compute.convert.files import CheckpointError

# prismatic-vlms' backbone ids (models/backbones/vision/siglip_vit.py) -> the timm model's head count,
# the one shape the weights do not give.
TIMM_SIGLIP_HEADS = {
    "siglip-vit-so400m": 16,
    "siglip-vit-so400m-384px": 16,
    "siglip-vit-b16-224px": 12,
    "siglip-vit-b16-256px": 12,
    "siglip-vit-b16-384px": 12,
}
# timm's SigLIP ViTs: LayerNorm eps 1e-6 and exact GELU.
TIMM_LAYER_NORM_EPS = 1e-6
TIMM_ACT = "gelu"

_BLOCK = re.compile(r"^blocks\.(\d+)\.(.+)$")
_BLOCK_NAMES = {
    "norm1": "layer_norm1",
    "norm2": "layer_norm2",
    "attn.proj": "self_attn.out_proj",
    "mlp.fc1": "mlp.fc1",
    "mlp.fc2": "mlp.fc2",
}
_HEAD_NAMES = {
    "attn_pool.proj": "head.attention.out_proj",
    "attn_pool.norm": "head.layernorm",
    "attn_pool.mlp.fc1": "head.mlp.fc1",
    "attn_pool.mlp.fc2": "head.mlp.fc2",
}


def timm_vision_config(state: Mapping[str, torch.Tensor], backbone_id: str, where: str) -> SiglipVisionConfig:
    """The transformers config these timm weights describe (the head count from ``backbone_id``)."""
    heads = TIMM_SIGLIP_HEADS.get(backbone_id)
    if heads is None:
        raise CheckpointError(
            f"{where}: vision_backbone_id {backbone_id!r} is not a SigLIP ViT Loom knows "
            f"({', '.join(TIMM_SIGLIP_HEADS)}); Loom's vision tower is SigLIP only"
        )
    for key in ("pos_embed", "patch_embed.proj.weight", "blocks.0.mlp.fc1.weight"):
        if key not in state:
            raise CheckpointError(f"{where}: {key} is missing; not a timm ViT state dict")
    width, _, patch, _ = state["patch_embed.proj.weight"].shape
    positions = state["pos_embed"].shape[1]
    side = math.isqrt(positions)
    if side * side != positions:
        raise CheckpointError(f"{where}: pos_embed has {positions} positions, not a square grid (a class token?)")
    layers = 1 + max(int(m.group(1)) for k in state if (m := _BLOCK.match(k)))
    return SiglipVisionConfig(
        hidden_size=int(width),
        intermediate_size=int(state["blocks.0.mlp.fc1.weight"].shape[0]),
        num_hidden_layers=layers,
        num_attention_heads=heads,
        image_size=int(side * patch),
        patch_size=int(patch),
        hidden_act=TIMM_ACT,
        layer_norm_eps=TIMM_LAYER_NORM_EPS,
        vision_use_head="attn_pool.latent" in state,
    )


def timm_to_hf(state: Mapping[str, torch.Tensor], where: str) -> dict[str, torch.Tensor]:
    """Renames (and splits the fused projections of) a timm SigLIP ViT state dict."""
    out: dict[str, torch.Tensor] = {}
    prefix = ""  # transformers 5 names SiglipVisionModel weights without the old "vision_model." prefix
    for key, tensor in state.items():
        name, _, leaf = key.rpartition(".")
        block = _BLOCK.match(key)
        if key == "pos_embed":
            out[prefix + "embeddings.position_embedding.weight"] = tensor.reshape(tensor.shape[-2], tensor.shape[-1])
        elif name == "patch_embed.proj":
            out[prefix + f"embeddings.patch_embedding.{leaf}"] = tensor
        elif name == "norm":
            out[prefix + f"post_layernorm.{leaf}"] = tensor
        elif block:
            index, rest = block.group(1), block.group(2)
            inner, _, leaf = rest.rpartition(".")
            layer = prefix + f"encoder.layers.{index}."
            if inner == "attn.qkv":
                q, k, v = _split(tensor, 3, key)
                out[layer + f"self_attn.q_proj.{leaf}"] = q
                out[layer + f"self_attn.k_proj.{leaf}"] = k
                out[layer + f"self_attn.v_proj.{leaf}"] = v
            elif inner in _BLOCK_NAMES:
                out[layer + f"{_BLOCK_NAMES[inner]}.{leaf}"] = tensor
            else:
                raise CheckpointError(f"{where}: {key} has no counterpart in transformers' SigLIP (qk-norm or layer scale?)", key=key)
        elif key == "attn_pool.latent":
            out[prefix + "head.probe"] = tensor
        elif name in ("attn_pool.q", "attn_pool.kv"):
            continue  # joined below into in_proj
        elif name in _HEAD_NAMES:
            out[prefix + f"{_HEAD_NAMES[name]}.{leaf}"] = tensor
        else:
            raise CheckpointError(f"{where}: {key} has no counterpart in transformers' SigLIP vision model", key=key)
    for leaf in ("weight", "bias"):
        q, kv = state.get(f"attn_pool.q.{leaf}"), state.get(f"attn_pool.kv.{leaf}")
        if q is not None and kv is not None:
            out[prefix + f"head.attention.in_proj_{leaf}"] = torch.cat([q, kv], dim=0)
        elif q is not None or kv is not None:
            raise CheckpointError(f"{where}: attn_pool.q.{leaf} and attn_pool.kv.{leaf} must come together")
    return out


def _split(tensor: torch.Tensor, parts: int, key: str) -> tuple[torch.Tensor, ...]:
    if tensor.shape[0] % parts:
        raise CheckpointError(f"{key}: {tuple(tensor.shape)} does not split into {parts} equal parts", key=key)
    return tuple(t.clone() for t in tensor.chunk(parts, dim=0))
