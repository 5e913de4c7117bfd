"""Tiled inference and export: how far tiles are from the whole-image pass, how long each
takes, and ONNX / TorchScript export time and parity; writes JSON.

    python benchmarks/inference.py [--params params.yaml] [--model PATH] [--out PATH]

The model is ``--model`` (a model folder, checkpoint or MLflow URI) or, by default, the
network of ``--params`` with seeded random weights whose restoration decoders and veil
removal end in a random layer (untrained ones end in zeros: the decoders return their input,
the veil estimate ignores it), so that anyone can rerun it without training. Images: a
smooth random 200x300 image (noise averaged over 2x2 blocks) restored in small tiles, and
scikit-learn's ``china.jpg`` photo upscaled 2x (bicubic) to 854x1280, restored with
``inference.tile_size`` / ``tile_overlap`` of the params. For each image and tile setting:
the whole-image pass, and the tiled pass with ``gate_statistics`` ``image`` and ``tile``:
the largest absolute difference of the derained image to the whole pass (before 8-bit
quantisation) and the median time of ``--repeats`` runs.

Per-pixel time by image size (``--megapixels``, default 1, 4 and 12): the photo upscaled to
each size and restored in tiles of the params' size, with both ``gate_statistics``; each
time per pixel is set against the whole-image pass of the 1-MP image (the most a whole pass
can take here without swapping), as a ratio. The process's peak resident memory after each
size shows whether memory grows with the image (sizes run in increasing order). The
``image`` output equals a whole-image pass, so the PSNR between the two modes' outputs says
how far per-tile statistics move the result.

Quality on real pairs (``--real-tiles``, default 192/64): when the real check sets are
present (``evaluate.real_data``), each pair is derained whole and in tiles of that size
with both ``gate_statistics``; the mean PSNR-Y against the targets per set. The pairs are
smaller than the default tile, so small tiles stand in for a large photo's many tiles."""

from __future__ import annotations

import argparse
import math
import resource
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from reporting import write_report

from smartassign.builder import build_model
from smartassign.config import load_config
from smartassign.data.images import read_rgb
from smartassign.data.real_checks import load_check_sets, real_data_root
from smartassign.data.synthetic import builtin_photos
from smartassign.data.tensors import to_pixels, to_tensor
from smartassign.engine.devices import machine
from smartassign.export import export_model
from smartassign.inference import forward_tiled
from smartassign.metrics import psnr
from smartassign.model import SmartAssign
from smartassign.model_io import load_model


def _seeded_model(params: str) -> SmartAssign:
    torch.manual_seed(0)
    model = build_model(load_config(params)).eval()
    for decoder in model.decoders.values():
        torch.nn.init.normal_(decoder.convs[-1].weight, std=0.3)
    if model.veil is not None:
        torch.nn.init.normal_(model.veil.head.weight, std=0.3)
    return model


