"""Parallelism for the VLM, kept out of the model (the torchtitan way).

``parallelize(model, mesh, config)`` applies, in this order:

1. **Activation checkpointing** (``train.activation_checkpointing``): each LLM decoder block
   recomputes its activations in the backward pass (non-reentrant ``checkpoint_wrapper``).
2. **torch.compile** (``train.compile``): each LLM decoder block is compiled on its own, so one
   compiled graph serves every layer and a change of sequence content never recompiles the whole model.
3. **FSDP2** (``fully_shard``): one unit per LLM decoder block, the vision tower as one unit, and
   the root (embeddings, tied lm_head, final norm, projector) last. The vision unit groups
   the tower's children (embeddings, encoder, norm, head), so the HF wrapper keeps its class. The model calls
   ``llm.model`` and ``llm.lm_head`` directly, so units are placed on those modules, not on
   ``llm`` as a whole. With ``train.precision == "bf16"`` parameters are gathered and computed in
   bf16 while gradients are reduced in fp32 and the optimizer keeps fp32 master weights.

A frozen vision tower is sharded too (it holds no gradients; sharding just spreads its memory).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.distributed.algorithms._checkpoint.checkpoint_wrapper import checkpoint_wrapper
from torch.distributed.device_mesh import DeviceMesh
from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

from loom_compute.config import RunConfig


def decoder_blocks(model: nn.Module) -> nn.ModuleList:
    """The LLM's decoder blocks (``llm.model.layers``)."""
    return model.llm.model.layers


def vision_tower_parts(model: nn.Module) -> list[nn.Module]:
    """The vision tower's child modules that hold parameters (embeddings, encoder, norms, head)."""
    return [child for child in model.vision.children() if any(True for _ in child.parameters())]


def mixed_precision(config: RunConfig) -> MixedPrecisionPolicy | None:
    if config.train.precision == "bf16":
        return MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32)
    return None


def apply_activation_checkpointing(model: nn.Module) -> None:
    blocks = decoder_blocks(model)
    for index, block in enumerate(blocks):
        blocks[index] = checkpoint_wrapper(block, preserve_rng_state=False)


def apply_compile(model: nn.Module, backend: str = "inductor") -> None:
    blocks = decoder_blocks(model)
    for index, block in enumerate(blocks):
        blocks[index] = torch.compile(block, backend=backend, fullgraph=False)


def apply_fsdp(model: nn.Module, mesh: DeviceMesh, config: RunConfig) -> None:
    policy = mixed_precision(config)
    options: dict[str, Any] = {"mesh": mesh}
    if policy is not None:
        options["mp_policy"] = policy
    blocks = decoder_blocks(model)
    for index, block in enumerate(blocks):
        # The last block's parameters are needed again right away by the backward pass: keep them.
        fully_shard(block, reshard_after_forward=index < len(blocks) - 1, **options)
    # One unit made of the tower's children, not the tower itself: fully_shard swaps the class of the
    # module it wraps, and transformers finds SiglipVisionModel's output_hidden_states support by class.
    fully_shard(vision_tower_parts(model), **options)
    fully_shard(model, **options)


def parallelize(model: nn.Module, mesh: DeviceMesh, config: RunConfig, compile_backend: str = "inductor") -> nn.Module:
    """Wraps ``model`` in place for training (see the module docstring) and returns it."""
    if config.train.activation_checkpointing:
        apply_activation_checkpointing(model)
    if config.train.compile:
        apply_compile(model, compile_backend)
    apply_fsdp(model, mesh, config)
    return model
