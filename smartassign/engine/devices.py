"""Accelerator handling: CPU, CUDA and Ascend NPU (``torch_npu``, imported only when asked)."""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import Iterator
from typing import Literal

import torch

DeviceKind = Literal["cpu", "cuda", "npu"]

#: process-group backend per device kind
BACKENDS: dict[str, str] = {"cpu": "gloo", "cuda": "nccl", "npu": "hccl"}


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
