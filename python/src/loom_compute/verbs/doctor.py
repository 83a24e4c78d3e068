"""Verb `doctor`: what this Python environment offers the compute plane.

Reports the interpreter, CPU, torch (CUDA, devices, bf16, distributed back-ends) and the
versions of the libraries Loom needs. Each library is imported for real, so a broken install
shows up here rather than half-way through a run. Missing or broken required pieces are
listed in `problems` (the verb itself still succeeds: the report is its result, and
`loom doctor` turns problems into a non-zero exit).
"""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import os
import platform
import sys
from typing import Any

from loom_compute import protocol
from loom_compute.verbs.dispatch import Verb

# Import name -> distribution name, in the order they are checked. All are required.
LIBRARIES: dict[str, str] = {
    "transformers": "transformers",
    "tokenizers": "tokenizers",
    "safetensors": "safetensors",
    "numpy": "numpy",
    "pyarrow": "pyarrow",
    "jsonschema": "jsonschema",
}


def _describe_exception(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def library_report(module_name: str, distribution: str) -> dict[str, Any]:
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # noqa: BLE001 - any import failure is the finding
        return {"ok": False, "version": None, "error": _describe_exception(exc)}
    version = getattr(module, "__version__", None)
    if not isinstance(version, str):
        try:
            version = importlib.metadata.version(distribution)
        except importlib.metadata.PackageNotFoundError:
            version = None
    return {"ok": True, "version": version}


def _cpu_bf16_works(torch: Any) -> bool:
    try:
        a = torch.ones(4, 4, dtype=torch.bfloat16)
        return bool(((a @ a).float() == 4).all())
    except Exception:  # noqa: BLE001 - unsupported is the answer
        return False


def torch_report() -> dict[str, Any]:
    try:
        import torch
    except Exception as exc:  # noqa: BLE001
        return {"ok": False, "version": None, "error": _describe_exception(exc)}
    cuda_available = bool(torch.cuda.is_available())
    devices = []
    if cuda_available:
        for index in range(torch.cuda.device_count()):
            props = torch.cuda.get_device_properties(index)
            devices.append(
                {
                    "index": index,
                    "name": props.name,
                    "capability": f"{props.major}.{props.minor}",
                    "memory_gib": round(props.total_memory / 2**30, 1),
                }
            )
    dist = torch.distributed
    dist_available = bool(dist.is_available())
    mps = getattr(torch.backends, "mps", None)
    return {
        "ok": True,
        "version": torch.__version__,
        "cuda_available": cuda_available,
        "cuda_version": torch.version.cuda,
        "hip_version": getattr(torch.version, "hip", None),
        "device_count": len(devices),
        "devices": devices,
        "bf16": {
            "cuda": bool(torch.cuda.is_bf16_supported()) if cuda_available else None,
            "cpu": _cpu_bf16_works(torch),
        },
        "mps_available": bool(mps is not None and mps.is_available()),
        "distributed": {
            "available": dist_available,
            "nccl": bool(dist_available and dist.is_nccl_available()),
            "gloo": bool(dist_available and dist.is_gloo_available()),
            "mpi": bool(dist_available and dist.is_mpi_available()),
        },
        "threads": torch.get_num_threads(),
    }


def _usable_cpus() -> int | None:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return None


def collect_report() -> dict[str, Any]:
    """The full report; emits one progress event per checked component."""
    steps = 2 + len(LIBRARIES)
    protocol.progress(0, steps, unit="checks")
    torch_info = torch_report()
    protocol.progress(1, steps, unit="checks")
    libraries: dict[str, Any] = {}
    for done, (module_name, distribution) in enumerate(LIBRARIES.items(), start=2):
        libraries[module_name] = library_report(module_name, distribution)
        protocol.progress(done, steps, unit="checks")
    loom_compute = library_report("loom_compute", "loom-compute")
    import loom_compute as package

    loom_compute["path"] = os.path.dirname(os.path.abspath(package.__file__ or ""))
    protocol.progress(steps, steps, unit="checks")

    problems = []
    if not torch_info["ok"]:
        problems.append(f"torch cannot be imported ({torch_info['error']})")
    for name, info in libraries.items():
        if not info["ok"]:
            problems.append(f"{name} cannot be imported ({info['error']})")
    return {
        "ok": not problems,
        "problems": problems,
        "python": {
            "version": platform.python_version(),
            "implementation": platform.python_implementation(),
            "executable": sys.executable,
            "platform": platform.platform(),
        },
        "cpu": {"count": os.cpu_count(), "usable": _usable_cpus(), "machine": platform.machine()},
        "torch": torch_info,
        "libraries": libraries,
        "loom_compute": loom_compute,
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    return collect_report()


VERB = Verb(
    name="doctor",
    help="report Python, torch (CUDA, devices, bf16, NCCL/gloo) and library versions",
    run=run,
)
