"""Exporting a SmartAssign model to ONNX or TorchScript, checked against PyTorch.

The network returns a dataclass; :class:`ExportWrapper` returns plain tensors instead: those
of ``(derain, desnow, logits)`` that the variant has, in that order.

* **ONNX** has dynamic batch, height and width. It is traced by ``torch.export`` (dynamo,
  strict: non-strict tracing fails on the ``lru_cache`` of the shifted-window mask) at a size
  that is not a multiple of ``model.size_multiple``, so the padding stays in the graph, and
  larger than it, so the shifted windows do. The graph therefore matches PyTorch for sides
  above ``size_multiple`` (and >= 16); at or below it PyTorch drops the shift and the two
  differ. Attention is decomposed into matmul / softmax first, as the ONNX translation of
  ``scaled_dot_product_attention`` takes only 4-D inputs and the windows make them 5-D.
* **TorchScript** (``torch.jit.trace``, deprecated by PyTorch in favour of ``torch.export``
  but still the format C++ ``torch::jit::load`` reads) has a fixed height and width and a
  dynamic batch: a traced graph keeps the padding of the size it was traced at, so the
  wrapper rejects any other size rather than compute a wrong result.

:func:`export_model` writes the file, runs it (onnxruntime / ``torch.jit.load``) next to
PyTorch on random images and raises :class:`ExportError`, removing the file, when the
largest absolute difference exceeds the tolerance.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from torch import nn

from smartassign.model import MIN_SIZE, SmartAssign

ExportFormat = Literal["onnx", "torchscript"]
FORMATS: tuple[str, ...] = ("onnx", "torchscript")
OUTPUTS: tuple[str, ...] = ("derain", "desnow", "logits")
INPUT_NAME = "image"
DEFAULT_TOLERANCE = 1e-4

Runner = Callable[[torch.Tensor], list[np.ndarray]]


def model_device(model: nn.Module) -> torch.device:
    """The device of ``model``'s parameters."""
    return next(model.parameters()).device


class ExportError(ValueError):
    """An export that failed, or whose result differs from PyTorch beyond the tolerance."""


class ExportWrapper(nn.Module):
    """``image -> (derain, desnow, logits)`` as plain tensors, without the variant's absent ones.

    With ``fixed_size`` the input is first expanded to ``B x 3 x height x width``: nothing
    at that size, an error at any other, so a traced graph cannot run at a size it was not
    traced for.
    """

    def __init__(self, model: SmartAssign, fixed_size: tuple[int, int] | None = None) -> None:
        super().__init__()
        self.model = model
        self.fixed_size = fixed_size
        present = {
            "derain": "derain" in model.decoders,
            "desnow": "desnow" in model.decoders,
            "logits": model.recognition is not None,
        }
        self.outputs = tuple(name for name in OUTPUTS if present[name])

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, ...]:
        if self.fixed_size is not None:
            image = image.expand(-1, 3, *self.fixed_size)
        out = self.model(image)
        return tuple(getattr(out, name) for name in self.outputs)


@dataclass(frozen=True)
class ExportResult:
    """The written file and the parity check: max abs difference per ``(B, H, W)`` checked."""

    path: Path
    format: str
    outputs: tuple[str, ...]
    differences: dict[tuple[int, int, int], float]
    tolerance: float
    min_side: int | None
    """ONNX: the smallest side the graph matches PyTorch at; ``None``: fixed size."""

    @property
    def max_difference(self) -> float:
        return max(self.differences.values())

    def lines(self) -> list[str]:
        """A human summary: the file, its inputs and outputs, the parity check."""
        if self.min_side is None:
            _, height, width = next(iter(self.differences))
            shape = f"B x 3 x {height} x {width} (fixed height and width)"
        else:
            shape = f"B x 3 x H x W (dynamic; H, W >= {self.min_side})"
        checked = ", ".join(
            f"{difference:.2e} at {batch}x3x{height}x{width}"
            for (batch, height, width), difference in self.differences.items()
        )
        return [
            f"wrote {self.path} ({self.format}): {INPUT_NAME} {shape} -> {', '.join(self.outputs)}",
            f"parity with PyTorch: max abs difference {checked} (tolerance {self.tolerance:g})",
        ]


def onnx_min_side(model: SmartAssign) -> int:
    """Smallest side at which the dynamic ONNX graph matches PyTorch (see module notes)."""
    return max(MIN_SIZE, model.size_multiple + 1)


def _trace_side(side: int, multiple: int) -> int:
    """``side`` if it needs padding and exceeds ``multiple``, else a close size that does."""
    if multiple == 1 or (side > multiple and side % multiple):
        return side
    return max(side, multiple) + 1


def _attention_math(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attn_mask: torch.Tensor | None = None,
    dropout_p: float = 0.0,
    is_causal: bool = False,
    scale: float | None = None,
    enable_gqa: bool = False,
) -> torch.Tensor:
    """``scaled_dot_product_attention`` as matmul / softmax, for inputs of any rank.

    Covers what the network uses: a boolean mask (True = may attend), no dropout, no
    causal mask.
    """
    if dropout_p or is_causal or enable_gqa:
        raise ExportError("attention with dropout, causal mask or GQA is not supported")
    scale = query.shape[-1] ** -0.5 if scale is None else scale
    scores = (query * scale) @ key.transpose(-2, -1)
    if attn_mask is not None:
        scores = scores.masked_fill(attn_mask.logical_not(), float("-inf"))
    return scores.softmax(dim=-1) @ value


