"""transformers configs that 4.4x and 5.x read the same.

5.x writes the RoPE base inside ``rope_parameters`` and the dtype as ``dtype``; 4.4x reads
``rope_theta``/``rope_scaling`` and ``torch_dtype``, and silently falls back to its defaults
(``rope_theta`` 10000 where Qwen2.5 needs 1e6) when they are missing. Every config Loom writes for
other tools carries both spellings.
"""

from __future__ import annotations

from typing import Any


def both_versions(config: dict[str, Any]) -> dict[str, Any]:
    """A copy of a config dict with the keys 4.4x reads written beside the ones 5.x reads."""
    out = dict(config)
    params = out.get("rope_parameters")
    if isinstance(params, dict):
        if "rope_theta" in params:
            out["rope_theta"] = params["rope_theta"]
        kind = params.get("rope_type", "default")
        scaling = {k: v for k, v in params.items() if k != "rope_theta"}
        out["rope_scaling"] = None if kind == "default" else {**scaling, "type": kind}
    if "dtype" in out and "torch_dtype" not in out:
        out["torch_dtype"] = out["dtype"]
    elif "torch_dtype" in out and "dtype" not in out:
        out["dtype"] = out["torch_dtype"]
    return out


def rope_theta_of(config: dict[str, Any]) -> float | None:
    """The RoPE base a config means, whichever spelling it uses."""
    params = config.get("rope_parameters")
    if isinstance(params, dict) and "rope_theta" in params:
        return float(params["rope_theta"])
    return None if config.get("rope_theta") is None else float(config["rope_theta"])