def _smooth_image(height: int, width: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(0)
    return F.avg_pool2d(torch.rand(1, 3, 2 * height, 2 * width, generator=generator), 2)


def _china() -> np.ndarray:
    """scikit-learn's ``china.jpg`` (427 x 640), ``uint8`` pixels."""
    return read_rgb(next(p.path for p in builtin_photos() if p.name == "china")).pixels


def _photo(scale: float = 2.0, pixels: np.ndarray | None = None) -> torch.Tensor:
    """``pixels`` (default: the china photo) upscaled by ``scale`` (bicubic)."""
    pixels = _china() if pixels is None else pixels
    size = (round(scale * pixels.shape[1]), round(scale * pixels.shape[0]))
    return to_tensor(cv2.resize(pixels, size, interpolation=cv2.INTER_CUBIC))[None]


def _tiled_settings(base: Any, statistics_kind: str, tile: int, overlap: int) -> Any:
    """``base`` inference settings with the given tiles and gate statistics."""
    return base.model_copy(
        update={"tile_size": tile, "tile_overlap": overlap, "gate_statistics": statistics_kind}
    )


def _peak_rss_mb() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def _per_pixel(
    model: SmartAssign, sizes: list[float], repeats: int, base: Any
) -> list[dict[str, Any]]:
    """Tiled time per pixel at each size against the whole pass at the first size."""
    china = _china()
    photo_pixels = china.shape[0] * china.shape[1]
    reference = _photo(math.sqrt(sizes[0] * 1e6 / photo_pixels), china)
    _, whole_s = _median_seconds(lambda: model(reference).derain, repeats)
    whole_us = 1e6 * whole_s / reference[0, 0].numel()
    rows = []
    for megapixels in sizes:
        image = _photo(math.sqrt(megapixels * 1e6 / photo_pixels), china)
        pixels = image[0, 0].numel()
        row: dict[str, Any] = {
            "image": f"{image.shape[2]}x{image.shape[3]}",
            "megapixels": round(pixels / 1e6, 2),
            "tile_size": base.tile_size,
            "tile_overlap": base.tile_overlap,
            "whole_us_per_px": round(whole_us, 3),
            "whole_reference": f"{reference.shape[2]}x{reference.shape[3]}",
        }
        outputs = {}
        for statistics_kind in ("image", "tile"):
            settings = _tiled_settings(base, statistics_kind, base.tile_size, base.tile_overlap)
            outputs[statistics_kind], seconds = _median_seconds(
                lambda s=settings, i=image: forward_tiled(model, i, s).derain,
                1 if megapixels > sizes[0] else repeats,
            )
            us = 1e6 * seconds / pixels
            row[f"{statistics_kind}_us_per_px"] = round(us, 3)
            row[f"{statistics_kind}_ratio"] = round(us / whole_us, 3)
        difference = (outputs["image"].clamp(0, 1) - outputs["tile"].clamp(0, 1)).pow(2).mean()
        row["tile_vs_image_psnr"] = (
            round(float(-10 * torch.log10(difference)), 2) if difference > 0 else None
        )
        row["peak_rss_mb"] = _peak_rss_mb()
        rows.append(row)
        print(row, file=sys.stderr)
    return rows


def _median_seconds(fn: Callable[[], Any], repeats: int) -> tuple[Any, float]:
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return result, round(statistics.median(times), 3)


def _tiles(
    model: SmartAssign, image: torch.Tensor, tile: int, overlap: int, repeats: int, base: Any
) -> dict[str, Any]:
    """Whole pass, then tiled passes with image and tile gate statistics."""
    whole, whole_s = _median_seconds(lambda: model(image).derain, repeats)
    row: dict[str, Any] = {
        "image": f"{image.shape[2]}x{image.shape[3]}",
        "tile_size": tile,
        "tile_overlap": overlap,
        "whole_s": whole_s,
    }
    for statistics_kind in ("image", "tile"):
        settings = _tiled_settings(base, statistics_kind, tile, overlap)
        tiled, seconds = _median_seconds(
            lambda s=settings: forward_tiled(model, image, s).derain, repeats
        )
        row[f"{statistics_kind}_max_abs_diff"] = float((tiled - whole).abs().max())
        row[f"{statistics_kind}_s"] = seconds
    return row


def _real_pairs(
    model: SmartAssign, cfg: Any, tile: int, overlap: int
) -> dict[str, dict[str, float]] | None:
    """Mean PSNR-Y per real check set: the input, the whole pass and the tiled passes."""
    root = real_data_root(cfg.evaluate.real_data)
    checks = load_check_sets(root, cfg.evaluate.real_sets)
    if not checks.pairs:
        print(f"no real check sets under {root}: quality on real pairs skipped", file=sys.stderr)
        return None
    scores: dict[str, dict[str, list[float]]] = {}
    for pair in checks.pairs:
        image = to_tensor(pair.degraded)[None]
        outputs = {"whole": model(image).derain}
        for statistics_kind in ("image", "tile"):
            settings = _tiled_settings(cfg.inference, statistics_kind, tile, overlap)
            outputs[statistics_kind] = forward_tiled(model, image, settings).derain
        found = scores.setdefault(pair.dataset, {})
        found.setdefault("input", []).append(psnr(pair.degraded, pair.clean, y_channel=True))
        for name, output in outputs.items():
            restored = to_pixels(output[0])
            found.setdefault(name, []).append(psnr(restored, pair.clean, y_channel=True))
    return {
        dataset: {
            "pairs": len(found["input"]),
            "tile_size": tile,
            "tile_overlap": overlap,
            **{f"{name}_psnr_y": round(statistics.fmean(v), 3) for name, v in found.items()},
        }
        for dataset, found in scores.items()
    }


def _export(model: SmartAssign, fmt: str, folder: Path) -> dict[str, Any]:
    start = time.perf_counter()
    result = export_model(model, folder / f"model.{fmt}", fmt)
    return {
        "seconds": round(time.perf_counter() - start, 1),
        "max_difference": result.max_difference,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--model", help="model folder, checkpoint or MLflow URI (default: seeded)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--small-tiles", default="128/64,160/96", help="tile/overlap pairs")
    parser.add_argument(
        "--megapixels", default="1,4,12", help="image sizes of the per-pixel comparison"
    )
    parser.add_argument(
        "--real-tiles", default="192/64", help="tile/overlap of the real-pair comparison"
    )
    parser.add_argument("--no-export", action="store_true", help="skip the export timings")
    parser.add_argument("--out", default="benchmarks/results/inference.json")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    cfg = load_config(args.params)
    settings = cfg.inference
    model = load_model(args.model) if args.model else _seeded_model(args.params)
    pairs = [tuple(int(v) for v in item.split("/")) for item in args.small_tiles.split(",")]
    rows = []
    with torch.inference_mode():
        small = _smooth_image(200, 300)
        for tile, overlap in pairs:
            rows.append(_tiles(model, small, tile, overlap, args.repeats, settings))
            print(rows[-1], file=sys.stderr)
        photo = _photo()
        rows.append(
            _tiles(model, photo, settings.tile_size, settings.tile_overlap, args.repeats, settings)
        )
        print(rows[-1], file=sys.stderr)
        sizes = [float(value) for value in args.megapixels.split(",")]
        per_pixel = _per_pixel(model, sizes, args.repeats, settings)
        real_tile, real_overlap = (int(v) for v in args.real_tiles.split("/"))
        real = _real_pairs(model, cfg, real_tile, real_overlap)
    report: dict[str, Any] = {
        "params_file": args.params,
        "model": args.model or "seeded random weights",
        "threads": args.threads,
        "tiles": rows,
        "per_pixel": per_pixel,
        "real_pairs": real,
        "machine": machine(),
    }
    if not args.no_export:
        with tempfile.TemporaryDirectory() as scratch:
            report["export"] = {
                fmt: _export(model, fmt, Path(scratch)) for fmt in ("onnx", "torchscript")
            }
    write_report(report, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
