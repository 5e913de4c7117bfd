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
quantisation) and the median time of ``--repeats`` runs."""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import torch
import torch.nn.functional as F
from reporting import write_report

from smartassign.builder import build_model
from smartassign.config import load_config
from smartassign.data.images import read_rgb
from smartassign.data.synthetic import builtin_photos
from smartassign.data.tensors import to_tensor
from smartassign.engine.devices import machine
from smartassign.export import export_model
from smartassign.inference import forward_tiled
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


def _photo() -> torch.Tensor:
    path = next(p.path for p in builtin_photos() if p.name == "china")
    pixels = read_rgb(path).pixels
    upscaled = cv2.resize(
        pixels, (2 * pixels.shape[1], 2 * pixels.shape[0]), interpolation=cv2.INTER_CUBIC
    )
    return to_tensor(upscaled)[None]


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
        settings = base.model_copy(
            update={"tile_size": tile, "tile_overlap": overlap, "gate_statistics": statistics_kind}
        )
        tiled, seconds = _median_seconds(
            lambda s=settings: forward_tiled(model, image, s).derain, repeats
        )
        row[f"{statistics_kind}_max_abs_diff"] = float((tiled - whole).abs().max())
        row[f"{statistics_kind}_s"] = seconds
    return row


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
    parser.add_argument("--no-export", action="store_true", help="skip the export timings")
    parser.add_argument("--out", default="benchmarks/results/inference.json")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    settings = load_config(args.params).inference
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
    report: dict[str, Any] = {
        "params_file": args.params,
        "model": args.model or "seeded random weights",
        "threads": args.threads,
        "tiles": rows,
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
