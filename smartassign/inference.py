"""Restoring images of any size with a trained SmartAssign model (docs/inference.md).

* :func:`forward_tiled`: the network on one image of any size in overlapping tiles, blended
  with a raised-cosine ramp over the overlap. Tiles start on multiples of the model's
  ``size_multiple``, so their attention windows line up with the whole-image pass.
  The channel gates (Eq. 9, 11) pool over the whole input; with ``gate_statistics: image``
  the tiles use the whole image's means, so the tiled result matches the whole-image pass
  up to the tiles' border effects (a few 1e-4) and the tile size is only a memory setting.
* :func:`restore_image`: ``uint8`` pixels in, ``uint8`` pixels out; ``task="auto"`` lets the
  recognition head (D_re) pick the decoder from the logits of the same pass.
* :func:`restore_paths`: files and folders in, PNG files out, unreadable files skipped.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterator, Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from smartassign.config import InferenceConfig
from smartassign.data import TASKS, DataError
from smartassign.data.images import read_rgb, write_png
from smartassign.data.layouts import image_files
from smartassign.data.tensors import to_pixels
from smartassign.model import MIN_SIZE, SmartAssign, SmartAssignOutput
from smartassign.model.layers import ChannelGate
from smartassign.model.network import RecognitionDecoder

TaskChoice = Literal["auto", "rain", "snow"]
HEADS = {"rain": "derain", "snow": "desnow"}
"""The restoration decoder (``SmartAssignOutput`` field) of each task."""

OUTPUT_SUFFIX = ".png"


class Restoration(NamedTuple):
    """A restored image, the task whose decoder produced it and, in auto mode, P(rain)."""

    pixels: np.ndarray
    task: str
    rain_probability: float | None


@dataclass(frozen=True)
class Tile:
    """One tile: its origin and blending weights, and the part of the image it "owns".

    The cores (``core``: top, bottom, left, right, in tile coordinates) of all tiles
    partition the padded image; gate means and recognition features are pooled over them.
    """

    top: int
    left: int
    weight: torch.Tensor
    core: tuple[int, int, int, int]


def check_task(model: SmartAssign, task: str) -> None:
    """Raise ``ValueError`` if ``model`` cannot restore ``task`` (``auto``, rain, snow)."""
    variant = model.cfg.variant.value
    available = [name for name in TASKS if HEADS[name] in model.decoders]
    if task == "auto":
        if model.recognition is None:
            raise ValueError(
                f"task auto needs the recognition head, which model variant {variant} lacks; "
                f"choose the task: {' or '.join(available)}"
            )
    elif task not in HEADS:
        raise ValueError(f"unknown task {task!r}; expected auto, rain or snow")
    elif HEADS[task] not in model.decoders:
        raise ValueError(
            f"model variant {variant} has no {HEADS[task]} decoder; it restores only "
            f"{' and '.join(available)}"
        )


def tile_geometry(tile_size: int, tile_overlap: int, multiple: int) -> tuple[int, int]:
    """Tile side and overlap rounded to the model's size multiple (side down, overlap up)."""
    tile = max(tile_size // multiple, math.ceil(MIN_SIZE / multiple)) * multiple
    overlap = math.ceil(tile_overlap / multiple) * multiple
    if overlap >= tile:
        raise ValueError(
            f"tile_overlap {tile_overlap} rounds up to {overlap} and tile_size {tile_size} "
            f"down to {tile} (multiples of the model's size multiple {multiple}), leaving no "
            "stride; raise tile_size or lower tile_overlap"
        )
    return tile, overlap


def _ramp(length: int, overlap: int, rise: bool, fall: bool) -> torch.Tensor:
    """1-D weights: a raised-cosine rise / fall over ``overlap`` pixels at inner edges."""
    weight = torch.ones(length)
    if overlap:
        steps = (torch.arange(overlap) + 0.5) / overlap
        ramp = 0.5 - 0.5 * torch.cos(math.pi * steps)
        if rise:
            weight[:overlap] = ramp
        if fall:
            weight[-overlap:] = ramp.flip(0)
    return weight


def _axis(length: int, tile: int, overlap: int, multiple: int) -> list[tuple[int, int, int]]:
    """``(start, core_start, core_end)`` per tile along one padded axis of ``length``.

    Starts step by ``tile - overlap``; the last tile ends at ``length`` (so it may overlap
    more). Core borders lie mid-overlap, on multiples of ``multiple``.
    """
    if length <= tile:
        return [(0, 0, length)]
    stride = tile - overlap
    starts = [index * stride for index in range(math.ceil((length - tile) / stride))]
    starts.append(length - tile)
    borders = [0]
    for previous, start in itertools.pairwise(starts):
        borders.append((start + previous + tile) // 2 // multiple * multiple)
    borders.append(length)
    return [(start, borders[i], borders[i + 1]) for i, start in enumerate(starts)]


def plan_tiles(height: int, width: int, tile: int, overlap: int, multiple: int) -> list[Tile]:
    """Tiles covering a ``height x width`` image (both multiples of ``multiple``)."""
    rows = _axis(height, tile, overlap, multiple)
    cols = _axis(width, tile, overlap, multiple)
    tile_h, tile_w = min(tile, height), min(tile, width)
    tiles = []
    for i, (top, core_top, core_bottom) in enumerate(rows):
        weight_y = _ramp(tile_h, overlap, i > 0, i < len(rows) - 1)
        for j, (left, core_left, core_right) in enumerate(cols):
            weight_x = _ramp(tile_w, overlap, j > 0, j < len(cols) - 1)
            core = (core_top - top, core_bottom - top, core_left - left, core_right - left)
            tiles.append(Tile(top, left, weight_y[:, None] * weight_x[None, :], core))
    return tiles


def _gate_levels(model: SmartAssign) -> list[list[ChannelGate]]:
    """Channel gates in the order their inputs are computed; a level's gates share one."""
    levels = [[block.conv_gate] for block in model.encoder.blocks if block.gated_cnn]
    if len(model.gkfm):
        levels.append([module.gate for module in model.gkfm.values()])
    found = sum(isinstance(module, ChannelGate) for module in model.modules())
    if found != sum(map(len, levels)):
        raise RuntimeError(f"found {found} channel gates where the tiling expects the encoder's")
    return levels


class _StopForward(Exception):
    """Ends a statistics pass once the gates of the level being measured have run."""


class _GateStatistics:
    """Forward hooks that give every channel gate the whole image's mean of its input.

    Gates in ``means`` use the mean measured before (whatever the tile holds); the gates
    in ``measuring`` add up their input over each tile's core and then end the pass.
    """

    def __init__(self, tile_height: int) -> None:
        self.tile_height = tile_height
        self.means: dict[nn.Module, torch.Tensor] = {}
        self.measuring: list[ChannelGate] = []
        self.cores: list[tuple[int, int, int, int]] = []
        self._sums: dict[nn.Module, torch.Tensor] = {}
        self._counts: dict[nn.Module, int] = {}
        self._seen = 0

    def start_batch(self, cores: list[tuple[int, int, int, int]]) -> None:
        """Cores of the tiles in the next forward pass, in batch order."""
        self.cores = cores
        self._seen = 0

    def hook(
        self, gate: nn.Module, args: tuple[torch.Tensor, ...], output: object
    ) -> tuple[torch.Tensor, torch.Tensor] | None:
        """Replace the gate's output (fixed mean) or record its input (measuring)."""
        (features,) = args
        if gate in self.means:
            gates = gate.gate_values(self.means[gate][:, :, None, None])
            gates = gates.expand(features.shape[0], -1)
            return features * gates[:, :, None, None], gates
        if gate not in self.measuring:
            return None
        scale = self.tile_height // features.shape[-2]
        for sample, (top, bottom, left, right) in zip(features, self.cores, strict=True):
            core = sample[:, top // scale : bottom // scale, left // scale : right // scale]
            self._sums[gate] = self._sums.get(gate, 0) + core.sum(dim=(1, 2))
            self._counts[gate] = self._counts.get(gate, 0) + core[0].numel()
        self._seen += 1
        if self._seen == len(self.measuring):
            raise _StopForward
        return None

    def finish_level(self) -> None:
        """Turn the sums of the measured level into means; the next level can start."""
        for gate in self.measuring:
            self.means[gate] = (self._sums.pop(gate) / self._counts.pop(gate))[None]
        self.measuring = []


class _RecognitionPool:
    """A forward hook on D_re's convolutions that pools their output over each tile's core.

    D_re pools windows of the padded image (or the whole of it) and averages their logits.
    Every core's features are folded into the windows they fall in (max, or sum and count
    for mean), so the tiled logits equal the whole-image logits.
    """

    def __init__(self, decoder: RecognitionDecoder) -> None:
        self.decoder = decoder
        self.tiles: list[Tile] = []
        self._pooled: dict[tuple[int, int], torch.Tensor] = {}
        self._counts: dict[tuple[int, int], int] = {}

    def start_batch(self, tiles: list[Tile]) -> None:
        """The tiles of the next forward pass, in batch order."""
        self.tiles = tiles

    def hook(self, convs: nn.Module, args: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        """Fold the core of every tile's feature map into the windows it covers."""
        stride = self.decoder.feature_stride
        for sample, tile in zip(output, self.tiles, strict=True):
            top, bottom, left, right = (side // stride for side in tile.core)
            core = sample[:, top:bottom, left:right]
            rows = (tile.top // stride + top, tile.top // stride + bottom)
            cols = (tile.left // stride + left, tile.left // stride + right)
            for window, part in self._windows(core, rows, cols):
                self._fold(window, part)

    def _windows(
        self, core: torch.Tensor, rows: tuple[int, int], cols: tuple[int, int]
    ) -> Iterator[tuple[tuple[int, int], torch.Tensor]]:
        """``(window index, features)`` of every window a core's features fall in."""
        side = self.decoder.window_features
        if not side:
            yield (0, 0), core
            return
        for row in range(rows[0] // side, -(-rows[1] // side)):
            top, bottom = max(rows[0], row * side), min(rows[1], (row + 1) * side)
            for col in range(cols[0] // side, -(-cols[1] // side)):
                left, right = max(cols[0], col * side), min(cols[1], (col + 1) * side)
                yield (
                    (row, col),
                    core[:, top - rows[0] : bottom - rows[0], left - cols[0] : right - cols[0]],
                )

    def _fold(self, window: tuple[int, int], part: torch.Tensor) -> None:
        if self.decoder.pool == "max":
            pooled = part.amax(dim=(1, 2))
            if window in self._pooled:
                pooled = torch.maximum(self._pooled[window], pooled)
            self._pooled[window] = pooled
        else:
            self._pooled[window] = self._pooled.get(window, 0) + part.sum(dim=(1, 2))
            self._counts[window] = self._counts.get(window, 0) + part[0].numel()

    def logits(self) -> torch.Tensor:
        """``1 x 2`` logits of the whole image: the mean of the windows' logits."""
        if not self._pooled:
            raise RuntimeError("no tile has passed the recognition head")
        windows = sorted(self._pooled)
        pooled = torch.stack([self._pooled[w] for w in windows], dim=1)
        if self.decoder.pool == "mean":
            pooled = pooled / torch.tensor([self._counts[w] for w in windows])
        return self.decoder.logits_from_pooled(pooled[None])


def _batches(tiles: list[Tile], size: int) -> Iterator[list[Tile]]:
    for start in range(0, len(tiles), size):
        yield tiles[start : start + size]


def _blend(
    run: Callable[[list[Tile]], SmartAssignOutput],
    batches: Iterator[list[Tile]],
    padded: torch.Tensor,
    heads: list[str],
) -> dict[str, torch.Tensor]:
    """Weighted mean of the tiles' restorations."""
    height, width = padded.shape[-2:]
    sums = {head: padded.new_zeros(1, 3, height, width) for head in heads}
    weights = padded.new_zeros(1, 1, height, width)
    for batch in batches:
        out = run(batch)
        for index, tile in enumerate(batch):
            tile_h, tile_w = tile.weight.shape
            region = (..., slice(tile.top, tile.top + tile_h), slice(tile.left, tile.left + tile_w))
            weight = tile.weight.to(padded.device)
            for head in heads:
                sums[head][region] += getattr(out, head)[index] * weight
            weights[region] += weight
    return {head: sums[head] / weights for head in heads}


@torch.inference_mode()
def forward_tiled(
    model: SmartAssign, image: torch.Tensor, settings: InferenceConfig | None = None
) -> SmartAssignOutput:
    """``model(image)`` for one ``1 x 3 x H x W`` image of any size, run in tiles.

    The veil is removed from the whole image first (when the model has veil removal), so
    every tile is dehazed as the whole-image pass would dehaze it. The image is then padded
    (replicate) to a multiple of ``model.size_multiple`` and at least
    16 px; an image within one tile runs whole. Restored images are blended from the
    tiles; the logits come from D_re's features pooled over the tiles' cores. The
    output has no ``knowledge``.
    """
    settings = settings or InferenceConfig()
    if image.dim() != 4 or image.shape[:2] != (1, 3):
        raise ValueError(f"expected one 1 x 3 x H x W image, got shape {tuple(image.shape)}")
    multiple = model.size_multiple
    tile, overlap = tile_geometry(settings.tile_size, settings.tile_overlap, multiple)
    height, width = image.shape[-2:]
    smallest = math.ceil(MIN_SIZE / multiple)
    padded_h = max(math.ceil(height / multiple), smallest) * multiple
    padded_w = max(math.ceil(width / multiple), smallest) * multiple
    clear = model.remove_veil(image)
    padded = F.pad(clear, (0, padded_w - width, 0, padded_h - height), mode="replicate")
    tiles = plan_tiles(padded_h, padded_w, tile, overlap, multiple)
    heads = list(model.decoders)
    if len(tiles) == 1:
        out = model(padded, veil_removed=True)
        crops = {head: getattr(out, head)[..., :height, :width] for head in heads}
        return SmartAssignOutput(crops.get("derain"), crops.get("desnow"), out.logits)

    tile_h, tile_w = tiles[0].weight.shape
    statistics = _GateStatistics(tile_h)
    recognition = _RecognitionPool(model.recognition) if model.recognition is not None else None

    def run(batch: list[Tile]) -> SmartAssignOutput:
        crops = [padded[..., t.top : t.top + tile_h, t.left : t.left + tile_w] for t in batch]
        statistics.start_batch([t.core for t in batch])
        if recognition is not None:
            recognition.start_batch(batch)
        return model(torch.cat(crops), veil_removed=True)

    levels = _gate_levels(model) if settings.gate_statistics == "image" else []
    handles = [gate.register_forward_hook(statistics.hook) for level in levels for gate in level]
    try:
        for level in levels:
            statistics.measuring = level
            for batch in _batches(tiles, settings.batch_tiles):
                with suppress(_StopForward):
                    run(batch)
            statistics.finish_level()
        if recognition is not None:
            handles.append(model.recognition.convs.register_forward_hook(recognition.hook))
        blended = _blend(run, _batches(tiles, settings.batch_tiles), padded, heads)
    finally:
        for handle in handles:
            handle.remove()
    crops = {head: blended[head][..., :height, :width] for head in heads}
    logits = recognition.logits() if recognition is not None else None
    return SmartAssignOutput(crops.get("derain"), crops.get("desnow"), logits)


def restore_image(
    model: SmartAssign,
    pixels: np.ndarray,
    task: TaskChoice = "auto",
    settings: InferenceConfig | None = None,
) -> Restoration:
    """Restore ``uint8`` ``H x W x 3`` pixels with the decoder of ``task``.

    ``task="auto"`` uses the recognition head: rain if P(rain) >= 0.5, from the logits of
    the same (tiled) pass, so routing costs nothing extra. Raises ``ValueError`` for a task
    the model's variant cannot do (see :func:`check_task`) or for malformed pixels.
    """
    check_task(model, task)
    if pixels.dtype != np.uint8 or pixels.ndim != 3 or pixels.shape[2] != 3:
        raise ValueError(
            f"expected uint8 H x W x 3 pixels, got {pixels.dtype} of shape {pixels.shape}"
        )
    device = next(model.parameters()).device
    image = torch.tensor(pixels, device=device)
    out = forward_tiled(model, image.permute(2, 0, 1)[None].float() / 255, settings)
    rain_probability = None
    if task == "auto":
        rain_probability = float(out.logits.softmax(dim=-1)[0, 0])
        task = "rain" if rain_probability >= 0.5 else "snow"
    return Restoration(to_pixels(getattr(out, HEADS[task])[0]), task, rain_probability)


@dataclass
class RestoreReport:
    """What :func:`restore_paths` did: ``(input, output, task)`` and ``(input, reason)``."""

    restored: list[tuple[Path, Path, str]] = field(default_factory=list)
    skipped: list[tuple[Path, str]] = field(default_factory=list)
    auto: bool = False

    def summary(self) -> str:
        """``restored N, skipped M`` and, in auto mode, ``(rain: a, snow: b)``."""
        line = f"restored {len(self.restored)}, skipped {len(self.skipped)}"
        if self.auto:
            counts = {task: 0 for task in TASKS}
            for _, _, task in self.restored:
                counts[task] += 1
            line += " (" + ", ".join(f"{task}: {n}" for task, n in counts.items()) + ")"
        return line


def plan_outputs(
    inputs: Sequence[Path | str], out_dir: Path
) -> tuple[list[tuple[Path, Path]], list[tuple[Path, str]]]:
    """``(input, output)`` pairs and ``(input, reason)`` for inputs that cannot be planned.

    A file ``x.jpg`` becomes ``out_dir/x.png``; a folder contributes its image files (by
    suffix, recursively, hidden ones skipped) at the same relative path, as PNG. An output
    claimed twice (``a.jpg`` and ``a.png``) or equal to its input skips the later input.
    """
    jobs: list[tuple[Path, Path]] = []
    skipped: list[tuple[Path, str]] = []
    owner: dict[Path, Path] = {}
    for item in map(Path, inputs):
        if item.is_dir():
            found = [(path, path.relative_to(item)) for path in image_files(item, recursive=True)]
            if not found:
                skipped.append((item, "no image files in this folder"))
        elif item.exists():
            found = [(item, Path(item.name))]
        else:
            skipped.append((item, "not found"))
            continue
        for source, relative in found:
            target = out_dir / relative.with_suffix(OUTPUT_SUFFIX)
            if target.resolve() == source.resolve():
                skipped.append((source, "its output would overwrite it; choose another --out"))
            elif target.resolve() in owner:
                first = owner[target.resolve()]
                skipped.append((source, f"{target} is already the output of {first}"))
            else:
                owner[target.resolve()] = source
                jobs.append((source, target))
    return jobs, skipped


def restore_paths(
    model: SmartAssign,
    inputs: Sequence[Path | str],
    out_dir: Path,
    task: TaskChoice = "auto",
    settings: InferenceConfig | None = None,
    progress: bool = True,
    log: Callable[[str], None] = tqdm.write,
) -> RestoreReport:
    """Restore image files and folders into ``out_dir`` (see :func:`plan_outputs`).

    Unreadable files are skipped with a message through ``log``; one line per restored
    image names the task used (and P(rain) in auto mode).
    """
    check_task(model, task)
    jobs, skipped = plan_outputs(inputs, out_dir)
    report = RestoreReport(auto=task == "auto")
    for source, reason in skipped:
        report.skipped.append((source, reason))
        log(f"skipped {source}: {reason}")
    for source, target in tqdm(jobs, desc="restore", unit="image", disable=not progress):
        try:
            pixels = read_rgb(source).pixels
        except DataError as error:
            report.skipped.append((source, error.reason))
            log(f"skipped {source}: {error.reason}")
            continue
        result = restore_image(model, pixels, task, settings)
        write_png(target, result.pixels)
        report.restored.append((source, target, result.task))
        routed = result.task
        if result.rain_probability is not None:
            routed += f" (auto, P(rain) {result.rain_probability:.2f})"
        log(f"{source} -> {target}: {routed}")
    return report
