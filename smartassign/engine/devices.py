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

from smartassign.config import ConfigError

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


class DeviceUnavailableError(ConfigError):
    """The configured device (``train.device``, ``inference.device``, ``--device``) cannot
    be used on this machine."""


def require_npu(param: str = "train.device") -> None:
    """Import ``torch_npu`` (registers the ``npu`` device) or explain how to get it."""
    try:
        importlib.import_module("torch_npu")
    except ImportError as error:
        raise DeviceUnavailableError(
            f"{param} is 'npu' but torch_npu is not installed: install the Ascend "
            "CANN toolkit and `pip install -e '.[npu]'` (torch-npu matching your torch), "
            f"or set {param} to cpu/cuda"
        ) from error


def check_device(kind: str, param: str = "train.device") -> None:
    """Fail early, on the driver, when the configured device is missing."""
    if kind.startswith("cuda") and not torch.cuda.is_available():
        raise DeviceUnavailableError(
            f"{param} is {kind!r} but torch sees no CUDA device (CPU-only torch build or "
            f"no GPU on this machine): install a CUDA build of torch, or set {param}: cpu"
        )
    if kind.startswith("npu"):
        require_npu(param)


def _npu_available() -> bool:
    try:
        importlib.import_module("torch_npu")
    except ImportError:
        return False
    return bool(torch.npu.is_available())  # type: ignore[attr-defined]


def resolve_device(name: str, param: str = "--device") -> torch.device:
    """The torch device for ``name``: ``auto`` is the first of CUDA, Ascend NPU and CPU
    that this machine has; ``cpu``, ``cuda[:i]`` and ``npu[:i]`` are checked to exist
    (:class:`DeviceUnavailableError` names ``param`` otherwise)."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("npu") if _npu_available() else torch.device("cpu")
    kind = name.split(":", 1)[0]
    if kind not in BACKENDS:
        raise DeviceUnavailableError(
            f"{param}: unknown device {name!r}; use auto, cpu, cuda or npu"
        )
    check_device(name, param)
    return torch.device(name)


def ray_resources(resources: Mapping[str, float], kind: DeviceKind) -> dict[str, float]:
    """Ray resources of one training worker or trial: ``resources`` without zero amounts,
    plus one GPU / NPU on those devices unless ``resources`` names a share of it."""
    wanted = {key: amount for key, amount in resources.items() if amount > 0}
    if kind == "cuda":
        wanted.setdefault("GPU", 1.0)
    if kind == "npu":
        wanted.setdefault("NPU", 1.0)
    return wanted


def local_device(kind: DeviceKind) -> torch.device:
    """The device of a training loop that runs in this process without Ray Train (a Tune
    trial, whose GPU Ray has made the only visible one, or a benchmark): the current
    CUDA / NPU device, or the CPU."""
    if kind == "cpu":
        return torch.device("cpu")
    check_device(kind)
    if kind == "npu":
        return torch.device("npu", torch.npu.current_device())  # type: ignore[attr-defined]
    return torch.device("cuda", torch.cuda.current_device())


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


def cpu_has_native_bfloat16() -> bool:
    """Whether this x86 CPU multiplies bfloat16 in hardware (AVX512-BF16 or AMX), where
    bfloat16 autocast makes training faster rather than slower."""
    return torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()


def autocast_dtype(kind: str, enabled: bool, name: str = "auto") -> torch.dtype | None:
    """Autocast dtype when ``train.amp`` is on, ``None`` for float32 (``train.amp_dtype``
    ``auto``: bfloat16 on NPUs and on CUDA devices that support it, else float16; on the
    CPU bfloat16 where the CPU has it in hardware, else float32)."""
    if not enabled:
        return None
    if name != "auto":
        return getattr(torch, name)
    if kind == "cpu":
        return torch.bfloat16 if cpu_has_native_bfloat16() else None
    supported = kind != "cuda" or torch.cuda.is_bf16_supported()
    return torch.bfloat16 if supported else torch.float16


def precision_name(dtype: torch.dtype | None) -> str:
    """What steps under ``autocast(device, dtype)`` compute in, for logs and reports."""
    return "float32" if dtype is None else f"{str(dtype).removeprefix('torch.')} autocast"


@contextlib.contextmanager
def autocast(device: torch.device, dtype: torch.dtype | None) -> Iterator[None]:
    """``torch.autocast`` for ``dtype``, or nothing when ``dtype`` is ``None``."""
    if dtype is None:
        yield
        return
    with torch.autocast(device_type=device.type, dtype=dtype):
        yield
