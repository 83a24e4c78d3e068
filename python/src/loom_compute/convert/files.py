"""Reading checkpoint files as plain tensors: never unpickling code, every failure naming the file.

``.pt``/``.bin`` files are zip-pickles (the only format some sources publish), so they are read
with ``torch.load(weights_only=True)``: its unpickler builds tensors and plain containers only and
refuses any other global (an ``argparse.Namespace``, a custom class), which is exactly the line a
checkpoint must not cross. ``.safetensors`` holds no code by construction.
"""

from __future__ import annotations

import json
import pickle
import re
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from loom_compute.errors import LoomComputeError


class CheckpointError(LoomComputeError):
    """A source checkpoint that is missing, unreadable, unsafe or not the layout it claims to be."""


def load_pickle_weights(path: Path) -> Any:
    """``torch.load(path, weights_only=True)`` with Loom's errors: missing, truncated, or holding code."""
    if not path.is_file():
        raise CheckpointError(f"{path}: no such file", file=str(path))
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        found = re.search(r"GLOBAL ([\w.]+)", str(exc))
        what = found.group(1) if found else "an object that is not a tensor or a plain container"
        raise CheckpointError(
            f"{path}: refused: it holds a pickled Python object ({what}); Loom reads checkpoints with "
            "torch.load(weights_only=True) and never unpickles code. Save only the state dicts "
            "(tensors in dicts) and import that file",
            file=str(path),
            reason="pickled-object",
        ) from None
    except (RuntimeError, EOFError, OSError, zipfile.BadZipFile, ValueError) as exc:
        raise CheckpointError(
            f"{path}: cannot read it as a torch checkpoint (truncated or not a torch.save file: {exc})",
            file=str(path),
        ) from None


def load_safetensors(path: Path) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    if not path.is_file():
        raise CheckpointError(f"{path}: no such file", file=str(path))
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{path}: cannot read it as safetensors (truncated or corrupt: {exc})", file=str(path)) from None


def read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CheckpointError(f"{path}: no such file", file=str(path)) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{path}: cannot read it as JSON ({exc})", file=str(path)) from None
    if not isinstance(data, dict):
        raise CheckpointError(f"{path}: expected a JSON object, found {type(data).__name__}", file=str(path))
    return data


def tensor_dict(value: Any, where: str) -> dict[str, torch.Tensor]:
    """``value`` as a flat name -> tensor mapping, or an error naming ``where`` and the bad entry."""
    if not isinstance(value, Mapping):
        raise CheckpointError(f"{where}: expected a state dict (name -> tensor), found {type(value).__name__}")
    out: dict[str, torch.Tensor] = {}
    for key, tensor in value.items():
        if not isinstance(key, str) or not isinstance(tensor, torch.Tensor):
            raise CheckpointError(f"{where}: entry {key!r} is a {type(tensor).__name__}, not a tensor")
        out[key] = tensor
    return out


def check_shapes(
    state: Mapping[str, torch.Tensor], expected: Mapping[str, tuple[int, ...]], where: str, ignore: tuple[str, ...] = ()
) -> None:
    """Every expected key present with its shape, and nothing else (but ``ignore``d prefixes/names)."""
    missing = sorted(k for k in expected if k not in state and k not in ignore)
    unexpected = sorted(k for k in state if k not in expected and not k.startswith(ignore))
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing {_few(missing)}")
        if unexpected:
            parts.append(f"unexpected {_few(unexpected)}")
        raise CheckpointError(f"{where}: the weights do not match the model's config: " + "; ".join(parts))
    for key, shape in expected.items():
        if key in state and tuple(state[key].shape) != tuple(shape):
            raise CheckpointError(
                f"{where}: {key} has shape {tuple(state[key].shape)} but the config gives {tuple(shape)}", key=key
            )


def _few(keys: list[str], n: int = 5) -> str:
    shown = ", ".join(keys[:n])
    return shown + (f" and {len(keys) - n} more" if len(keys) > n else "")
