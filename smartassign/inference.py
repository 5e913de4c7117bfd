"""Restoring images of any size with a trained SmartAssign model (docs/inference.md).

* :func:`forward_tiled`: the network on one image of any size in overlapping tiles, blended
  with a raised-cosine ramp over the overlap. Tiles start on multiples of the model's
  ``size_multiple``, so their attention windows line up with the whole-image pass.
  The channel gates (Eq. 9, 11) pool over their input: by default each tile's own means
  (one pass); with ``gate_statistics: image`` the tiles use the whole image's means, so the
  tiled result matches the whole-image pass up to the tiles' border effects and the tile
  size is only a memory setting.
* :func:`restore_image`: ``uint8`` or ``uint16`` pixels in, the same out; ``task="auto"``
  lets the recognition head (D_re) pick the decoder from the logits of the same pass.
* :func:`restore_paths`: files and folders in, PNG files out in the form they came in
  (alpha, 16-bit, grey; :mod:`smartassign.image_files`), unreadable files skipped.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, NamedTuple

import numpy as np
import torch
from tqdm import tqdm

from smartassign.config import InferenceConfig
from smartassign.data import TASKS, DataError
from smartassign.data.layouts import image_files
from smartassign.data.tensors import to_pixels
from smartassign.image_files import read_source, write_restored
from smartassign.model import MIN_SIZE, SmartAssign, SmartAssignOutput
from smartassign.model.network import GateMeans, RecognitionDecoder, pad_to_multiple
from smartassign.progress import progress as show

TaskChoice = Literal["auto", "rain", "snow"]
HEADS = {"rain": "derain", "snow": "desnow"}
"""The restoration decoder (``SmartAssignOutput`` field) of each task."""

OUTPUT_SUFFIX = ".png"

UNCERTAIN_MARGIN = 0.15
"""Auto routing whose P(rain) lies this close to 0.5 is reported as uncertain."""


class Restoration(NamedTuple):
    """A restored image, the task whose decoder produced it and, in auto mode, P(rain)."""

    pixels: np.ndarray
    task: str
    rain_probability: float | None

    @property
    def uncertain(self) -> bool:
        """Auto routing near the threshold: P(rain) within ``UNCERTAIN_MARGIN`` of 0.5."""
        probability = self.rain_probability
        return probability is not None and abs(probability - 0.5) < UNCERTAIN_MARGIN


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
    variant = model.routing.name
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


def _crops(padded: torch.Tensor, batch: list[Tile]) -> torch.Tensor:
    """The tiles of ``batch`` cut from the padded image, stacked."""
    tile_h, tile_w = batch[0].weight.shape
    return torch.cat([padded[..., t.top : t.top + tile_h, t.left : t.left + tile_w] for t in batch])


def _batches(tiles: list[Tile], size: int) -> Iterator[list[Tile]]:
    for start in range(0, len(tiles), size):
        yield tiles[start : start + size]


def whole_image_gate_means(
    model: SmartAssign, padded: torch.Tensor, tiles: list[Tile], batch_tiles: int
) -> GateMeans:
    """The whole image's mean of every channel gate's input (Eq. 9, 11), tile by tile.

    Level by level (:attr:`SmartAssign.gate_levels`): each tile's gate input is summed over
    the tile's core (the cores partition the image), the earlier levels' gates using the
    means already found, so each mean is what the gate pools in a whole-image pass.
    """
    means: GateMeans = {}
    tile_h = tiles[0].weight.shape[0]
    for level in model.gate_levels:
        total: torch.Tensor | float = 0.0
        count = 0
        for batch in _batches(tiles, batch_tiles):
            inputs = model.gate_input(_crops(padded, batch), level, means)
            scale = tile_h // inputs.shape[-2]
            for sample, tile in zip(inputs, batch, strict=True):
                top, bottom, left, right = (side // scale for side in tile.core)
                core = sample[:, top:bottom, left:right]
                total = total + core.sum(dim=(1, 2))
                count += core[0].numel()
        means[level] = (total / count)[None]
    return means


class _RecognitionPool:
    """D_re's Pool over the tiles: each tile's feature map (before Pool), core only.

    D_re pools windows of the padded image (or the whole of it) and averages their logits.
    Every core's features are folded into the windows they fall in (max, or sum and count
    for mean), so the tiled logits equal the whole-image logits.
    """

    def __init__(self, decoder: RecognitionDecoder) -> None:
        self.decoder = decoder
        self._pooled: dict[tuple[int, int], torch.Tensor] = {}
        self._counts: dict[tuple[int, int], int] = {}

    def add(self, features: torch.Tensor, tiles: list[Tile]) -> None:
        """Fold the core of every tile's feature map (``features``, in batch order) into
        the windows it covers."""
        stride = self.decoder.feature_stride
        for sample, tile in zip(features, tiles, strict=True):
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


@torch.inference_mode()
def forward_tiled(
    model: SmartAssign, image: torch.Tensor, settings: InferenceConfig | None = None
) -> SmartAssignOutput:
    """``model(image)`` for one ``1 x 3 x H x W`` image of any size, run in tiles.

    The veil is removed from the whole image first (when the model has veil removal), so
    every tile is dehazed as the whole-image pass would dehaze it. The image is then padded
    (replicate) to a multiple of ``model.size_multiple`` and at least 16 px; an image within
    one tile runs whole. With ``gate_statistics: image`` the gates get the whole image's
    means (:func:`whole_image_gate_means`). Restored images are weighted means of the tiles'
    (raised-cosine ramps over the overlaps); the logits come from D_re's features pooled
    over the tiles' cores. The output has no ``knowledge``.
    """
    settings = settings or InferenceConfig()
    if image.dim() != 4 or image.shape[:2] != (1, 3):
        raise ValueError(f"expected one 1 x 3 x H x W image, got shape {tuple(image.shape)}")
    multiple = model.size_multiple
    tile, overlap = tile_geometry(settings.tile_size, settings.tile_overlap, multiple)
    height, width = image.shape[-2:]
    padded = pad_to_multiple(model.remove_veil(image), multiple, MIN_SIZE)
    tiles = plan_tiles(*padded.shape[-2:], tile, overlap, multiple)
    heads = list(model.decoders)
    if len(tiles) == 1:
        out = model(padded, veil_removed=True)
        crops = {head: getattr(out, head)[..., :height, :width] for head in heads}
        return SmartAssignOutput(crops.get("derain"), crops.get("desnow"), out.logits)

    means = None
    if settings.gate_statistics == "image":
        means = whole_image_gate_means(model, padded, tiles, settings.batch_tiles)
    recognition = _RecognitionPool(model.recognition) if model.recognition is not None else None
    sums = {head: torch.zeros_like(padded) for head in heads}
    weights = padded.new_zeros(1, 1, *padded.shape[-2:])
    for batch in _batches(tiles, settings.batch_tiles):
        out = model(
            _crops(padded, batch),
            veil_removed=True,
            gate_means=means,
            keep_recognition_features=recognition is not None,
        )
        if recognition is not None:
            recognition.add(out.recognition_features, batch)
        for index, tile in enumerate(batch):
            tile_h, tile_w = tile.weight.shape
            region = (..., slice(tile.top, tile.top + tile_h), slice(tile.left, tile.left + tile_w))
            weight = tile.weight.to(padded.device)
            for head in heads:
                sums[head][region] += getattr(out, head)[index] * weight
            weights[region] += weight
    del padded
    crops = {head: sums[head].div_(weights)[..., :height, :width] for head in heads}
    logits = recognition.logits() if recognition is not None else None
    return SmartAssignOutput(crops.get("derain"), crops.get("desnow"), logits)


def restore_image(
    model: SmartAssign,
    pixels: np.ndarray,
    task: TaskChoice = "auto",
    settings: InferenceConfig | None = None,
) -> Restoration:
    """Restore ``uint8`` or ``uint16`` ``H x W x 3`` pixels with the decoder of ``task``;
    the result has the dtype of ``pixels`` (16-bit input keeps its precision).

    ``task="auto"`` uses the recognition head: rain if P(rain) >= 0.5, from the logits of
    the same (tiled) pass, so routing costs nothing extra. Raises ``ValueError`` for a task
    the model's variant cannot do (see :func:`check_task`) or for malformed pixels.
    """
    check_task(model, task)
    if pixels.dtype not in (np.uint8, np.uint16) or pixels.ndim != 3 or pixels.shape[2] != 3:
        raise ValueError(
            f"expected uint8 or uint16 H x W x 3 pixels, got {pixels.dtype} of shape {pixels.shape}"
        )
    levels = np.iinfo(pixels.dtype).max
    device = next(model.parameters()).device
    image = torch.from_numpy(pixels.astype(np.float32)).to(device).div_(levels)
    out = forward_tiled(model, image.permute(2, 0, 1)[None], settings)
    rain_probability = None
    if task == "auto":
        rain_probability = float(out.logits.softmax(dim=-1)[0, 0])
        task = "rain" if rain_probability >= 0.5 else "snow"
    restored = getattr(out, HEADS[task])[0]
    if pixels.dtype == np.uint8:
        return Restoration(to_pixels(restored), task, rain_probability)
    scaled = restored.detach().float().clamp(0, 1).mul(levels).round().permute(1, 2, 0)
    return Restoration(scaled.cpu().numpy().astype(np.uint16), task, rain_probability)


@dataclass
class RestoreReport:
    """What :func:`restore_paths` did: ``(input, output, task)`` and ``(input, reason)``."""

    restored: list[tuple[Path, Path, str]] = field(default_factory=list)
    skipped: list[tuple[Path, str]] = field(default_factory=list)
    auto: bool = False
    uncertain: list[Path] = field(default_factory=list)

    def summary(self) -> str:
        """``restored N, skipped M`` and, in auto mode, ``(rain: a, snow: b)``, with the
        count of uncertain routings when there are any."""
        line = f"restored {len(self.restored)}, skipped {len(self.skipped)}"
        if self.auto:
            counts = {task: 0 for task in TASKS}
            for _, _, task in self.restored:
                counts[task] += 1
            routing = ", ".join(f"{task}: {n}" for task, n in counts.items())
            if self.uncertain:
                routing += f"; {len(self.uncertain)} uncertain, see --task"
            line += f" ({routing})"
        return line


def plan_outputs(
    inputs: Sequence[Path | str], out_dir: Path
) -> tuple[list[tuple[Path, Path]], list[tuple[Path, str]]]:
    """``(input, output)`` pairs and ``(input, reason)`` for inputs that cannot be planned.

    A file ``x.jpg`` becomes ``out_dir/x.png``; a folder contributes its image files (by
    suffix, recursively, hidden ones skipped) at the same relative path, as PNG. When two
    inputs would share an output (``a.jpg`` and ``a.png``), the later one keeps its source
    extension in the name (``a.png.png``). An output equal to its input skips the input.
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
            if target.resolve() in owner:
                target = out_dir / relative.with_name(relative.name + OUTPUT_SUFFIX)
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
    image names the task used (and P(rain) in auto mode, with a hint to name the task
    where the routing is uncertain, :attr:`Restoration.uncertain`).
    """
    check_task(model, task)
    jobs, skipped = plan_outputs(inputs, out_dir)
    report = RestoreReport(auto=task == "auto")
    for source, reason in skipped:
        report.skipped.append((source, reason))
        log(f"skipped {source}: {reason}")
    for source, target in show(jobs, desc="restore", unit="image", enabled=progress):
        try:
            image = read_source(source)
        except DataError as error:
            report.skipped.append((source, error.reason))
            log(f"skipped {source}: {error.reason}")
            continue
        result = restore_image(model, image.rgb, task, settings)
        write_restored(target, result.pixels, image)
        report.restored.append((source, target, result.task))
        routed = result.task
        if result.rain_probability is not None:
            routed += f" (auto, P(rain) {result.rain_probability:.2f})"
        if result.uncertain:
            report.uncertain.append(source)
            routed += "; uncertain: pass --task rain or --task snow if the weather is known"
        notes = [f"kept {image.form}"] if image.form else []
        if target.name == source.name + OUTPUT_SUFFIX:
            notes.append(f"named with its extension: {source.stem}{OUTPUT_SUFFIX} is another's")
        log(f"{source} -> {target}: {'; '.join([routed, *notes])}")
    return report
