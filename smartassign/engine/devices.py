"""Accelerator handling: CPU, CUDA and Ascend NPU (``torch_npu``, imported only when asked)."""

from __future__ import annotations

import contextlib
import importlib
import os
import platform
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Literal

import torch

DeviceKind = Literal["cpu", "cuda", "npu"]

#: process-group backend per device kind
BACKENDS: dict[str, str] = {"cpu": "gloo", "cuda": "nccl", "npu": "hccl"}


def machine() -> dict[str, object]:
    """What a measurement ran on (benchmarks record it): CPU model and count, OS, Python,
    torch, and the GPU when torch sees one."""
    cpu = platform.processor()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        names = [line for line in cpuinfo.read_text().splitlines() if line.startswith("model name")]
        cpu = names[0].split(":", 1)[1].strip() if names else cpu
    return {
        "cpu": cpu or platform.machine(),
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }


class DeviceUnavailableError(RuntimeError):
    """The configured ``train.device`` cannot be used on this machine."""


def require_npu() -> None:
    """Import ``torch_npu`` (registers the ``npu`` device) or explain how to get it."""
    try:
        importlib.import_module("torch_npu")
    except ImportError as error:
        raise DeviceUnavailableError(
            "train.device is 'npu' but torch_npu is not installed: install the Ascend "
            "CANN toolkit and `pip install -e '.[npu]'` (torch-npu matching your torch), "
            "or set train.device to cpu/cuda"
        ) from error


def check_device(kind: DeviceKind) -> None:
    """Fail early, on the driver, when the configured device is missing."""
    if kind == "cuda" and not torch.cuda.is_available():
        raise DeviceUnavailableError(
            "train.device is 'cuda' but torch sees no CUDA device (CPU-only torch build or "
            "no GPU on this machine); set train.device: cpu"
        )
    if kind == "npu":
        require_npu()


def ray_resources(resources: Mapping[str, float], kind: DeviceKind) -> dict[str, float]:
    """Ray resources of one training worker or trial: ``resources`` without zero amounts,
    plus one GPU / NPU on those devices unless ``resources`` names a share of it."""
    wanted = {key: amount for key, amount in resources.items() if amount > 0}
    if kind == "cuda":
        wanted.setdefault("GPU", 1.0)
    if kind == "npu":
        wanted.setdefault("NPU", 1.0)
    return wanted


def worker_device(kind: DeviceKind) -> torch.device:
    """The device of this Ray Train worker, selected as current for its process."""
    if kind == "cpu":
        return torch.device("cpu")
    import ray.train.torch

    if kind == "npu":
        require_npu()
        device = ray.train.torch.get_device()
        # Ray's process-group setup only calls torch.cuda.set_device
        torch.npu.set_device(device)  # type: ignore[attr-defined]
        return device
    device = ray.train.torch.get_device()
    torch.cuda.set_device(device)
    return device


def autocast_dtype(kind: DeviceKind, enabled: bool, name: str = "bfloat16") -> torch.dtype | None:
    """Autocast dtype on CUDA / NPU when ``train.amp`` is on; CPU trains in float32."""
    return getattr(torch, name) if enabled and kind != "cpu" else None


@contextlib.contextmanager
def autocast(device: torch.device, dtype: torch.dtype | None) -> Iterator[None]:
    """``torch.autocast`` for ``dtype``, or nothing when ``dtype`` is ``None``."""
    if dtype is None:
        yield
        return
    with torch.autocast(device_type=device.type, dtype=dtype):
        yield
