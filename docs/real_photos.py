"""Restore the real photographs of ../shared/data/real in auto mode: routing counts + pictures.

A check of the recognition head (D_re) on real data, which the model never saw: each photo
of ``rain_unpaired`` and ``snow_unpaired`` is restored with ``--task auto`` and the decoder
the head picked is counted. Writes ``docs/real_photos.json`` (counts, P(rain) per photo)
and ``docs/images/real_<folder>.jpg`` (input above, restored below, a few photos each)::

    python docs/real_photos.py --model models/smartassign --data ../shared/data/real
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from smartassign.config import load_config
from smartassign.data.images import read_rgb
from smartassign.data.layouts import image_files
from smartassign.inference import restore_image
from smartassign.model_io import load_model

FOLDERS = ("rain_unpaired", "snow_unpaired")
THUMB_HEIGHT = 240


def _thumb(pixels: np.ndarray) -> Image.Image:
    image = Image.fromarray(pixels)
    width = round(image.width * THUMB_HEIGHT / image.height)
    return image.resize((width, THUMB_HEIGHT), Image.Resampling.LANCZOS)


def _montage(pairs: list[tuple[np.ndarray, np.ndarray]]) -> Image.Image:
    """Inputs on the top row, their restorations below."""
    tops = [_thumb(before) for before, _ in pairs]
    bottoms = [_thumb(after) for _, after in pairs]
    width = sum(t.width for t in tops) + 4 * (len(tops) - 1)
    sheet = Image.new("RGB", (width, 2 * THUMB_HEIGHT + 4), "white")
    left = 0
    for top, bottom in zip(tops, bottoms, strict=True):
        sheet.paste(top, (left, 0))
        sheet.paste(bottom, (left, THUMB_HEIGHT + 4))
        left += top.width + 4
    return sheet


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="models/smartassign", help="model folder or URI")
    parser.add_argument("--data", default="../shared/data/real", help="folder of the photos")
    parser.add_argument("--params", default="params.yaml", help="inference settings")
    parser.add_argument("--out", default="docs", help="where the JSON and images go")
    parser.add_argument("--pictures", type=int, default=3, help="photos per montage")
    args = parser.parse_args()

    torch.set_num_threads(2)
    settings = load_config(args.params).inference
    model = load_model(args.model, torch.device("cpu"))
    out = Path(args.out)
    (out / "images").mkdir(parents=True, exist_ok=True)
    summary: dict[str, dict] = {}
    for folder in FOLDERS:
        files = image_files(Path(args.data) / folder, recursive=True)
        routed: dict[str, str] = {}
        probabilities: dict[str, float] = {}
        pairs = []
        for path in files:
            pixels = read_rgb(path).pixels
            result = restore_image(model, pixels, "auto", settings)
            name = str(path.relative_to(Path(args.data) / folder))
            routed[name] = result.task
            probabilities[name] = round(float(result.rain_probability or 0.0), 3)
            print(f"{folder}/{name}: {result.task} (P(rain) {probabilities[name]:.2f})")
            if len(pairs) < args.pictures:
                pairs.append((pixels, result.pixels))
        counts = {task: sum(1 for t in routed.values() if t == task) for task in ("rain", "snow")}
        summary[folder] = {"photos": len(files), "routed": counts, "p_rain": probabilities}
        _montage(pairs).save(out / "images" / f"real_{folder}.jpg", quality=88)
        print(f"{folder}: {len(files)} photos -> {counts}")
    (out / "real_photos.json").write_text(json.dumps(summary, indent=2) + "\n")


if __name__ == "__main__":
    main()