def _export_onnx(wrapper: ExportWrapper, path: Path, height: int, width: int) -> Runner:
    try:
        import onnxruntime
        import onnxscript  # noqa: F401  (torch.onnx needs it; fail here with the hint)
    except ImportError as error:
        raise ExportError(
            f"ONNX export needs onnx, onnxscript and onnxruntime ({error}): "
            "pip install onnx onnxscript onnxruntime"
        ) from None
    multiple = wrapper.model.size_multiple
    sides = (_trace_side(height, multiple), _trace_side(width, multiple))
    example = torch.rand(2, 3, *sides)
    dims = {axis: torch.export.Dim.AUTO for axis in (0, 2, 3)}
    with warnings.catch_warnings():
        # torch's own notices: the mask's lru_cache is traced through, LeafSpec is deprecated
        warnings.filterwarnings("ignore", message=".*lru_cache.*")
        warnings.filterwarnings("ignore", message=".*LeafSpec.*", category=FutureWarning)
        program = torch.export.export(wrapper, (example,), dynamic_shapes=(dims,), strict=True)
        program = program.run_decompositions(
            {torch.ops.aten.scaled_dot_product_attention.default: _attention_math}
        )
        onnx_program = torch.onnx.export(
            program,
            (example,),
            input_names=[INPUT_NAME],
            output_names=list(wrapper.outputs),
            verbose=False,
        )
    onnx_program.save(str(path))
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return lambda image: session.run(None, {INPUT_NAME: image.numpy()})


def _export_torchscript(wrapper: ExportWrapper, path: Path, height: int, width: int) -> Runner:
    fixed = ExportWrapper(wrapper.model, fixed_size=(height, width))
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", message=".*torch.jit.trace.*deprecated")
        traced = torch.jit.trace(fixed, (torch.rand(1, 3, height, width),), check_trace=False)
    traced.save(str(path))
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*torch.jit.load.*deprecated")
        module = torch.jit.load(str(path), map_location="cpu")

    def run(image: torch.Tensor) -> list[np.ndarray]:
        with torch.no_grad():
            return [tensor.numpy() for tensor in module(image)]

    return run


def max_difference(
    reference: ExportWrapper, run: Runner, batch: int, height: int, width: int
) -> float:
    """Largest absolute difference between ``run`` and PyTorch (on the reference's device)
    on seeded random images."""
    image = torch.rand(batch, 3, height, width, generator=torch.Generator().manual_seed(batch))
    with torch.inference_mode():
        expected = [tensor.cpu() for tensor in reference(image.to(model_device(reference)))]
    got = run(image)
    if len(got) != len(expected):
        raise ExportError(f"exported model returns {len(got)} outputs, expected {len(expected)}")
    return max(
        float(np.abs(np.asarray(value) - tensor.numpy()).max())
        for value, tensor in zip(got, expected, strict=True)
    )


def export_model(
    model: SmartAssign,
    path: Path,
    fmt: ExportFormat,
    height: int = 256,
    width: int = 256,
    tolerance: float = DEFAULT_TOLERANCE,
) -> ExportResult:
    """Write ``model`` to ``path`` as ONNX or TorchScript and check parity.

    The file is traced from a CPU copy of the model (an exported graph holds no device);
    the parity check compares it with ``model`` on its own device, so a GPU model is
    checked as it runs there. ``height x width`` is the TorchScript input size and, for
    both formats, the first size the parity check runs at (batch 1); ONNX is checked at a
    second size too (batch 2), TorchScript at batch 2. Raises :class:`ExportError` above
    ``tolerance``.
    """
    if fmt not in FORMATS:
        raise ExportError(f"unknown format {fmt!r}; expected one of {', '.join(FORMATS)}")
    min_side = onnx_min_side(model) if fmt == "onnx" else MIN_SIZE
    if min(height, width) < min_side:
        raise ExportError(
            f"--height/--width must be at least {min_side} for {fmt}, got {height}x{width}"
        )
    model.eval()
    wrapper = ExportWrapper(model)
    on_cpu = (
        ExportWrapper(copy.deepcopy(model).cpu()) if model_device(model).type != "cpu" else wrapper
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "onnx":
        run = _export_onnx(on_cpu, path, height, width)
        multiple = model.size_multiple
        sizes = [(1, height, width), (2, height + multiple + 1, width + 2 * multiple + 1)]
    else:
        run = _export_torchscript(on_cpu, path, height, width)
        sizes = [(1, height, width), (2, height, width)]
    differences = {size: max_difference(wrapper, run, *size) for size in sizes}
    result = ExportResult(
        path, fmt, wrapper.outputs, differences, tolerance, min_side if fmt == "onnx" else None
    )
    if result.max_difference > tolerance:
        path.unlink()
        raise ExportError(f"{fmt} export differs from PyTorch: {result.lines()[1]}; {path} removed")
    return result
